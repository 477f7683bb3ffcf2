// The job editor: every job field, the API's validation message next to
// the field it names, a live "next 10 runs" preview per rule in the rule's
// zone, node/group selectors, and a conflict screen when the job changed
// meanwhile (409).
import { h, replace, nextId } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, put, seg } from '../api.js';
import { field, select, showFieldError, clearFieldErrors, toast, errorBox, button } from '../widgets.js';
import { inZone, dateText } from '../format.js';

const NOTIFY_EVENTS = ['failure', 'recovery', 'missed', 'timeout', 'overrun', 'lost'];
const DEFAULTS = {
  id: '', name: '', group: 'default', command: '', shell: false, rules: [{ schedule: '' }], kind: 'one', concurrency: 'forbid',
  max_parallel: 1, kill_grace: '10s', retries: 0, retry_delay: '30s', on_lost: 'record', missed: 'skip', max_catchup: 10,
  paused: false, output_limit: '64KiB', description: '',
};

const list = (s) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
const lines = (s) => s.split('\n').map((x) => x.trim()).filter(Boolean);

let zonesCache = null;
function zones() {
  if (!zonesCache) {
    let zs = [];
    try {
      zs = Intl.supportedValuesOf('timeZone');
    } catch {
      zs = [];
    }
    zonesCache = ['UTC', ...zs.filter((z) => z !== 'UTC')];
  }
  return zonesCache;
}

function datalist(id, values) {
  return h('datalist', { id }, values.map((v) => h('option', { value: v })));
}

/** A text input of comma-separated names with one toggle chip per known name. */
function namesInput(name, values, known, fieldName) {
  const input = h('input', { name, value: (values || []).join(', '), autocomplete: 'off' });
  const chips = h('div', { class: 'chips' }, known.map((k) => {
    const b = h('button', { type: 'button', class: 'chip', 'aria-pressed': String((values || []).includes(k)) }, k);
    b.addEventListener('click', () => {
      const cur = list(input.value);
      const next = cur.includes(k) ? cur.filter((x) => x !== k) : [...cur, k];
      input.value = next.join(', ');
      b.setAttribute('aria-pressed', String(next.includes(k)));
    });
    return b;
  }));
  input.addEventListener('input', () => {
    const cur = list(input.value);
    for (const b of chips.children) b.setAttribute('aria-pressed', String(cur.includes(b.textContent)));
  });
  return { input, extra: known.length ? chips : null, fieldName };
}

function ruleBlock(rule, index, known, onRemove) {
  const schedule = h('input', { name: 'schedule', value: rule.schedule || '', required: true, autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: '*/5 * * * *' });
  const tz = h('input', { name: 'timezone', value: rule.timezone || '', list: 'tz-list', autocomplete: 'off', placeholder: t('editor.tz_default') });
  const nodes = namesInput('nodes', rule.nodes, known.nodes);
  const groups = namesInput('groups', rule.groups, known.groups);
  const exclude = namesInput('exclude_nodes', rule.exclude_nodes, []);
  const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
  const el = h('fieldset', { class: 'rule' },
    h('legend', {}, t('editor.rule_n', { n: index + 1 })),
    h('div', { class: 'row' },
      field(t('editor.schedule'), schedule, { fieldName: `rules[${index}].schedule`, help: t('editor.schedule_help'), cls: 'grow' }),
      field(t('editor.timezone'), tz, { fieldName: `rules[${index}].timezone` })),
    h('div', { class: 'row' },
      h('div', { class: 'grow' }, field(t('editor.nodes'), nodes.input, { fieldName: `rules[${index}].nodes`, help: t('editor.nodes_help') }), nodes.extra),
      h('div', { class: 'grow' }, field(t('editor.node_groups'), groups.input, { fieldName: `rules[${index}].groups` }), groups.extra),
      field(t('editor.exclude_nodes'), exclude.input, { fieldName: `rules[${index}].exclude_nodes`, cls: 'grow' })),
    h('div', { class: 'preview-head' }, h('h3', {}, t('editor.preview')), onRemove ? button(t('editor.remove_rule'), onRemove, { cls: 'small' }) : null),
    preview);

  let timer = null;
  let asked = 0;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const expr = schedule.value.trim();
      const n = ++asked;
      if (!expr) {
        replace(preview, h('p', { class: 'muted' }, t('editor.preview_empty')));
        return;
      }
      replace(preview, h('p', { class: 'muted' }, t('common.loading')));
      try {
        const p = await get('/schedule/preview', { params: { schedule: expr, timezone: tz.value.trim(), n: 10 } });
        if (n !== asked) return;
        replace(preview, p.instants.length
          ? h('ol', { class: 'instants', id: index === 0 ? 'preview-list' : null }, p.instants.map((i) => h('li', { title: `${t('time.viewer_zone')}: ${dateText(i)}` }, inZone(i, p.timezone))))
          : h('p', { class: 'muted' }, t('editor.preview_none')),
          h('p', { class: 'muted small' }, t('editor.preview_zone', { zone: p.timezone })));
      } catch (e) {
        if (n !== asked) return;
        replace(preview, h('p', { class: 'field-error', role: 'alert' }, e.message));
      }
    }, 300);
  };
  schedule.addEventListener('input', refresh);
  tz.addEventListener('input', refresh);
  refresh();

  const collect = () => {
    const r = { schedule: schedule.value.trim() };
    if (tz.value.trim()) r.timezone = tz.value.trim();
    for (const [k, x] of [['nodes', nodes], ['groups', groups], ['exclude_nodes', exclude]]) {
      const v = list(x.input.value);
      if (v.length) r[k] = v;
    }
    return r;
  };
  return { el, collect };
}

function envRow(key, value, onRemove) {
  const secret = typeof value === 'object' && value !== null && value.secret;
  const plain = typeof value === 'string' ? value : (value && value.value) || '';
  const k = h('input', { class: 'mono env-key', value: key, 'aria-label': t('editor.env_key'), placeholder: 'NAME', autocomplete: 'off' });
  const v = h('input', { class: 'mono env-value', value: plain, 'aria-label': t('editor.env_value'), autocomplete: 'off', type: secret ? 'password' : 'text', placeholder: secret && !plain ? t('editor.secret_kept') : '' });
  const sid = nextId('sec');
  const s = h('input', { type: 'checkbox', id: sid, checked: secret });
  s.addEventListener('change', () => {
    v.type = s.checked ? 'password' : 'text';
  });
  const err = h('p', { class: 'field-error', hidden: true });
  const row = h('div', { class: 'env-row' }, k, v, h('label', { for: sid, class: 'inline' }, s, t('editor.secret')), button(t('common.remove'), () => onRemove(row), { cls: 'small' }), err);
  const collect = () => {
    const name = k.value.trim();
    if (!name) return null;
    k.dataset.field = `env.${name}`;
    k.id = k.id || nextId('env');
    err.id = `${k.id}-err`;
    if (s.checked) return [name, v.value ? { value: v.value, secret: true } : { secret: true }];
    return [name, v.value];
  };
  return { el: row, collect };
}

function numberOr(v) {
  if (v === '' || v === null || v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

/** Fields of two jobs that differ, for the conflict screen. */
function diff(theirs, mine) {
  const skip = new Set(['revision', 'created_at', 'updated_at']);
  const keys = [...new Set([...Object.keys(theirs), ...Object.keys(mine)])].filter((k) => !skip.has(k)).sort();
  return keys.map((k) => [k, JSON.stringify(theirs[k] ?? null), JSON.stringify(mine[k] ?? null)]);
}

export async function render(ctx) {
  const editId = ctx.params.id;
  const cloneOf = ctx.query.get('clone');
  const [source, nodesList, jobsList] = await Promise.all([
    editId || cloneOf ? get(`/jobs/${seg(editId || cloneOf)}`) : Promise.resolve(null),
    get('/nodes').catch(() => []),
    get('/jobs').catch(() => ({ jobs: [] })),
  ]);
  let job = source ? { ...DEFAULTS, ...source.job } : { ...DEFAULTS };
  let revision = source && editId ? source.job.revision : 0;
  if (cloneOf) {
    job = { ...job, id: `${job.id}-copy`, name: job.name ? `${job.name} (copy)` : '', revision: 0 };
    delete job.created_at;
    delete job.updated_at;
  }
  const known = {
    nodes: nodesList.map((n) => n.id),
    groups: [...new Set(nodesList.flatMap((n) => n.groups || []))],
  };
  const jobGroups = [...new Set(jobsList.jobs.map((v) => v.job.group))].sort();

  const inp = (name, value, attrs = {}) => h('input', { name, value: value ?? '', autocomplete: 'off', ...attrs });
  const F = {
    id: inp('id', job.id, { required: true, readOnly: !!editId, pattern: '[a-z0-9][a-z0-9_-]*', class: 'mono' }),
    name: inp('name', job.name),
    group: inp('group', job.group, { list: 'group-list' }),
    description: h('textarea', { name: 'description', rows: 2 }, job.description || ''),
    command: h('textarea', { name: 'command', rows: 3, class: 'mono', required: true, spellcheck: 'false' }, Array.isArray(job.command) ? job.command.join('\n') : job.command),
    commandForm: select([['line', t('editor.cmd_line')], ['argv', t('editor.cmd_argv')]], Array.isArray(job.command) ? 'argv' : 'line', { name: 'command_form' }),
    shell: h('input', { type: 'checkbox', name: 'shell', checked: !!job.shell }),
    run_as: inp('run_as', job.run_as, { placeholder: t('editor.default_user') }),
    workdir: inp('workdir', job.workdir, { class: 'mono' }),
    kind: select([['one', t('kind.one')], ['all', t('kind.all')]], job.kind, { name: 'kind' }),
    concurrency: select(['forbid', 'allow', 'replace'].map((c) => [c, t(`concurrency.${c}`)]), job.concurrency, { name: 'concurrency' }),
    max_parallel: inp('max_parallel', job.max_parallel, { type: 'number', min: 1 }),
    timeout: inp('timeout', job.timeout, { placeholder: t('editor.no_limit') }),
    kill_grace: inp('kill_grace', job.kill_grace),
    retries: inp('retries', job.retries, { type: 'number', min: 0 }),
    retry_delay: inp('retry_delay', job.retry_delay),
    on_lost: select([['record', t('on_lost.record')], ['retry', t('on_lost.retry')]], job.on_lost, { name: 'on_lost' }),
    missed: select(['skip', 'once', 'all'].map((c) => [c, t(`missed.${c}`)]), job.missed, { name: 'missed' }),
    start_deadline: inp('start_deadline', job.start_deadline, { placeholder: t('editor.auto') }),
    max_catchup: inp('max_catchup', job.max_catchup, { type: 'number', min: 0 }),
    output_limit: inp('output_limit', job.output_limit),
    mem: inp('memory', job.limits && job.limits.memory, { placeholder: '512MiB' }),
    cpu: inp('cpu', job.limits && job.limits.cpu, { type: 'number', step: '0.1', min: 0 }),
    tasks: inp('tasks', job.limits && job.limits.tasks, { type: 'number', min: 1 }),
    mail: inp('mail', ((job.notify && job.notify.mail) || []).join(', ')),
    webhooks: h('textarea', { name: 'webhooks', rows: 2, class: 'mono' }, ((job.notify && job.notify.webhooks) || []).join('\n')),
    labels: h('textarea', { name: 'labels', rows: 2, class: 'mono', placeholder: 'team=db' }, Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join('\n')),
    paused: h('input', { type: 'checkbox', name: 'paused', checked: !!job.paused }),
    paused_reason: inp('paused_reason', job.paused_reason),
  };
  const notifyOn = NOTIFY_EVENTS.map((ev) => h('input', { type: 'checkbox', value: ev, checked: ((job.notify && job.notify.on) || []).includes(ev) }));

  // Rules
  const rulesBox = h('div', { class: 'rules' });
  let rules = [];
  const drawRules = (defs) => {
    rules = defs.map((r, i) => ruleBlock(r, i, known, defs.length > 1 ? () => drawRules(collectRules().filter((_, j) => j !== i)) : null));
    replace(rulesBox, rules.map((r) => r.el));
  };
  const collectRules = () => rules.map((r) => r.collect());
  drawRules(job.rules && job.rules.length ? job.rules : [{ schedule: '' }]);

  // Environment
  const envBox = h('div', { class: 'env' });
  const envRows = [];
  const addEnv = (k, v) => {
    const r = envRow(k, v, (el) => {
      envRows.splice(envRows.indexOf(r), 1);
      el.remove();
    });
    envRows.push(r);
    envBox.append(r.el);
  };
  for (const [k, v] of Object.entries(job.env || {})) addEnv(k, v);

  const collect = () => {
    const out = {
      id: F.id.value.trim(),
      name: F.name.value.trim(),
      group: F.group.value.trim() || 'default',
      command: F.commandForm.value === 'argv' ? lines(F.command.value) : F.command.value.trim(),
      shell: F.shell.checked,
      rules: collectRules(),
      kind: F.kind.value,
      concurrency: F.concurrency.value,
      max_parallel: numberOr(F.max_parallel.value) ?? 1,
      kill_grace: F.kill_grace.value.trim() || '10s',
      retries: numberOr(F.retries.value) ?? 0,
      retry_delay: F.retry_delay.value.trim() || '30s',
      on_lost: F.on_lost.value,
      missed: F.missed.value,
      max_catchup: numberOr(F.max_catchup.value) ?? 10,
      paused: F.paused.checked,
      output_limit: F.output_limit.value.trim() || '64KiB',
      description: F.description.value,
      revision,
    };
    const opt = (k, v) => {
      if (v !== undefined && v !== '') out[k] = v;
    };
    opt('timeout', F.timeout.value.trim());
    opt('run_as', F.run_as.value.trim());
    opt('workdir', F.workdir.value.trim());
    opt('start_deadline', F.start_deadline.value.trim());
    if (F.paused.checked) opt('paused_reason', F.paused_reason.value.trim());
    const env = Object.fromEntries(envRows.map((r) => r.collect()).filter(Boolean));
    if (Object.keys(env).length) out.env = env;
    const limits = {};
    if (F.mem.value.trim()) limits.memory = F.mem.value.trim();
    if (F.cpu.value !== '') limits.cpu = numberOr(F.cpu.value);
    if (F.tasks.value !== '') limits.tasks = numberOr(F.tasks.value);
    if (Object.keys(limits).length) out.limits = limits;
    const notify = {};
    const on = notifyOn.filter((c) => c.checked).map((c) => c.value);
    if (on.length) notify.on = on;
    if (list(F.mail.value).length) notify.mail = list(F.mail.value);
    if (lines(F.webhooks.value).length) notify.webhooks = lines(F.webhooks.value);
    if (Object.keys(notify).length) out.notify = notify;
    const labels = {};
    for (const l of lines(F.labels.value)) {
      const i = l.indexOf('=');
      labels[i < 0 ? l : l.slice(0, i).trim()] = i < 0 ? '' : l.slice(i + 1).trim();
    }
    if (Object.keys(labels).length) out.labels = labels;
    return out;
  };

  const topError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const saveBtn = h('button', { type: 'submit', class: 'btn primary', id: 'save-job' }, editId ? t('editor.save') : t('editor.create'));
  const form = h('form', { class: 'editor', novalidate: true },
    datalist('tz-list', zones()),
    datalist('group-list', jobGroups),
    topError,
    h('fieldset', {}, h('legend', {}, t('editor.basics')),
      h('div', { class: 'row' },
        field(t('editor.id'), F.id, { fieldName: 'id', help: editId ? t('editor.id_fixed') : t('editor.id_help') }),
        field(t('editor.name'), F.name, { fieldName: 'name', cls: 'grow' }),
        field(t('editor.group'), F.group, { fieldName: 'group', help: t('editor.group_help') })),
      field(t('editor.description'), F.description, { fieldName: 'description' })),
    h('fieldset', {}, h('legend', {}, t('editor.command')),
      h('div', { class: 'row' }, field(t('editor.cmd_form'), F.commandForm), h('label', { class: 'inline check' }, F.shell, t('editor.shell'))),
      field(t('editor.command'), F.command, { fieldName: 'command', help: t('editor.command_help') }),
      h('div', { class: 'row' },
        field(t('editor.run_as'), F.run_as, { fieldName: 'run_as', help: t('editor.run_as_help') }),
        field(t('editor.workdir'), F.workdir, { fieldName: 'workdir', cls: 'grow' })),
      h('div', { class: 'field', dataset: { fieldWrap: 'env' } }, h('span', { class: 'label' }, t('editor.env')), envBox,
        button(t('editor.add_env'), () => addEnv('', ''), { cls: 'small' }))),
    h('fieldset', {}, h('legend', {}, t('editor.schedules')),
      h('p', { class: 'help' }, t('editor.dst_help')),
      rulesBox,
      button(t('editor.add_rule'), () => drawRules([...collectRules(), { schedule: '' }]), { cls: 'small' })),
    h('fieldset', {}, h('legend', {}, t('editor.behaviour')),
      h('div', { class: 'row' },
        field(t('editor.kind'), F.kind, { fieldName: 'kind', help: t('editor.kind_help') }),
        field(t('editor.concurrency'), F.concurrency, { fieldName: 'concurrency' }),
        field(t('editor.max_parallel'), F.max_parallel, { fieldName: 'max_parallel' })),
      h('div', { class: 'row' },
        field(t('editor.timeout'), F.timeout, { fieldName: 'timeout', help: t('editor.duration_help') }),
        field(t('editor.kill_grace'), F.kill_grace, { fieldName: 'kill_grace' }),
        field(t('editor.retries'), F.retries, { fieldName: 'retries' }),
        field(t('editor.retry_delay'), F.retry_delay, { fieldName: 'retry_delay' })),
      h('div', { class: 'row' },
        field(t('editor.missed'), F.missed, { fieldName: 'missed' }),
        field(t('editor.start_deadline'), F.start_deadline, { fieldName: 'start_deadline' }),
        field(t('editor.max_catchup'), F.max_catchup, { fieldName: 'max_catchup' }),
        field(t('editor.on_lost'), F.on_lost, { fieldName: 'on_lost' })),
      h('div', { class: 'row' },
        field(t('editor.output_limit'), F.output_limit, { fieldName: 'output_limit', help: t('editor.output_limit_help') }),
        field(t('editor.memory'), F.mem, { fieldName: 'limits.memory' }),
        field(t('editor.cpu'), F.cpu, { fieldName: 'limits.cpu' }),
        field(t('editor.tasks'), F.tasks, { fieldName: 'limits.tasks' }))),
    h('fieldset', {}, h('legend', {}, t('editor.notify')),
      h('div', { class: 'checks', role: 'group', 'aria-label': t('editor.notify_on') }, h('span', { class: 'label' }, t('editor.notify_on')),
        notifyOn.map((c) => h('label', { class: 'inline check' }, c, t(`notify.${c.value}`)))),
      h('div', { class: 'row' },
        field(t('editor.mail'), F.mail, { fieldName: 'notify.mail', cls: 'grow' }),
        field(t('editor.webhooks'), F.webhooks, { fieldName: 'notify.webhooks', cls: 'grow' }))),
    h('fieldset', {}, h('legend', {}, t('editor.other')),
      field(t('editor.labels'), F.labels, { fieldName: 'labels', help: t('editor.labels_help') }),
      h('div', { class: 'row' },
        h('label', { class: 'inline check' }, F.paused, t('editor.paused')),
        field(t('editor.paused_reason'), F.paused_reason, { fieldName: 'paused_reason', cls: 'grow' }))),
    h('div', { class: 'actions' }, saveBtn, h('a', { class: 'btn', href: editId ? `/ui/jobs/${seg(editId)}` : '/ui/jobs' }, t('common.cancel'))));

  const page = h('div', { class: 'editor-page' });
  const showForm = () => replace(page, h('div', { class: 'page-head' }, h('h1', {}, editId ? t('editor.edit_title', { id: editId }) : t('editor.new_title'))), form);

  const showApiError = (e) => {
    if (e.field) {
      // Map fields (env.X, labels.x) fall back to their parent when no control names them.
      const candidates = [e.field];
      let f = e.field;
      while (/[.[]/.test(f)) {
        f = f.replace(/(\.[^.[\]]*|\[\d+\])$/, '');
        candidates.push(f);
      }
      for (const c of candidates) if (showFieldError(form, c, e.message)) return;
    }
    topError.hidden = false;
    replace(topError, e.message);
    topError.scrollIntoView({ block: 'center' });
  };

  const save = async (body, ifMatch) => {
    if (editId) return put(`/jobs/${seg(editId)}`, body, { headers: { 'If-Match': `"${ifMatch}"` } });
    return post('/jobs', body);
  };

  const conflict = async (mine) => {
    let theirs;
    try {
      theirs = (await get(`/jobs/${seg(editId)}`)).job;
    } catch (e) {
      replace(page, errorBox(e));
      return;
    }
    const rows = diff(theirs, mine);
    const changed = rows.filter(([, a, b]) => a !== b);
    replace(page,
      h('div', { class: 'page-head' }, h('h1', {}, t('conflict.title'))),
      h('div', { class: 'conflict', id: 'conflict' },
        h('p', {}, t('conflict.text', { rev: theirs.revision, mine: revision })),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('conflict.field')), h('th', { scope: 'col' }, t('conflict.theirs')), h('th', { scope: 'col' }, t('conflict.yours')))),
          h('tbody', {}, (changed.length ? changed : rows.slice(0, 0)).map(([k, a, b]) => h('tr', { class: 'changed' }, h('th', { scope: 'row' }, k), h('td', { 'data-label': t('conflict.theirs') }, h('code', { class: 'wrap' }, a)), h('td', { 'data-label': t('conflict.yours') }, h('code', { class: 'wrap' }, b))))))),
        changed.length ? null : h('p', { class: 'muted' }, t('conflict.same')),
        h('div', { class: 'actions' },
          button(t('conflict.reload'), () => ctx.navigate(location.pathname, { replace: true }), { cls: 'primary' }),
          button(t('conflict.overwrite'), async () => {
            try {
              const saved = await save({ ...mine, revision: theirs.revision }, theirs.revision);
              toast(t('editor.saved'));
              ctx.navigate(`/ui/jobs/${seg(saved.id)}`);
            } catch (e) {
              if (e.status === 409) conflict(mine);
              else {
                showForm();
                showApiError(e);
              }
            }
          }, { cls: 'danger' }),
          button(t('conflict.back'), showForm))));
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    topError.hidden = true;
    const body = collect();
    saveBtn.disabled = true;
    try {
      const saved = await save(body, revision);
      toast(t('editor.saved'));
      ctx.navigate(`/ui/jobs/${seg(saved.id)}`);
    } catch (e) {
      if (e.status === 409 && editId) conflict(body);
      else if (e.status === 409) showApiError({ ...e, field: 'id', message: e.message });
      else showApiError(e);
    } finally {
      saveBtn.disabled = false;
    }
  });

  showForm();
  return page;
}
