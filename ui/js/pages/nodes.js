import { h } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, seg } from '../api.js';
import { card, table, button, confirmDialog, toast } from '../widgets.js';
import { when } from '../format.js';
import { can } from '../roles.js';

// Drain (no new runs there; running runs finish) or undrain a node. Node
// actions affect every job group, so only unscoped operators see them.
function drainButton(n, reload) {
  const on = !n.draining;
  return button(t(on ? 'nodes.drain' : 'nodes.undrain'), async () => {
    if (on && !(await confirmDialog(t('nodes.drain_title', { node: n.id }), t('nodes.drain_text'), { okLabel: t('nodes.drain') }))) return;
    try {
      await post(`/nodes/${seg(n.id)}/${on ? 'drain' : 'undrain'}`);
      toast(t(on ? 'nodes.drained' : 'nodes.undrained', { node: n.id }));
      reload();
    } catch (e) {
      toast(e.message, 'bad');
    }
  }, { cls: on ? '' : 'primary', id: `${on ? 'drain' : 'undrain'}-${n.id}` });
}

export function render(ctx) {
  const operate = can.operate(ctx.me) && !(ctx.me.groups && ctx.me.groups.length);
  const nodesCard = card(t('nodes.title'), () => get('/nodes'), (nodes) => {
    const tz = new Set(nodes.map((n) => n.tzdata));
    return h('div', {},
      tz.size > 1 ? h('p', { class: 'warn', role: 'alert' }, t('nodes.tz_mismatch', { list: [...tz].join(', ') })) : null,
      table([
        [t('nodes.node'), (n) => h('div', {}, h('strong', {}, n.id), h('div', { class: 'muted small' }, n.hostname))],
        [t('nodes.state'), (n) => h('span', { class: `badge ${n.alive ? 'st-success' : 'st-failed'}` }, t(n.alive ? 'nodes.alive' : 'nodes.dead'), n.draining ? ` · ${t('nodes.draining')}` : '')],
        [t('nodes.version'), (n) => n.version],
        [t('nodes.tzdata'), (n) => n.tzdata],
        [t('nodes.clock'), (n) => h('span', { class: n.clock_ok ? 'ok' : 'warn' }, t(n.clock_ok ? 'nodes.clock_ok' : 'nodes.clock_bad'))],
        [t('nodes.running'), (n) => h('a', { href: `/ui/runs?node=${encodeURIComponent(n.id)}&status=running` }, String(n.running))],
        [t('nodes.groups'), (n) => (n.groups || []).join(', ') || '—'],
        [t('nodes.started'), (n) => when(n.started_at)],
        [t('nodes.last_seen'), (n) => when(n.last_seen)],
        operate ? [t('common.actions'), (n) => drainButton(n, () => nodesCard.reload())] : null,
      ].filter(Boolean), nodes, { empty: t('nodes.none') }));
  }, { cls: 'wide plain' });
  return h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, t('nodes.title'))),
    nodesCard,
    card(t('groups.title'), () => Promise.all([get('/nodes'), get('/jobs')]), ([nodes, jobs]) => {
      const nodeGroups = new Map();
      for (const n of nodes) for (const g of n.groups || []) nodeGroups.set(g, [...(nodeGroups.get(g) || []), n.id]);
      const jobGroups = new Map();
      for (const v of jobs.jobs) jobGroups.set(v.job.group, (jobGroups.get(v.job.group) || 0) + 1);
      return h('div', { class: 'grid two' },
        h('div', {}, h('h3', {}, t('groups.job_groups')), table([
          [t('jobs.group'), ([g]) => h('a', { href: `/ui/jobs?group=${encodeURIComponent(g)}` }, g)],
          [t('groups.jobs'), ([, n]) => String(n)],
        ], [...jobGroups].sort(), { empty: t('jobs.none') })),
        h('div', {}, h('h3', {}, t('groups.node_groups')), table([
          [t('jobs.group'), ([g]) => g],
          [t('nav.nodes'), ([, ids]) => ids.join(', ')],
        ], [...nodeGroups].sort(), { empty: t('groups.no_node_groups') })));
    }));
}
