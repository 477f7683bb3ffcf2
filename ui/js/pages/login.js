import { h } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { field } from '../widgets.js';

export function render(ctx) {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true, value: 'admin' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { class: 'error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary' }, t('login.submit'));
  const form = h('form', { class: 'login-form', novalidate: false },
    field(t('login.user'), user),
    field(t('login.password'), password),
    msg,
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    submit.disabled = true;
    try {
      const me = await post('/session', { user: user.value.trim(), password: password.value }, { quiet401: true });
      ctx.setMe(me);
      const next = ctx.query.get('next');
      ctx.navigate(next && next.startsWith('/ui') && !next.startsWith('/ui/login') ? next : '/ui/', { replace: true });
    } catch (e) {
      msg.hidden = false;
      if (e.status === 401) msg.textContent = t('login.wrong');
      else if (e.status === 429) msg.textContent = t('login.rate_limited', { s: e.retryAfter || '?' });
      else if (e.status === 404) msg.textContent = t('login.no_accounts');
      else if (e.status === 0) msg.textContent = t('error.network');
      else msg.textContent = e.message;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  setTimeout(() => (user.value ? password : user).focus(), 0);
  return h('div', { class: 'login' },
    h('h1', {}, t('login.title')),
    ctx.query.get('expired') ? h('p', { class: 'notice' }, t('login.expired')) : null,
    form,
    h('p', { class: 'hint' }, t('login.hint_before'), ' ', h('code', {}, 'initial-admin-password'), ' ', t('login.hint_after')));
}
