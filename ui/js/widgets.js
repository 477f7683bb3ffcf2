// Shared pieces: status badges, loading/error states, sections that load
// on their own, buttons, form fields, dialogs.
import { h, replace, nextId } from './dom.js';
import { t } from './i18n.js';

export const STATUSES = ['running', 'success', 'failed', 'timeout', 'killed', 'lost', 'skipped', 'missed'];
export const FAILURES = new Set(['failed', 'timeout', 'killed', 'lost', 'missed']);

export function badge(status) {
  if (!status) return h('span', { class: 'muted' }, '—');
  return h('span', { class: `badge st-${status}` }, t(`status.${status}`));
}

export function loading() {
  return h('p', { class: 'loading', role: 'status' }, t('common.loading'));
}

/** An error box naming what failed; `retry` adds a button. */
export function errorBox(err, retry) {
  const msg = err && err.status === 403 ? t('error.forbidden', { message: err.message }) : err && err.status === 0 ? t('error.network') : (err && err.message) || String(err);
  return h('div', { class: 'error', role: 'alert' },
    h('span', {}, msg),
    retry ? h('button', { type: 'button', class: 'btn small', onclick: retry }, t('common.retry')) : null);
}

export function empty(text) {
  return h('p', { class: 'empty' }, text);
}

/**
 * A card whose body loads on its own: shows loading, then `render(data)`,
 * or an error with a retry button. Returns the element at once.
 */
export function card(title, load, render, { cls = '', actions = null } = {}) {
  const body = h('div', { class: 'card-body' }, loading());
  const el = h('section', { class: `card ${cls}` }, h('div', { class: 'card-head' }, h('h2', {}, title), actions), body);
  const run = async () => {
    replace(body, loading());
    try {
      const data = await load();
      replace(body, render(data));
    } catch (e) {
      replace(body, errorBox(e, run));
    }
  };
  run();
  el.reload = run;
  return el;
}

export function button(label, onclick, { cls = '', type = 'button', disabled = false, title } = {}) {
  return h('button', { type, class: `btn ${cls}`, onclick, disabled, title }, label);
}

export function link(href, ...children) {
  return h('a', { href }, ...children);
}

/**
 * A labelled form field; `input` is the control. The error slot shows the
 * API's message for this field (data-field names the API's field path).
 */
export function field(label, input, { help, fieldName, cls = '' } = {}) {
  const id = input.id || nextId();
  input.id = id;
  const err = h('p', { class: 'field-error', id: `${id}-err`, hidden: true });
  if (fieldName) input.dataset.field = fieldName;
  input.setAttribute('aria-describedby', `${id}-err${help ? ` ${id}-help` : ''}`);
  // The API's message stays until the field is edited.
  input.addEventListener('input', () => {
    err.hidden = true;
    input.removeAttribute('aria-invalid');
  });
  return h('div', { class: `field ${cls}`, dataset: fieldName ? { fieldWrap: fieldName } : {} },
    h('label', { for: id }, label),
    input,
    help ? h('p', { class: 'help', id: `${id}-help` }, help) : null,
    err);
}

/** Shows `message` under the control for `fieldName` inside `form`; false if none matches. */
export function showFieldError(form, fieldName, message) {
  const input = form.querySelector(`[data-field="${CSS.escape(fieldName)}"]`);
  if (!input) return false;
  const err = form.querySelector(`#${CSS.escape(input.id)}-err`);
  if (err) {
    err.textContent = message;
    err.hidden = false;
  }
  input.setAttribute('aria-invalid', 'true');
  input.focus();
  return true;
}

export function clearFieldErrors(form) {
  for (const e of form.querySelectorAll('.field-error')) {
    e.hidden = true;
    e.textContent = '';
  }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

/** A compact filter control with its label (explicit `for`, so the label is only its text). */
export function filter(label, control) {
  control.id = control.id || nextId('flt');
  return h('div', { class: 'filter' }, h('label', { for: control.id }, label), control);
}

export function select(options, value, attrs = {}) {
  return h('select', attrs, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

/** A modal <dialog>; resolves with the value `onOk` returns, or null when cancelled. */
export function dialog(title, body, { okLabel, danger = false } = {}) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', {}, title),
      body,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', value: 'cancel', class: 'btn', formnovalidate: true }, t('common.cancel')),
        h('button', { type: 'submit', value: 'ok', class: `btn ${danger ? 'danger' : 'primary'}` }, okLabel || t('common.ok'))));
    const dlg = h('dialog', { class: 'dialog' }, form);
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'ok';
      dlg.remove();
      resolve(ok ? new FormData(form) : null);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function confirmDialog(title, text, opts) {
  return dialog(title, h('p', {}, text), opts).then((r) => r !== null);
}

/** A small transient message (success of an action). */
export function toast(text, kind = 'ok') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', class: 'toasts', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const el = h('div', { class: `toast ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, text);
  box.append(el);
  setTimeout(() => el.remove(), 4000);
}

/** A table from rows; `cols` = [[header, cell(row)], ...]. */
export function table(cols, rows, { cls = '', empty: emptyText } = {}) {
  if (!rows.length && emptyText) return empty(emptyText);
  return h('div', { class: 'table-wrap' },
    h('table', { class: cls },
      h('thead', {}, h('tr', {}, cols.map(([head]) => h('th', { scope: 'col' }, head)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, cols.map(([head, cell]) => h('td', { 'data-label': head }, cell(r))))))));
}

export function dl(pairs) {
  return h('dl', { class: 'meta' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
