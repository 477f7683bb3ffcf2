import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get } from '../api.js';
import { table, errorBox, loading, filter } from '../widgets.js';
import { when, localInputToIso, isoToLocalInput } from '../format.js';

function detail(e) {
  if (e.before === null && e.after === null) return '—';
  return h('details', {}, h('summary', {}, t('audit.changes')),
    h('div', { class: 'diff' },
      h('div', {}, h('h4', {}, t('audit.before')), h('pre', {}, JSON.stringify(e.before, null, 2))),
      h('div', {}, h('h4', {}, t('audit.after')), h('pre', {}, JSON.stringify(e.after, null, 2)))));
}

export function render(ctx) {
  const q = ctx.query;
  const inputs = {
    actor: h('input', { name: 'actor', value: q.get('actor') || '', autocomplete: 'off' }),
    action: h('input', { name: 'action', value: q.get('action') || '', autocomplete: 'off', list: 'audit-actions', placeholder: 'job.update' }),
    target: h('input', { name: 'target', value: q.get('target') || '', autocomplete: 'off' }),
    since: h('input', { type: 'datetime-local', name: 'since', value: isoToLocalInput(q.get('since')) }),
    until: h('input', { type: 'datetime-local', name: 'until', value: isoToLocalInput(q.get('until')) }),
  };
  const actions = ['job.create', 'job.update', 'job.delete', 'job.pause', 'job.resume', 'job.run', 'run.kill', 'pause.set', 'pause.clear', 'account.create', 'account.update', 'account.delete', 'token.create', 'token.revoke', 'session.create'];
  const form = h('form', { class: 'filters', role: 'search' },
    h('datalist', { id: 'audit-actions' }, actions.map((a) => h('option', { value: a }))),
    Object.entries(inputs).map(([k, el]) => filter(t(`audit.${k}`), el)),
    h('button', { type: 'submit', class: 'btn primary' }, t('common.search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) {
      const v = el.type === 'datetime-local' ? localInputToIso(el.value) : el.value.trim();
      if (v) p.set(k, v);
    }
    ctx.navigate(`/ui/audit${p.toString() ? `?${p}` : ''}`);
  });

  const body = h('div', {}, loading());
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, t('common.more'));
  let rows = [];
  let cursor = null;
  const params = {};
  for (const k of Object.keys(inputs)) if (q.get(k)) params[k] = q.get(k);
  const load = async () => {
    more.disabled = true;
    try {
      const page = await get('/audit', { params: { ...params, limit: 100, cursor } });
      rows = rows.concat(page.entries);
      cursor = page.next_cursor;
      replace(body, table([
        [t('audit.at'), (e) => when(e.at)],
        [t('audit.actor'), (e) => h('span', {}, e.actor, h('span', { class: 'muted small' }, ` (${e.via}${e.from ? `, ${e.from}` : ''})`))],
        [t('audit.action'), (e) => h('code', {}, e.action)],
        [t('audit.target'), (e) => e.target],
        [t('audit.details'), detail],
      ], rows, { empty: t('audit.none') }), more);
      more.hidden = !cursor;
    } catch (e) {
      replace(body, errorBox(e, load));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  load();
  return h('div', {}, h('div', { class: 'page-head' }, h('h1', {}, t('audit.title'))), form, body);
}
