// The app: session, layout (header, navigation, banners) and the router.
// Pages are ES modules under js/pages/, loaded when first visited; each
// exports `render(ctx)` returning an element (ctx.main is where it goes).
import { h, replace, clear } from './dom.js';
import { t, setLang, currentLang, LANGS } from './i18n.js';
import { get, put, del, setHooks, setCsrf, ApiError } from './api.js';
import { errorBox, loading, select, dialog, toast } from './widgets.js';
import { can } from './roles.js';

const ROUTES = [
  [/^\/ui\/?$/, 'dashboard'],
  [/^\/ui\/login$/, 'login', { public: true }],
  [/^\/ui\/jobs$/, 'jobs'],
  [/^\/ui\/jobs\/new$/, 'editor', { admin: true }],
  [/^\/ui\/jobs\/([^/]+)\/edit$/, 'editor', { param: 'id', admin: true }],
  [/^\/ui\/jobs\/([^/]+)$/, 'job', { param: 'id' }],
  [/^\/ui\/runs$/, 'runs'],
  [/^\/ui\/runs\/(.+)$/, 'run', { param: 'id' }],
  [/^\/ui\/nodes$/, 'nodes'],
  [/^\/ui\/accounts$/, 'accounts', { admin: true }],
  [/^\/ui\/tokens$/, 'tokens', { admin: true }],
  [/^\/ui\/audit$/, 'audit', { admin: true }],
];

const state = { me: null, cleanups: [], seq: 0, offline: false, pause: null };
const main = document.getElementById('main');
const top = document.getElementById('top');
const banners = document.getElementById('banners');

export function navigate(href, { replace: rep = false } = {}) {
  if (rep) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  route();
}

/** Loads who we are: Me from GET /api/v1/session; null when logged out. */
async function loadMe() {
  try {
    const me = await get('/session', { quiet401: true });
    setCsrf(me.csrf_token);
    return me;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

function navLinks(me) {
  const items = [['/ui/', 'nav.dashboard'], ['/ui/jobs', 'nav.jobs'], ['/ui/runs', 'nav.runs'], ['/ui/nodes', 'nav.nodes']];
  if (can.admin(me)) items.push(['/ui/audit', 'nav.audit'], ['/ui/accounts', 'nav.accounts'], ['/ui/tokens', 'nav.tokens']);
  const path = location.pathname.replace(/\/$/, '') || '/ui';
  return items.map(([href, key]) => {
    const base = href.replace(/\/$/, '');
    const active = base === '/ui' ? path === '/ui' : path === base || path.startsWith(`${base}/`);
    return h('li', {}, h('a', { href, 'aria-current': active ? 'page' : null }, t(key)));
  });
}

function langSwitch() {
  const sel = select(LANGS, currentLang(), { id: 'lang', 'aria-label': t('nav.language') });
  sel.addEventListener('change', () => {
    setLang(sel.value);
    route();
  });
  return sel;
}

function renderTop() {
  const me = state.me;
  const menuBtn = h('button', { type: 'button', class: 'btn menu-toggle', 'aria-expanded': 'false', 'aria-controls': 'nav' }, t('nav.menu'));
  const nav = h('nav', { id: 'nav', 'aria-label': t('nav.main') }, h('ul', {}, me ? navLinks(me) : []));
  menuBtn.addEventListener('click', () => {
    const open = top.classList.toggle('open');
    menuBtn.setAttribute('aria-expanded', String(open));
  });
  replace(top,
    h('a', { href: '/ui/', class: 'brand' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 22, height: 22 }), 'cronsun'),
    me ? menuBtn : null,
    me ? nav : null,
    h('div', { class: 'top-right' },
      langSwitch(),
      me ? h('button', { type: 'button', class: 'whoami', id: 'whoami', title: `${t('nav.role_title', { role: t(`role.${me.role}`) })}. ${me.via === 'session' ? t('nav.change_password') : ''}`, disabled: me.via !== 'session', onclick: ownPassword },
        me.user, ' ', h('span', { class: 'role' }, t(`role.${me.role}`))) : null,
      me && me.via === 'session' ? h('button', { type: 'button', class: 'btn small', onclick: logout }, t('nav.logout')) : null));
}

async function ownPassword() {
  const { changePassword } = await import('./pages/access.js');
  try {
    if (await changePassword(state.me.user, true)) toast(t('accounts.password_set'));
  } catch (e) {
    toast(e.message, 'bad');
  }
}

async function logout() {
  try {
    await del('/session');
  } catch {
    /* already gone */
  }
  state.me = null;
  setCsrf(null);
  navigate('/ui/login', { replace: true });
}

// ----- banners: offline (with retry) and global pause -----

let retryTimer = null;
function setOffline(off) {
  if (off === state.offline) return;
  state.offline = off;
  renderBanners();
  if (off && !retryTimer) {
    retryTimer = setInterval(probe, 5000);
  } else if (!off && retryTimer) {
    clearInterval(retryTimer);
    retryTimer = null;
  }
}

async function probe() {
  try {
    const r = await fetch('/healthz', { cache: 'no-store' });
    if (r.ok) {
      setOffline(false);
      route();
    }
  } catch {
    /* still down */
  }
}

export function setPause(p) {
  state.pause = p;
  renderBanners();
}

async function loadPause() {
  try {
    setPause(await get('/pause'));
  } catch {
    /* shown by the pages that need it */
  }
}

export async function togglePause() {
  if (state.pause && state.pause.paused) {
    setPause(await del('/pause'));
    toast(t('pause.resumed'));
    return;
  }
  const reason = h('textarea', { name: 'reason', id: 'pause-reason', required: true, maxlength: 1024, rows: 3 });
  const form = await dialog(t('pause.title'), h('div', { class: 'field' }, h('p', {}, t('pause.explain')), h('label', { for: 'pause-reason' }, t('pause.reason')), reason), { okLabel: t('pause.do'), danger: true });
  if (!form) return;
  setPause(await put('/pause', { reason: String(form.get('reason') || '') }));
  toast(t('pause.paused'));
}

function renderBanners() {
  const items = [];
  if (state.offline) {
    items.push(h('div', { class: 'banner offline', role: 'alert' }, t('banner.offline'), ' ',
      h('button', { type: 'button', class: 'btn small', onclick: probe }, t('common.retry_now'))));
  }
  const p = state.pause;
  if (p && p.paused && state.me) {
    items.push(h('div', { class: 'banner paused', role: 'status' },
      h('strong', {}, t('banner.paused')), ' ', p.reason ? t('banner.paused_reason', { reason: p.reason }) : '',
      can.admin(state.me) ? [' ', h('button', { type: 'button', class: 'btn small', id: 'resume-all', onclick: () => togglePause().catch((e) => toast(e.message, 'bad')) }, t('pause.resume'))] : null));
  }
  replace(banners, items);
}

// ----- router -----

async function route() {
  const seq = ++state.seq;
  for (const c of state.cleanups.splice(0)) {
    try {
      c();
    } catch {
      /* ignore */
    }
  }
  const path = location.pathname;
  let match = null;
  for (const [re, page, opts = {}] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      match = { page, opts, params: opts.param ? { [opts.param]: decodeURIComponent(m[1]) } : {} };
      break;
    }
  }
  if (!match) match = { page: 'notfound', opts: {}, params: {} };
  if (!state.me && !match.opts.public) {
    replace(main, loading());
    try {
      state.me = await loadMe();
    } catch (e) {
      renderTop();
      replace(main, errorBox(e, route));
      return;
    }
    if (seq !== state.seq) return;
    if (!state.me) {
      const next = path + location.search;
      history.replaceState(null, '', `/ui/login${next.startsWith('/ui/login') ? '' : `?next=${encodeURIComponent(next)}`}`);
      return route();
    }
    loadPause();
  }
  renderTop();
  renderBanners();
  if (match.opts.admin && !can.admin(state.me)) {
    replace(main, h('h1', {}, t('error.title')), errorBox(new ApiError(403, null, t('error.admin_only'))));
    return;
  }
  replace(main, loading());
  try {
    const mod = await import(`./pages/${match.page}.js`);
    if (seq !== state.seq) return;
    const ctx = {
      me: state.me,
      params: match.params,
      query: new URLSearchParams(location.search),
      navigate,
      onCleanup: (f) => state.cleanups.push(f),
      isCurrent: () => seq === state.seq,
      setMe: (me) => {
        state.me = me;
        setCsrf(me && me.csrf_token);
        if (me) loadPause();
      },
      setPause,
      togglePause,
      pause: () => state.pause,
    };
    const el = await mod.render(ctx);
    if (seq !== state.seq) return;
    replace(main, el);
    const title = main.querySelector('h1');
    document.title = title ? `${title.textContent} · cronsun` : 'cronsun';
  } catch (e) {
    if (seq !== state.seq) return;
    if (e instanceof ApiError && e.status === 401) return;
    replace(main, h('h1', {}, t('error.title')), errorBox(e, route));
    // A page module that failed to load: tell a network failure apart from a bug.
    if (!(e instanceof ApiError)) fetch('/healthz', { cache: 'no-store' }).catch(() => setOffline(true));
  }
}

setHooks({
  unauthorized() {
    if (!state.me) return;
    state.me = null;
    setCsrf(null);
    const next = location.pathname + location.search;
    navigate(`/ui/login?next=${encodeURIComponent(next)}&expired=1`, { replace: true });
  },
  offline: () => setOffline(true),
  online: () => setOffline(false),
});

// Links inside the app are handled here (no full reload).
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest && ev.target.closest('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const href = a.getAttribute('href') || (a.href && a.href.baseVal);
  if (!href || !href.startsWith('/ui')) return;
  ev.preventDefault();
  top.classList.remove('open');
  navigate(href);
  main.focus({ preventScroll: true });
});
window.addEventListener('popstate', route);
window.addEventListener('unhandledrejection', (ev) => {
  const e = ev.reason;
  if (e instanceof ApiError && e.status === 401) return;
  toast(e && e.message ? e.message : String(e), 'bad');
});
clear(main);
route();
