// Shared by accounts and tokens: the role / groups / permissions inputs.
import { h, nextId } from '../dom.js';
import { t } from '../i18n.js';
import { field, select, dialog } from '../widgets.js';
import { post, seg } from '../api.js';

export const ROLES = ['viewer', 'operator', 'admin'];

export function accessInputs(initial = {}) {
  const role = select(ROLES.map((r) => [r, t(`role.${r}`)]), initial.role || 'viewer', { name: 'role' });
  const groups = h('input', { name: 'groups', value: (initial.groups || []).join(', '), autocomplete: 'off' });
  const perms = initial.permissions || {};
  const ro = h('input', { type: 'checkbox', name: 'read_output', id: nextId('perm'), checked: !!perms.read_output });
  const pr = h('input', { type: 'checkbox', name: 'privileged_run_as', id: nextId('perm'), checked: !!perms.privileged_run_as });
  const el = [
    field(t('access.role'), role, { fieldName: 'role' }),
    field(t('access.groups'), groups, { fieldName: 'groups', help: t('access.groups_help') }),
    h('div', { class: 'checks' },
      h('label', { class: 'inline check' }, ro, t('access.read_output')),
      h('label', { class: 'inline check' }, pr, t('access.privileged_run_as'))),
  ];
  const collect = () => ({
    role: role.value,
    groups: groups.value.split(/[\s,]+/).filter(Boolean),
    permissions: { read_output: ro.checked, privileged_run_as: pr.checked },
  });
  return { el, collect };
}

export function scopeText(x) {
  const parts = [x.groups && x.groups.length ? x.groups.join(', ') : t('access.all_groups')];
  if (x.permissions && x.permissions.read_output) parts.push(t('access.read_output'));
  if (x.permissions && x.permissions.privileged_run_as) parts.push(t('access.privileged_run_as'));
  return parts.join(' · ');
}

/** Asks for a new password (and the current one for one's own account) and sets it; true when done. */
export async function changePassword(user, own) {
  const current = own ? h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true }) : null;
  const pw = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', required: true });
  const form = await dialog(t('accounts.password_title', { user }), h('div', {},
    current ? field(t('accounts.current_password'), current) : null,
    field(t('accounts.new_password'), pw)), { okLabel: t('accounts.set_password') });
  if (!form) return false;
  const body = { password: String(form.get('password')) };
  if (own) body.current_password = String(form.get('current_password'));
  await post(`/accounts/${seg(user)}/password`, body);
  return true;
}
