import { h } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, put, del, seg } from '../api.js';
import { card, table, field, button, dialog, confirmDialog, toast, showFieldError, clearFieldErrors } from '../widgets.js';
import { when } from '../format.js';
import { accessInputs, scopeText, changePassword } from './access.js';

export function render(ctx) {
  const reload = () => ctx.navigate('/ui/accounts', { replace: true });
  const act = (fn) => () => fn().catch((e) => toast(e.message, 'bad'));

  const edit = (acc) => act(async () => {
    const access = accessInputs(acc);
    const disabled = h('input', { type: 'checkbox', name: 'disabled', checked: !!acc.disabled });
    const form = await dialog(t('accounts.edit_title', { user: acc.user }), h('div', {}, access.el, h('label', { class: 'inline check' }, disabled, t('accounts.disabled'))), { okLabel: t('editor.save') });
    if (!form) return;
    await put(`/accounts/${seg(acc.user)}`, { user: acc.user, ...access.collect(), disabled: disabled.checked });
    toast(t('editor.saved'));
    reload();
  });

  const resetPassword = (acc) => act(async () => {
    if (await changePassword(acc.user, acc.user === ctx.me.user)) toast(t('accounts.password_set'));
  });

  const remove = (acc) => act(async () => {
    if (!(await confirmDialog(t('accounts.delete_title', { user: acc.user }), t('accounts.delete_text'), { okLabel: t('job.delete'), danger: true }))) return;
    await del(`/accounts/${seg(acc.user)}`);
    toast(t('accounts.deleted', { user: acc.user }));
    reload();
  });

  const user = h('input', { name: 'user', autocomplete: 'off', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true });
  const access = accessInputs({ role: 'viewer' });
  const createForm = h('form', { class: 'inline-form', id: 'new-account' },
    h('div', { class: 'row' }, field(t('login.user'), user, { fieldName: 'user' }), field(t('login.password'), password, { fieldName: 'password' })),
    h('div', { class: 'row' }, access.el),
    h('button', { type: 'submit', class: 'btn primary' }, t('accounts.create')));
  createForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(createForm);
    try {
      await post('/accounts', { user: user.value.trim(), password: password.value, ...access.collect() });
      toast(t('accounts.created', { user: user.value.trim() }));
      reload();
    } catch (e) {
      if (!(e.field && showFieldError(createForm, e.field, e.message))) toast(e.message, 'bad');
    }
  });

  return h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, t('accounts.title'))),
    card(t('accounts.title'), () => get('/accounts'), (list) => table([
      [t('login.user'), (a) => h('strong', {}, a.user, a.user === ctx.me.user ? ` (${t('accounts.you')})` : '')],
      [t('access.role'), (a) => t(`role.${a.role}`)],
      [t('access.scope'), (a) => scopeText(a)],
      [t('accounts.created_at'), (a) => when(a.created_at)],
      [t('accounts.state'), (a) => (a.disabled ? h('span', { class: 'badge st-failed' }, t('accounts.disabled')) : h('span', { class: 'badge st-success' }, t('accounts.enabled')))],
      [t('common.actions'), (a) => h('div', { class: 'actions' },
        button(t('job.edit'), edit(a), { cls: 'small' }),
        button(t('accounts.set_password'), resetPassword(a), { cls: 'small' }),
        a.user !== ctx.me.user ? button(t('job.delete'), remove(a), { cls: 'small danger' }) : null)],
    ], list, { empty: t('accounts.none') }), { cls: 'wide plain' }),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('accounts.new'))), h('div', { class: 'card-body' }, createForm)));
}
