// The API client: cookie session, X-CSRF-Token on mutations, JSON errors as
// ApiError (status, code, message, field). 401 and network failures are
// reported to the app through hooks (login page; retry banner).

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const message = (body && (body.message || body.error)) || fallback || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && body.error;
    this.field = body && body.field;
    this.body = body;
  }
}

const hooks = { unauthorized() {}, offline() {}, online() {} };
let csrf = null;

export function setHooks(h) {
  Object.assign(hooks, h);
}

export function setCsrf(token) {
  csrf = token || null;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** One call to /api/v1`path`. Returns the parsed body (null for 204); with `full`, {data, res}. */
export async function api(method, path, { body, headers = {}, params, full = false, quiet401 = false } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) init.headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(`/api/v1${path}${query(params)}`, init);
  } catch (e) {
    hooks.offline();
    throw new ApiError(0, null, `network error: ${e.message}`);
  }
  hooks.online();
  const type = res.headers.get('content-type') || '';
  let data = null;
  if (res.status !== 204 && res.status !== 304) {
    data = type.includes('json') ? await res.json().catch(() => null) : await res.text().catch(() => '');
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data && typeof data === 'object' ? data : null, typeof data === 'string' ? data.trim() : '');
    err.retryAfter = res.headers.get('retry-after');
    if (res.status === 401 && !quiet401) hooks.unauthorized(err);
    throw err;
  }
  return full ? { data, res } : data;
}

export const get = (path, opts) => api('GET', path, opts);
export const post = (path, body, opts) => api('POST', path, { ...opts, body });
export const put = (path, body, opts) => api('PUT', path, { ...opts, body });
export const del = (path, opts) => api('DELETE', path, opts);

/** Path segment encoding (run ids carry `#`). */
export const seg = (s) => encodeURIComponent(s);
