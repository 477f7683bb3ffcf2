import { h } from '../dom.js';
import { t } from '../i18n.js';
import { select, STATUSES, filter } from '../widgets.js';
import { localInputToIso, isoToLocalInput } from '../format.js';
import { runTable } from './job.js';

export function render(ctx) {
  const q = ctx.query;
  const job = h('input', { name: 'job', value: q.get('job') || '', autocomplete: 'off', class: 'mono' });
  const node = h('input', { name: 'node', value: q.get('node') || '', autocomplete: 'off' });
  const status = select([['', t('runs.any_status')], ...STATUSES.map((s) => [s, t(`status.${s}`)])], q.get('status') || '', { name: 'status' });
  const since = h('input', { type: 'datetime-local', name: 'since', value: isoToLocalInput(q.get('since')) });
  const until = h('input', { type: 'datetime-local', name: 'until', value: isoToLocalInput(q.get('until')) });
  const form = h('form', { class: 'filters', role: 'search' },
    filter(t('runs.job'), job),
    filter(t('runs.node'), node),
    filter(t('runs.status'), status),
    filter(t('runs.since'), since),
    filter(t('runs.until'), until),
    h('button', { type: 'submit', class: 'btn primary' }, t('common.search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (job.value.trim()) p.set('job', job.value.trim());
    if (node.value.trim()) p.set('node', node.value.trim());
    if (status.value) p.set('status', status.value);
    if (since.value) p.set('since', localInputToIso(since.value));
    if (until.value) p.set('until', localInputToIso(until.value));
    ctx.navigate(`/ui/runs${p.toString() ? `?${p}` : ''}`);
  });
  const params = {};
  for (const k of ['job', 'node', 'status', 'since', 'until']) if (q.get(k)) params[k] = q.get(k);
  return h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, t('runs.title'))),
    form,
    runTable(params));
}
