// The app's entry point: read metadata.json, start the best backend, load the model, wire the
// inputs for this data kind, and expose ``window.webml`` for the build's browser checks.
import {applyMessages, currentLanguage, LANGUAGES, pickLanguage, setLanguage, t} from './i18n.js';
import {loadModel, predict} from './model.js';
import {BACKEND_NAMES, startBackend, tf} from './runtime.js';
import {registerServiceWorker} from './sw-client.js';
import {setupForm} from './ui/form.js';
import {setupImageInput} from './ui/imageinput.js';
import {renderPrediction} from './ui/results.js';

const WARMUP_RUNS = 3;
const BACKEND_CHOICE_KEY = 'webml.backend';

const state = {
  state: 'loading',
  error: null,
  errorCode: null,
  backend: null,
  skipped: [],
  forced: null,
  lastLatencyMs: null,
  warmupMs: {},
  metadata: null,
  serviceWorker: null,
  storage: null,
};
window.webml = state;

async function main() {
  if (location.protocol === 'file:') return;
  const metadata = await fetchJson('metadata.json');
  state.metadata = metadata;
  setLanguage(pickLanguage(metadata.app.language));
  setupLanguageSelect();
  setText('model-version', t('app.version', {hash: metadata.model.sha256.slice(0, 12)}));
  document.getElementById('model-version').dataset.hash = metadata.model.sha256;

  registerServiceWorker({
    banner: document.getElementById('update-banner'),
    applyButton: document.getElementById('update-apply'),
    dismissButton: document.getElementById('update-dismiss'),
    onStatus: (status) => {
      state.storage = status.code;
      setText('storage-status', status.message);
    },
  }).then((registration) => {
    state.serviceWorker = registration ? 'registered' : 'unavailable';
  });
  window.addEventListener('offline', () => setText('app-status', t('app.offline')));

  // Weights are tensors, so the model loads after the first backend has started.
  const model = lazyModel(metadata.model.url);
  const params = new URLSearchParams(location.search);
  const forced = params.get('backend');
  const backend = forced ? await useForcedBackend(forced, model, metadata) : await chooseBackend(model, metadata);
  state.backend = backend;
  const loaded = await model.get();
  showRuntime();

  state.predict = async (rawInputs) => {
    const result = await predict(loaded, metadata.input, rawInputs);
    state.lastLatencyMs = result.ms;
    return result.outputs;
  };
  state.numTensors = () => tf.memory().numTensors;
  // Loads another graph model of this app (a compressed variant) and predicts raw inputs with
  // it on the current backend; the build uses it to measure each variant where it will run.
  state.evaluateModel = async (url, rawInputs, batchSize = 256) => {
    const other = await loadModel(url);
    try {
      const outputs = [];
      for (let i = 0; i < rawInputs.length; i += batchSize) {
        outputs.push(...(await predict(other, metadata.input, rawInputs.slice(i, i + batchSize))).outputs);
      }
      return outputs;
    } finally {
      other.dispose();
    }
  };

  const output = document.getElementById('prediction');
  const onInput = async (raw) => {
    try {
      const outputs = await state.predict([raw]);
      renderPrediction(output, metadata.output, outputs[0]);
      setText('latency-status', t('status.latency', {ms: state.lastLatencyMs.toFixed(1)}));
      document.dispatchEvent(new CustomEvent('webml:prediction', {detail: {input: raw, output: outputs[0]}}));
    } catch (error) {
      showError(error);
    }
  };
  const onError = (message) => {
    if (message) setText('app-status', message);
  };
  const inputs = metadata.input.kind === 'image'
    ? setupImageInput(document, metadata.input.image, {onInput, onError})
    : setupForm(document, metadata.input, metadata.examples || [], {onInput, onError});
  // Shows one raw input in the form or preview and predicts it, as if a person had entered it.
  state.show = (raw) => inputs.show(raw);
  state.state = 'ready';
  setText('app-status', t('app.ready'));
  document.body.dataset.state = 'ready';
}

/** Try each backend of this build, time a few warm-up predictions, and keep the fastest. */
async function chooseBackend(model, metadata) {
  const candidates = metadata.app.backends.filter((name) => BACKEND_NAMES.includes(name));
  const remembered = rememberedBackend(metadata);
  if (remembered && candidates.includes(remembered)) {
    try {
      const started = await startBackend(remembered, {wasmBase: wasmBase()});
      await warmUp(model, metadata);
      return started;
    } catch (error) {
      state.skipped.push({backend: remembered, code: error.code || 'backend-failed', reason: error.reason || error.message});
    }
  }
  let best = null;
  for (const name of candidates) {
    if (name === remembered) continue;
    try {
      const started = await startBackend(name, {wasmBase: wasmBase()});
      const ms = await warmUp(model, metadata);
      state.warmupMs[name] = ms;
      if (!best || ms < best.ms) best = {started, ms};
    } catch (error) {
      state.skipped.push({backend: name, code: error.code || 'backend-failed', reason: error.reason || error.message});
    }
  }
  if (!best) throw Object.assign(new Error(state.skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')), {code: 'no-backend'});
  if (tf.getBackend() !== best.started.name) await startBackend(best.started.name, {wasmBase: wasmBase()});
  rememberBackend(metadata, best.started.name);
  return best.started;
}

async function useForcedBackend(name, model, metadata) {
  state.forced = name;
  try {
    const started = await startBackend(name, {wasmBase: wasmBase()});
    await warmUp(model, metadata);
    setText('forced-status', t('status.forced', {backend: name}));
    return started;
  } catch (error) {
    const reason = error.reason || error.message || String(error);
    state.skipped.push({backend: name, code: error.code || 'backend-failed', reason});
    const failure = new Error(t('status.forcedFailed', {backend: name, error: reason}));
    failure.code = error.code || 'backend-failed';
    throw failure;
  }
}

function lazyModel(url) {
  let loading = null;
  return {get: () => (loading = loading || loadModel(url))};
}

/** Run the golden inputs a few times on the current backend; returns the median time in ms. */
async function warmUp(model, metadata) {
  const loaded = await model.get();
  const inputs = metadata.golden.slice(0, 1).map((g) => g.input);
  const times = [];
  for (let i = 0; i < WARMUP_RUNS; i += 1) times.push((await predict(loaded, metadata.input, inputs)).ms);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function wasmBase() {
  return new URL('runtime/', document.baseURI).href;
}

function rememberedBackend(metadata) {
  try {
    const saved = JSON.parse(localStorage.getItem(BACKEND_CHOICE_KEY) || 'null');
    return saved && saved.model === metadata.model.sha256 ? saved.backend : null;
  } catch {
    return null;
  }
}

function rememberBackend(metadata, backend) {
  try {
    localStorage.setItem(BACKEND_CHOICE_KEY, JSON.stringify({model: metadata.model.sha256, backend}));
  } catch {
    // Without storage the warm-up simply runs again on the next visit.
  }
}

function showRuntime() {
  const {name, threads} = state.backend;
  setText('backend-status', t('status.backend', {backend: name}));
  document.getElementById('backend-status').dataset.backend = name;
  setText('threads-status', t('status.threads', {threads}));
  const skipped = document.getElementById('skipped-status');
  skipped.replaceChildren(...state.skipped.map((s) => {
    const item = document.createElement('li');
    item.textContent = t('status.skipped', {backend: s.backend, reason: s.reason});
    return item;
  }));
}

function setupLanguageSelect() {
  const select = document.getElementById('language-select');
  select.replaceChildren(...LANGUAGES.map((language) => {
    const option = document.createElement('option');
    option.value = language;
    option.textContent = {en: 'English', 'zh-TW': '繁體中文'}[language] || language;
    return option;
  }));
  select.value = currentLanguage();
  select.addEventListener('change', () => {
    setLanguage(select.value, {remember: true});
    if (state.backend) showRuntime();
    if (state.state === 'ready') setText('app-status', t('app.ready'));
  });
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(`${url}: HTTP ${response.status}`), {code: 'fetch-failed'});
  return response.json();
}

function setText(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

function showError(error) {
  state.state = 'failed';
  state.error = error.message || String(error);
  state.errorCode = error.code || 'app-failed';
  document.body.dataset.state = 'failed';
  setText('app-status', t('app.failed', {error: state.error}));
  console.error(`[webml:${state.errorCode}]`, state.error);
}

main().catch(showError);
applyMessages(document);
