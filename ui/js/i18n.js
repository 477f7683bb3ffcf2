// Dictionaries per language (ui/i18n/*.js); the choice is kept in
// localStorage, the default comes from the browser's language.
import en from '../i18n/en.js';
import zh from '../i18n/zh.js';

const DICTS = { en, zh };
export const LANGS = [['en', 'English'], ['zh', '中文']];
const KEY = 'cronsun.lang';

function initial() {
  const saved = localStorage.getItem(KEY);
  if (saved && DICTS[saved]) return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

let lang = initial();
document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';

export function currentLang() {
  return lang;
}

/** BCP 47 tag for Intl formatting. */
export function locale() {
  return lang === 'zh' ? 'zh-CN' : 'en-GB';
}

export function setLang(l) {
  if (!DICTS[l]) return;
  lang = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
}

/** t('jobs.count', {n: 3}): the text in the current language, `{name}` filled in. */
export function t(key, vars) {
  const text = DICTS[lang][key] ?? DICTS.en[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}
