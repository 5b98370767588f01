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
    // Traditional Chinese covers Taiwan, Hong Kong, Macau and explicit Hant tags.
    if (lower.startsWith('zh') && (/hant|tw|hk|mo/.test(lower))) return 'zh-TW';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

export function currentLanguage() {
  return current;
}

/** Switch the UI language and re-render every element that carries a message key. */
export function setLanguage(language, {remember = false} = {}) {
  current = LANGUAGES.includes(language) ? language : 'en';
  document.documentElement.lang = current;
  if (remember) safeStorageSet(STORAGE_KEY, current);
  applyMessages(document);
}

/** Look up a message and fill its {placeholders}. */
export function t(key, params = {}) {
  const table = messages[current] || messages.en;
  const template = table[key] ?? messages.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

/** Fill text, aria-label and placeholder attributes from data-i18n* keys below ``root``. */
export function applyMessages(root) {
  for (const element of root.querySelectorAll('[data-i18n]')) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
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
