import { h } from '../dom.js';
import { t } from '../i18n.js';
import { get, seg } from '../api.js';
import { card, badge, empty, table, STATUSES, FAILURES, button, toast } from '../widgets.js';
import { when, startOfToday } from '../format.js';
import { runsPerDay } from '../charts.js';
import { can } from '../roles.js';

export function render(ctx) {
  const jobs = get('/jobs');
  jobs.catch(() => {});
  const jobHref = (id) => `/ui/jobs/${seg(id)}`;
  const zoneOf = (job) => (job.rules && job.rules[0] && job.rules[0].timezone) || 'UTC';

  const today = card(t('dash.today'), () => get('/runs', { params: { since: startOfToday(), limit: 1000 } }), (page) => {
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const r of page.runs) counts[r.status] = (counts[r.status] || 0) + 1;
    const more = page.next_cursor ? '+' : '';
    return h('ul', { class: 'counts' }, STATUSES.map((s) => h('li', {},
      h('a', { href: `/ui/runs?status=${s}&since=${encodeURIComponent(startOfToday())}` }, h('span', { class: 'count' }, `${counts[s]}${counts[s] ? more : ''}`), badge(s)))));
  });

  const failing = card(t('dash.failing'), () => jobs, (list) => {
    const bad = list.jobs.filter((v) => v.state.last_run && FAILURES.has(v.state.last_run.status));
    if (!bad.length) return empty(t('dash.no_failures'));
    return table([
      [t('jobs.job'), (v) => h('a', { href: jobHref(v.job.id) }, v.job.name || v.job.id)],
      [t('jobs.last'), (v) => h('a', { href: `/ui/runs/${seg(`${v.state.last_run.run_id}#${v.state.last_run.attempt}`)}` }, badge(v.state.last_run.status))],
      [t('jobs.when'), (v) => when(v.state.last_run.finished_at || v.state.last_run.scheduled_at, zoneOf(v.job))],
    ], bad);
  }, { cls: 'attention' });

  const running = card(t('dash.running'), () => get('/runs', { params: { status: 'running', limit: 50 } }), (page) => table([
    [t('jobs.job'), (r) => h('a', { href: `/ui/runs/${seg(`${r.run_id}#${r.attempt}`)}` }, r.job_name || r.job_id)],
    [t('runs.node'), (r) => r.node_id],
    [t('runs.started'), (r) => when(r.started_at || r.scheduled_at)],
  ], page.runs, { empty: t('dash.none_running') }));

  const next = card(t('dash.next'), () => jobs, (list) => {
    const due = list.jobs.filter((v) => v.state.next_run).sort((a, b) => a.state.next_run.localeCompare(b.state.next_run)).slice(0, 8);
    return table([
      [t('jobs.job'), (v) => h('a', { href: jobHref(v.job.id) }, v.job.name || v.job.id)],
      [t('jobs.next'), (v) => when(v.state.next_run, zoneOf(v.job))],
    ], due, { empty: t('dash.nothing_due') });
  });

  const nodes = card(t('dash.nodes'), () => get('/nodes'), (list) => {
    const alive = list.filter((n) => n.alive).length;
    const clockBad = list.filter((n) => !n.clock_ok).length;
    return h('div', {},
      h('p', { class: 'big' }, h('a', { href: '/ui/nodes' }, t('dash.nodes_alive', { alive, total: list.length }))),
      alive < list.length ? h('p', { class: 'bad' }, t('dash.nodes_dead', { n: list.length - alive })) : null,
      clockBad ? h('p', { class: 'warn' }, t('dash.clock_bad', { n: clockBad })) : h('p', { class: 'ok' }, t('dash.clock_ok')));
  });

  const chart = card(t('dash.per_day'), async () => {
    try {
      return await get('/stats/daily', { params: { days: 14 } });
    } catch (e) {
      if (e.status === 404 || e.status === 501) return { unavailable: t('dash.stats_unavailable') };
      // Group-scoped roles see statistics per job (on each job's page), not fleet-wide.
      if (e.status === 403) return { unavailable: t('dash.stats_scoped') };
      throw e;
    }
  }, (stats) => (stats.unavailable || !stats.days
    ? h('p', { class: 'notice', id: 'stats-unavailable' }, stats.unavailable || t('dash.stats_unavailable'))
    : runsPerDay(stats.days)), { cls: 'wide' });

  // Global pause (admins): the button says what it will do once the state is known.
  const pauseBtn = can.admin(ctx.me) ? button(t('common.loading'), null, { cls: '', disabled: true, id: 'pause-toggle' }) : null;
  if (pauseBtn) {
    const show = (p) => {
      ctx.setPause(p);
      pauseBtn.textContent = t(p.paused ? 'pause.resume' : 'pause.all');
      pauseBtn.className = `btn ${p.paused ? '' : 'danger'}`;
      pauseBtn.disabled = false;
    };
    pauseBtn.title = t('pause.explain');
    pauseBtn.addEventListener('click', () => ctx.togglePause().then(() => get('/pause')).then(show).catch((e) => toast(e.message, 'bad')));
    get('/pause').then(show).catch(() => {
      pauseBtn.textContent = t('pause.all');
    });
  }

  return h('div', { class: 'dashboard' },
    h('div', { class: 'page-head' }, h('h1', {}, t('dash.title')), h('div', { class: 'actions' }, pauseBtn)),
    h('div', { class: 'grid' }, today, failing, running, next, nodes, chart));
}
