import { h } from '../dom.js';
import { t } from '../i18n.js';

export function render() {
  return h('div', {}, h('h1', {}, t('error.not_found_title')), h('p', {}, t('error.not_found')), h('p', {}, h('a', { href: '/ui/' }, t('nav.dashboard'))));
}
