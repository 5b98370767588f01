// Message lookup for every UI string. The table lives in messages.json, which the Python
// builder also reads to render the page's first paint in the configured language.
import messages from './messages.json';

export const LANGUAGES = Object.keys(messages);
const STORAGE_KEY = 'webml.language';
let current = 'en';

/** Pick the UI language: a saved choice, then the spec's setting, then the browser's languages. */
export function pickLanguage(configured, browserLanguages = navigator.languages || []) {
  const saved = safeStorageGet(STORAGE_KEY);
  if (saved && LANGUAGES.includes(saved)) return saved;
  if (configured && configured !== 'auto' && LANGUAGES.includes(configured)) return configured;
  for (const tag of browserLanguages) {
    const lower = tag.toLowerCase();
    const primary = lower.split('-')[0];
    if (primary === 'zh') {
      // Traditional Chinese covers Taiwan, Hong Kong, Macau and explicit Hant tags. Simplified
      // Chinese has no table here and falls through to the next preference.
      if (/hant|tw|hk|mo/.test(lower) && LANGUAGES.includes('zh-TW')) return 'zh-TW';
      continue;
    }
    const match = LANGUAGES.find((language) => language.toLowerCase() === lower)
      || LANGUAGES.find((language) => language.split('-')[0].toLowerCase() === primary);
    if (match) return match;
  }
  return 'en';
}

export function currentLanguage() {
  return current;
}

/** Return a language's own name ("English", "繁體中文") for the language menu. */
export function languageName(language) {
  return (messages[language] || {})['language.name'] || language;
}

/** Switch the UI language and re-render every element that carries a message key. */
export function setLanguage(language, {remember = false} = {}) {
  current = LANGUAGES.includes(language) ? language : 'en';
  document.documentElement.lang = current;
  if (remember) safeStorageSet(STORAGE_KEY, current);
  applyMessages(document);
}

/**
 * Look up a message and fill its {placeholders}. A key missing in the current language falls
 * back to English. A message that depends on a number has plural variants ``KEY.one``,
 * ``KEY.other`` (and any other Intl.PluralRules category the language uses), chosen by the
 * ``count`` parameter.
 */
export function t(key, params = {}) {
  const table = messages[current] || messages.en;
  const template = lookup(table, key, params) ?? lookup(messages.en, key, params) ?? key;
  return template.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

function lookup(table, key, params) {
  if (table[key] !== undefined) return table[key];
  if (table[`${key}.other`] === undefined || !('count' in params)) return undefined;
  const category = new Intl.PluralRules(table === messages.en ? 'en' : current).select(Number(params.count));
  return table[`${key}.${category}`] ?? table[`${key}.other`];
}

/**
 * Fill text, aria-label, title and placeholder attributes from data-i18n* keys below ``root``.
 * ``data-i18n-params`` contains the JSON parameters of the ``data-i18n`` text.
 */
export function applyMessages(root) {
  for (const element of root.querySelectorAll('[data-i18n]')) {
    const params = element.dataset.i18nParams ? JSON.parse(element.dataset.i18nParams) : {};
    element.textContent = t(element.dataset.i18n, params);
  }
  for (const element of root.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
  }
  for (const element of root.querySelectorAll('[data-i18n-title]')) {
    element.setAttribute('title', t(element.dataset.i18nTitle));
  }
  for (const element of root.querySelectorAll('[data-i18n-placeholder]')) {
    element.setAttribute('placeholder', t(element.dataset.i18nPlaceholder));
  }
}

/** Format a number with the current language's conventions. */
export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(current, options).format(value);
}

function safeStorageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function safeStorageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage can be disabled (private mode, policies); the choice then lasts for this page only.
  }
}
