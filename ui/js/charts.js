// Charts drawn as inline SVG: runs per day stacked by status, and a job's
// run durations. Colours come from CSS classes (st-<status>).
import { s, h } from './dom.js';
import { t, locale } from './i18n.js';
import { duration } from './format.js';

const H = 220;
const PAD = { l: 48, r: 8, t: 10, b: 28 };

/**
 * A figure whose SVG is drawn at the figure's own width (text stays at its
 * real size on a phone), again whenever that width changes.
 */
function responsive(cls, draw, ...after) {
  const fig = h('figure', { class: `chart ${cls}` });
  let drawn = 0;
  const paint = () => {
    const w = Math.max(280, Math.round(fig.clientWidth || 640));
    if (Math.abs(w - drawn) < 8) return;
    drawn = w;
    const svg = draw(w);
    if (fig.firstChild && fig.firstChild.tagName === 'svg') fig.firstChild.replaceWith(svg);
    else fig.prepend(svg);
  };
  fig.append(...after);
  new ResizeObserver(paint).observe(fig);
  requestAnimationFrame(paint);
  return fig;
}

/** Stats day fields in stacking order, with the run status whose colour they use. */
const DAY_PARTS = [['succeeded', 'success'], ['failed', 'failed'], ['timeout', 'timeout'], ['killed', 'killed'], ['lost', 'lost'], ['skipped', 'skipped'], ['missed', 'missed']];

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A maximum for counts whose four grid steps are whole numbers. */
function countMax(v) {
  return 4 * Math.max(1, Math.ceil(niceMax(Math.max(1, v) / 4)));
}

function axis(W, max, fmtTick) {
  const out = [];
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    const y = PAD.t + (H - PAD.t - PAD.b) * (1 - i / 4);
    out.push(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'grid' }));
    out.push(s('text', { x: PAD.l - 4, y: y + 4, class: 'tick', 'text-anchor': 'end' }, fmtTick(v)));
  }
  return out;
}

function legend(parts) {
  return h('ul', { class: 'legend' }, parts.map(([label, st]) => h('li', {}, h('span', { class: `swatch st-${st}` }), label)));
}

/** `days` as from GET /api/v1/stats/daily (oldest first). */
export function runsPerDay(days) {
  const total = days.reduce((a, d) => a + DAY_PARTS.reduce((b, [k]) => b + (d[k] || 0), 0), 0);
  return responsive('per-day', (W) => perDaySvg(W, days, total), legend(DAY_PARTS.map(([k, st]) => [t(`status.${st}`), st])));
}

function perDaySvg(W, days, total) {
  const max = countMax(Math.max(0, ...days.map((d) => DAY_PARTS.reduce((a, [k]) => a + (d[k] || 0), 0))));
  const plotH = H - PAD.t - PAD.b;
  const slot = (W - PAD.l - PAD.r) / Math.max(1, days.length);
  const bw = Math.max(2, slot * 0.7);
  const bars = days.map((d, i) => {
    const x = PAD.l + i * slot + (slot - bw) / 2;
    let y = PAD.t + plotH;
    const total = DAY_PARTS.reduce((a, [k]) => a + (d[k] || 0), 0);
    const label = new Date(`${d.day}T00:00:00Z`).toLocaleDateString(locale(), { month: '2-digit', day: '2-digit', timeZone: 'UTC' });
    const tip = [`${d.day} (UTC): ${t('chart.runs', { n: total })}`, ...DAY_PARTS.filter(([k]) => d[k]).map(([k, st]) => `${t(`status.${st}`)}: ${d[k]}`)].join('\n');
    const segs = DAY_PARTS.filter(([k]) => d[k] > 0).map(([k, st]) => {
      const hgt = (d[k] / max) * plotH;
      y -= hgt;
      return s('rect', { x, y, width: bw, height: Math.max(hgt, 0.5), class: `st-${st}` });
    });
    return s('g', { class: 'bar' }, s('title', {}, tip), s('rect', { x: PAD.l + i * slot, y: PAD.t, width: slot, height: plotH, class: 'hit' }), ...segs,
      (slot >= 34 || i % 2 === (days.length - 1) % 2 ? s('text', { x: x + bw / 2, y: H - 10, class: 'tick', 'text-anchor': 'middle' }, label) : null));
  });
  return s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': t('chart.per_day_label', { days: days.length, n: total }) },
    ...axis(W, max, (v) => String(Math.round(v))), ...bars);
}

/** Durations of `runs` (newest first, as the API lists them), drawn oldest → newest. */
export function durations(runs, runHref) {
  const rs = runs.filter((r) => r.duration_ms !== null && r.duration_ms !== undefined).slice().reverse();
  return responsive('durations', (W) => durationsSvg(W, rs, runHref), h('figcaption', {}, t('chart.durations_caption', { n: rs.length })));
}

function durationsSvg(W, rs, runHref) {
  const max = niceMax(Math.max(1, ...rs.map((r) => r.duration_ms)));
  const plotH = H - PAD.t - PAD.b;
  const slot = (W - PAD.l - PAD.r) / Math.max(1, rs.length);
  const bw = Math.max(2, Math.min(40, slot * 0.7));
  const bars = rs.map((r, i) => {
    const hgt = Math.max(1, (r.duration_ms / max) * plotH);
    const x = PAD.l + i * slot + (slot - bw) / 2;
    return s('a', { href: runHref(r) },
      s('title', {}, `${new Date(r.scheduled_at).toLocaleString(locale())}: ${duration(r.duration_ms)} (${t(`status.${r.status}`)})`),
      s('rect', { x, y: PAD.t + plotH - hgt, width: bw, height: hgt, class: `st-${r.status}` }));
  });
  return s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': t('chart.durations_label', { n: rs.length, max: duration(Math.max(0, ...rs.map((r) => r.duration_ms))) }) },
    ...axis(W, max, (v) => duration(Math.round(v)).replace(' ', '')), ...bars);
}
