// Dates in the viewer's zone (the job's zone on hover), durations, sizes.
import { h } from './dom.js';
import { locale, t } from './i18n.js';

const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** `2026-11-25 16:30:00` (+ zone abbreviation): unambiguous in every language. */
function fmt(date, zone, withZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
    hourCycle: 'h23', timeZone: zone || undefined, timeZoneName: withZone ? 'short' : undefined,
  }).formatToParts(date).map((p) => [p.type, p.value]));
  const text = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  return withZone && parts.timeZoneName ? `${text} ${parts.timeZoneName}` : text;
}

/** Text of an instant in the viewer's zone. */
export function dateText(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : fmt(d);
}

/** <time> in the viewer's zone; the title gives it in `zone` (the job's) and UTC. */
export function when(iso, zone) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, String(iso));
  const lines = [];
  const z = zone || 'UTC';
  try {
    lines.push(`${fmt(d, z, true)} (${z})`);
  } catch {
    lines.push(`${iso}`);
  }
  if (z !== 'UTC') lines.push(`${fmt(d, 'UTC', true)} (UTC)`);
  lines.push(`${t('time.viewer_zone')}: ${viewerZone}`);
  return h('time', { datetime: d.toISOString(), title: lines.join('\n') }, fmt(d), ' ', relative(d));
}

/** "(in 5 min)" / "(3 h ago)" for instants within a day, else nothing. */
function relative(d) {
  const sec = Math.round((d.getTime() - Date.now()) / 1000);
  if (Math.abs(sec) > 86400) return '';
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto', style: 'short' });
  const abs = Math.abs(sec);
  const [n, unit] = abs < 60 ? [sec, 'second'] : abs < 3600 ? [Math.round(sec / 60), 'minute'] : [Math.round(sec / 3600), 'hour'];
  return h('span', { class: 'rel' }, `(${rtf.format(n, unit)})`);
}

/** An instant formatted in a given zone (the preview list). */
export function inZone(iso, zone) {
  const d = new Date(iso);
  try {
    return fmt(d, zone, true);
  } catch {
    return iso;
  }
}

export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** The start of the viewer's local day, as an RFC 3339 instant. */
export function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

/** A value for <input type=datetime-local> → RFC 3339 (viewer's zone), or ''. */
export function localInputToIso(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export function isoToLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** The command as one line for tables. */
export function commandText(cmd) {
  if (Array.isArray(cmd)) return cmd.map((a) => (/[\s"'\\]/.test(a) || a === '' ? JSON.stringify(a) : a)).join(' ');
  return cmd || '';
}
