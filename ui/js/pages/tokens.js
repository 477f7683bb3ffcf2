import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, del, seg } from '../api.js';
import { card, table, field, button, select, confirmDialog, toast, showFieldError, clearFieldErrors } from '../widgets.js';
import { when } from '../format.js';
import { accessInputs, scopeText } from './access.js';

export function render(ctx) {
  const reload = () => ctx.navigate('/ui/tokens', { replace: true });
  const name = h('input', { name: 'name', autocomplete: 'off', required: true });
  const expires = select([['30d', '30 d'], ['1d', '1 d'], ['7d', '7 d'], ['90d', '90 d'], ['365d', '365 d'], ['', t('tokens.never')]], '30d', { name: 'expires_in' });
  const access = accessInputs({ role: 'viewer' });
  const secretBox = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form', id: 'new-token' },
    h('div', { class: 'row' }, field(t('tokens.name'), name, { fieldName: 'name' }), field(t('tokens.expires_in'), expires, { fieldName: 'expires_in' })),
    h('div', { class: 'row' }, access.el),
    h('button', { type: 'submit', class: 'btn primary' }, t('tokens.create')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    try {
      const r = await post('/tokens', { name: name.value.trim(), ...access.collect(), expires_in: expires.value || null });
      const code = h('code', { class: 'secret', id: 'token-secret' }, r.token);
      replace(secretBox, h('div', { class: 'notice' },
        h('p', {}, h('strong', {}, t('tokens.shown_once'))), code, ' ',
        button(t('tokens.copy'), () => navigator.clipboard.writeText(r.token).then(() => toast(t('tokens.copied'))).catch(() => toast(t('tokens.copy_failed'), 'bad')), { cls: 'small' }),
        ' ', button(t('common.done'), () => replace(secretBox), { cls: 'small' })));
      form.reset();
      listCard.reload();
    } catch (e) {
      if (!(e.field && showFieldError(form, e.field, e.message))) toast(e.message, 'bad');
    }
  });

  const revoke = (tok) => async () => {
    if (!(await confirmDialog(t('tokens.revoke_title', { name: tok.name }), t('tokens.revoke_text'), { okLabel: t('tokens.revoke'), danger: true }))) return;
    try {
      await del(`/tokens/${seg(tok.id)}`);
      toast(t('tokens.revoked'));
      reload();
    } catch (e) {
      toast(e.message, 'bad');
    }
  };

  const listCard = card(t('tokens.title'), () => get('/tokens'), (list) => table([
      [t('tokens.name'), (x) => h('div', {}, h('strong', {}, x.name), h('div', { class: 'muted small mono' }, x.id))],
      [t('access.role'), (x) => t(`role.${x.role}`)],
      [t('access.scope'), (x) => scopeText(x)],
      [t('tokens.created'), (x) => h('span', {}, when(x.created_at), x.created_by ? ` · ${x.created_by}` : '')],
      [t('tokens.expires'), (x) => (x.expires_at ? when(x.expires_at) : t('tokens.never'))],
      [t('common.actions'), (x) => (x.revoked ? h('span', { class: 'badge st-skipped' }, t('tokens.revoked_state')) : button(t('tokens.revoke'), revoke(x), { cls: 'small danger' }))],
    ], list, { empty: t('tokens.none') }), { cls: 'wide plain' });
  return h('div', {},
    h('div', { class: 'page-head' }, h('h1', {}, t('tokens.title'))),
    listCard,
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', {}, t('tokens.new'))), h('div', { class: 'card-body' }, secretBox, form)));
}
