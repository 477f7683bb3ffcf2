import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, seg } from '../api.js';
import { badge, errorBox, loading, table, select, FAILURES, toast, filter } from '../widgets.js';
import { when, commandText } from '../format.js';
import { can } from '../roles.js';

export async function runNow(ctx, jobId) {
  const r = await post(`/jobs/${seg(jobId)}/run`, {});
  toast(t('job.run_started'));
  ctx.navigate(`/ui/runs/${seg(r.run_id)}`);
}

function statusOf(v) {
  if (v.job.paused) return 'paused';
  if (v.state.running > 0) return 'running';
  if (v.state.last_run && FAILURES.has(v.state.last_run.status)) return 'failing';
  return 'ok';
}

export async function render(ctx) {
  const q = ctx.query;
  const search = h('input', { type: 'search', id: 'job-search', value: q.get('q') || '', placeholder: t('jobs.search_ph') });
  const group = select([['', t('jobs.all_groups')]], '', { id: 'job-group' });
  const kind = select([['', t('jobs.all_kinds')], ['one', t('kind.one')], ['all', t('kind.all')]], q.get('kind') || '', { id: 'job-kind' });
  const status = select([['', t('jobs.all_status')], ['ok', t('jobs.st_ok')], ['failing', t('jobs.st_failing')], ['running', t('jobs.st_running')], ['paused', t('jobs.st_paused')]], q.get('status') || '', { id: 'job-status' });
  const body = h('div', {}, loading());
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  let list = [];

  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const rows = list.filter((v) => {
      const j = v.job;
      if (group.value && j.group !== group.value) return false;
      if (kind.value && j.kind !== kind.value) return false;
      if (status.value && statusOf(v) !== status.value) return false;
      if (!needle) return true;
      return [j.id, j.name, j.group, j.description, commandText(j.command), ...(j.rules || []).map((r) => r.schedule)].some((x) => x && x.toLowerCase().includes(needle));
    });
    const params = new URLSearchParams();
    if (search.value) params.set('q', search.value);
    for (const [k, el] of [['group', group], ['kind', kind], ['status', status]]) if (el.value) params.set(k, el.value);
    history.replaceState(null, '', `/ui/jobs${params.toString() ? `?${params}` : ''}`);
    count.textContent = t('jobs.count', { n: rows.length, total: list.length });
    replace(body, table([
      [t('jobs.job'), (v) => h('div', {}, h('a', { href: `/ui/jobs/${seg(v.job.id)}`, class: 'strong' }, v.job.name || v.job.id),
        v.job.name && v.job.name !== v.job.id ? h('div', { class: 'muted small' }, v.job.id) : null)],
      [t('jobs.group'), (v) => v.job.group],
      [t('jobs.schedule'), (v) => h('code', {}, (v.job.rules || []).map((r) => r.schedule).join(' | '))],
      [t('jobs.kind'), (v) => t(`kind.${v.job.kind}`)],
      [t('jobs.last'), (v) => (v.state.last_run
        ? h('a', { href: `/ui/runs/${seg(`${v.state.last_run.run_id}#${v.state.last_run.attempt}`)}` }, badge(v.state.last_run.status))
        : h('span', { class: 'muted' }, t('jobs.never')))],
      [t('jobs.next'), (v) => (v.job.paused ? h('span', { class: 'badge paused' }, t('jobs.st_paused')) : when(v.state.next_run, v.job.rules[0] && v.job.rules[0].timezone))],
      [t('jobs.running'), (v) => (v.state.running ? h('span', { class: 'badge st-running' }, String(v.state.running)) : '0')],
      [t('common.actions'), (v) => (can.operate(ctx.me, v.job.group)
        ? h('button', { type: 'button', class: 'btn small', onclick: () => runNow(ctx, v.job.id).catch((e) => toast(e.message, 'bad')) }, t('job.run_now'))
        : '')],
    ], rows, { empty: list.length ? t('jobs.no_match') : t('jobs.none'), cls: 'jobs-table' }));
  };

  for (const el of [group, kind, status]) el.addEventListener('change', draw);
  search.addEventListener('input', draw);

  const load = async () => {
    replace(body, loading());
    try {
      list = (await get('/jobs')).jobs.sort((a, b) => (a.job.name || a.job.id).localeCompare(b.job.name || b.job.id));
      const groups = [...new Set(list.map((v) => v.job.group))].sort();
      replace(group, h('option', { value: '' }, t('jobs.all_groups')), groups.map((g) => h('option', { value: g }, g)));
      group.value = groups.includes(q.get('group')) ? q.get('group') : '';
      draw();
    } catch (e) {
      replace(body, errorBox(e, load));
    }
  };
  load();

  return h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, t('jobs.title')),
      h('div', { class: 'actions' }, can.edit(ctx.me) ? h('a', { href: '/ui/jobs/new', class: 'btn primary', id: 'new-job' }, t('jobs.new')) : null)),
    h('div', { class: 'filters', role: 'search' },
      filter(t('common.search'), search),
      filter(t('jobs.group'), group),
      filter(t('jobs.kind'), kind),
      filter(t('jobs.status'), status)),
    count,
    body);
}
