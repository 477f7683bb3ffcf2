import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, del, seg } from '../api.js';
import { badge, card, dl, table, button, confirmDialog, dialog, toast, errorBox } from '../widgets.js';
import { when, duration, commandText } from '../format.js';
import { durations } from '../charts.js';
import { can } from '../roles.js';
import { runNow } from './jobs.js';

export const runHref = (r) => `/ui/runs/${seg(`${r.run_id}#${r.attempt}`)}`;

/** A table of runs with "load more" (cursor pages). */
export function runTable(params, { showJob = true, zone } = {}) {
  const wrap = h('div', {});
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, t('common.more'));
  let rows = [];
  let cursor = null;
  const cols = [
    showJob ? [t('jobs.job'), (r) => h('a', { href: `/ui/jobs/${seg(r.job_id)}` }, r.job_name || r.job_id)] : null,
    [t('runs.status'), (r) => h('a', { href: runHref(r), title: t('runs.open') }, badge(r.status))],
    [t('runs.scheduled'), (r) => when(r.scheduled_at, zone)],
    [t('runs.duration'), (r) => duration(r.duration_ms)],
    [t('runs.node'), (r) => r.node_id],
    [t('runs.trigger'), (r) => t(`trigger.${r.trigger}`)],
    [t('runs.attempt'), (r) => String(r.attempt)],
    [t('runs.exit'), (r) => (r.exit_code !== null && r.exit_code !== undefined ? String(r.exit_code) : r.signal ? `SIG ${r.signal}` : '—')],
  ].filter(Boolean);
  const load = async () => {
    more.disabled = true;
    try {
      const page = await get('/runs', { params: { ...params, cursor, limit: 50 } });
      rows = rows.concat(page.runs);
      cursor = page.next_cursor;
      replace(wrap, table(cols, rows, { empty: t('runs.none') }), more);
      more.hidden = !cursor;
    } catch (e) {
      replace(wrap, errorBox(e, load));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  load();
  return wrap;
}

function rulesView(job, view) {
  return table([
    [t('editor.schedule'), (r) => h('code', {}, r.schedule)],
    [t('editor.timezone'), (r) => r.timezone || 'UTC'],
    [t('editor.nodes'), (r) => [...(r.nodes || []), ...(r.groups || []).map((g) => `@${g}`)].join(', ') || t('editor.any_node')],
    [t('editor.exclude_nodes'), (r) => (r.exclude_nodes || []).join(', ') || '—'],
  ], job.rules);
}

export async function render(ctx) {
  const id = ctx.params.id;
  const view = await get(`/jobs/${seg(id)}`);
  const job = view.job;
  const zone = (job.rules[0] && job.rules[0].timezone) || 'UTC';
  const reload = () => ctx.navigate(location.pathname, { replace: true });
  const act = (fn) => () => fn().catch((e) => toast(e.message, 'bad'));

  const actions = [];
  if (can.operate(ctx.me, job.group)) {
    actions.push(button(t('job.run_now'), act(() => runNow(ctx, id)), { cls: 'primary' }));
    if (job.paused) {
      actions.push(button(t('job.resume'), act(async () => {
        await post(`/jobs/${seg(id)}/resume`);
        toast(t('job.resumed'));
        reload();
      })));
    } else {
      actions.push(button(t('job.pause'), act(async () => {
        const reason = h('input', { name: 'reason', id: 'job-pause-reason', maxlength: 1024 });
        const form = await dialog(t('job.pause_title', { id }), h('div', { class: 'field' }, h('label', { for: 'job-pause-reason' }, t('pause.reason')), reason), { okLabel: t('job.pause') });
        if (!form) return;
        await post(`/jobs/${seg(id)}/pause`, { reason: String(form.get('reason') || '') || null });
        toast(t('job.paused'));
        reload();
      })));
    }
  }
  if (can.edit(ctx.me)) {
    actions.push(h('a', { class: 'btn', href: `/ui/jobs/${seg(id)}/edit`, id: 'edit-job' }, t('job.edit')));
    actions.push(h('a', { class: 'btn', href: `/ui/jobs/new?clone=${encodeURIComponent(id)}` }, t('job.clone')));
    actions.push(button(t('job.delete'), act(async () => {
      if (!(await confirmDialog(t('job.delete_title', { id }), t('job.delete_text'), { okLabel: t('job.delete'), danger: true }))) return;
      await del(`/jobs/${seg(id)}`, { headers: { 'If-Match': `"${job.revision}"` } });
      toast(t('job.deleted', { id }));
      ctx.navigate('/ui/jobs');
    }), { cls: 'danger' }));
  }

  const env = Object.entries(job.env || {}).map(([k, v]) => (typeof v === 'string' ? `${k}=${v}` : `${k}=${v.secret ? t('editor.secret_hidden') : v.value}`));
  const def = dl([
    [t('editor.id'), h('code', {}, job.id)],
    [t('editor.group'), job.group],
    [t('editor.command'), h('code', { class: 'wrap' }, commandText(job.command))],
    job.shell ? [t('editor.shell'), t('common.yes')] : null,
    [t('editor.kind'), t(`kind.${job.kind}`)],
    [t('editor.concurrency'), `${t(`concurrency.${job.concurrency}`)}${job.concurrency === 'allow' ? ` (≤ ${job.max_parallel})` : ''}`],
    [t('editor.timeout'), job.timeout || t('editor.no_limit')],
    [t('editor.retries'), job.retries ? `${job.retries} × ${job.retry_delay}` : '0'],
    [t('editor.missed'), `${t(`missed.${job.missed}`)}${job.start_deadline ? `, ${t('editor.start_deadline')} ${job.start_deadline}` : ''}`],
    [t('editor.run_as'), job.run_as || t('editor.default_user')],
    job.workdir ? [t('editor.workdir'), h('code', {}, job.workdir)] : null,
    env.length ? [t('editor.env'), h('code', { class: 'wrap' }, env.join('\n'))] : null,
    job.description ? [t('editor.description'), job.description] : null,
    [t('job.revision'), String(job.revision)],
    [t('job.updated'), when(job.updated_at, zone)],
  ]);

  const stateDl = dl([
    [t('jobs.status'), job.paused ? h('span', { class: 'badge paused' }, t('jobs.st_paused'), job.paused_reason ? `: ${job.paused_reason}` : '') : h('span', { class: 'badge st-success' }, t('job.active'))],
    [t('jobs.next'), job.paused ? '—' : when(view.state.next_run, zone)],
    [t('jobs.last'), view.state.last_run ? h('span', {}, h('a', { href: runHref(view.state.last_run) }, badge(view.state.last_run.status)), ' ', when(view.state.last_run.finished_at || view.state.last_run.scheduled_at, zone)) : t('jobs.never')],
    [t('jobs.running'), String(view.state.running)],
  ]);

  const chart = card(t('job.durations'), () => get('/runs', { params: { job: id, limit: 60 } }), (page) => (page.runs.some((r) => r.duration_ms !== null)
    ? durations(page.runs, runHref)
    : h('p', { class: 'empty' }, t('job.no_durations'))), { cls: 'wide' });

  return h('div', { class: 'job-page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('p', { class: 'crumbs' }, h('a', { href: '/ui/jobs' }, t('jobs.title')), ' / ', job.group),
        h('h1', {}, job.name || job.id)),
      h('div', { class: 'actions' }, actions)),
    h('div', { class: 'grid two' },
      h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('job.state'))), h('div', { class: 'card-body' }, stateDl)),
      h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('job.rules'))), h('div', { class: 'card-body' }, rulesView(job, view)))),
    chart,
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('job.definition'))), h('div', { class: 'card-body' }, def)),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('job.history')), h('a', { href: `/ui/runs?job=${encodeURIComponent(id)}` }, t('job.search_runs'))),
      h('div', { class: 'card-body', id: 'history' }, runTable({ job: id }, { showJob: false, zone }))));
}
