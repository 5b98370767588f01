// The page's status areas: the runtime line (backend, threads, latency, warm-up times), the
// notice for a ?backend= request that could not start, errors, and the language menu.
import {currentLanguage, formatNumber, languageName, LANGUAGES, setLanguage, t} from '../i18n.js';

export function setText(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

/** Show message ``key`` in element ``id`` and keep the key, so a language switch re-renders it. */
export function setMessage(id, key, params = {}) {
  const element = document.getElementById(id);
  element.dataset.i18n = key;
  element.dataset.i18nParams = JSON.stringify(params);
  element.textContent = t(key, params);
}

/** Translate a coded backend failure ({backend, code, reason, params}) into the page's language. */
export function backendReason(failure) {
  const key = `backend.${failure.code}`;
  const text = t(key, {backend: failure.backend, ...failure.params});
  return text === key ? failure.reason : text;
}

/** Show the backend the page runs on and how it was chosen; ``state`` is window.webml. */
export function showRuntime(state) {
  const {name, threads, variant} = state.backend;
  const backend = document.getElementById('backend-status');
  backend.dataset.backend = name;
  backend.textContent = t('status.backend', {backend: variant ? `${name} (${t(`status.variant.${variant}`)})` : name});
  setText('how-status', t(`status.how.${state.how}`, {backend: name}));

  const threadsItem = document.getElementById('threads-status');
  threadsItem.dataset.threads = String(threads);
  threadsItem.hidden = name === 'webgl' || name === 'webgpu';
  threadsItem.textContent = t('status.threads', {threads});

  const latency = document.getElementById('latency-status');
  const ms = state.lastLatencyMs ?? state.warmupMs[name];
  latency.hidden = ms === undefined || ms === null;
  if (!latency.hidden) latency.textContent = t('status.latency', {ms: formatNumber(ms, {maximumFractionDigits: 1})});

  const warmup = document.getElementById('warmup-status');
  const times = Object.entries(state.warmupMs).sort((a, b) => a[1] - b[1]);
  warmup.hidden = times.length < 2;
  warmup.textContent = t('status.warmup', {
    times: times.map(([backendName, value]) => t('status.warmupTime', {
      backend: backendName, ms: formatNumber(value, {maximumFractionDigits: 1}),
    })).join(', '),
  });

  const notice = document.getElementById('backend-notice');
  if (state.forcedFailure) {
    notice.hidden = false;
    notice.dataset.code = state.forcedFailure.code;
    notice.textContent = t('status.forcedFailed', {backend: state.forcedFailure.backend, reason: backendReason(state.forcedFailure), fallback: name});
  } else {
    notice.hidden = true;
  }

  const skipped = document.getElementById('skipped-status');
  skipped.replaceChildren(...state.skipped.filter((s) => s !== state.forcedFailure).map((s) => {
    const item = document.createElement('li');
    item.dataset.backend = s.backend;
    item.dataset.code = s.code;
    item.textContent = t('status.skipped', {backend: s.backend, reason: backendReason(s)});
    return item;
  }));
}

/** Show why the app stopped: a notice at the top, the status line, and the console. */
export function showError(error) {
  document.body.dataset.state = 'failed';
  const code = error.code || 'app-failed';
  const known = t(`error.${code}`);
  const detail = known === `error.${code}` ? error.message || String(error) : known;
  const notice = document.getElementById('error-notice');
  notice.dataset.code = code;
  notice.textContent = t('app.failed', {error: detail});
  notice.hidden = false;
  const status = document.getElementById('app-status');
  delete status.dataset.i18n;
  status.textContent = notice.textContent;
  console.error(`[webml:${code}]`, error.message || String(error));
}

/** Fill the language menu; ``onChange`` runs after the page switched language. */
export function setupLanguageSelect(onChange) {
  const select = document.getElementById('language-select');
  select.replaceChildren(...LANGUAGES.map((language) => {
    const option = document.createElement('option');
    option.value = language;
    option.lang = language;
    option.textContent = languageName(language);
    return option;
  }));
  select.value = currentLanguage();
  select.addEventListener('change', () => {
    setLanguage(select.value, {remember: true});
    onChange();
  });
}
