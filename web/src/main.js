// The app's entry point: read metadata.json, start the best backend, load the model, wire the
// inputs for this data kind, and expose ``window.webml`` for the build's browser checks.
import {chooseBackend, forgetBackend} from './backend-choice.js';
import {applyMessages, pickLanguage, setLanguage} from './i18n.js';
import {loadModel, predict} from './model.js';
import {codedRuntimeError, tensorCount} from './runtime.js';
import {registerServiceWorker} from './sw-client.js';
import {setupBatch} from './ui/batch.js';
import {setupForm} from './ui/form.js';
import {setupImageInput} from './ui/imageinput.js';
import {renderPrediction} from './ui/results.js';
import {setMessage, setupLanguageSelect, showError, showRuntime} from './ui/status.js';

const state = {
  state: 'loading',
  error: null,
  errorCode: null,
  backend: null,
  how: null,
  skipped: [],
  forced: null,
  forcedFailure: null,
  warmupMs: {},
  lastLatencyMs: null,
  // Predictions shown on the page so far; tests wait for it to grow.
  predictionCount: 0,
  metadata: null,
  modelVerified: null,
  serviceWorker: null,
  storage: null,
};
window.webml = state;
let lastOutput = null;

async function main() {
  if (location.protocol === 'file:') return;
  const metadata = await fetchJson('metadata.json');
  state.metadata = metadata;
  setLanguage(pickLanguage(metadata.app.language));
  setupLanguageSelect(() => refresh());
  const version = document.getElementById('model-version');
  version.dataset.hash = metadata.model.sha256;
  version.dataset.i18n = 'app.version';
  version.dataset.i18nParams = JSON.stringify({hash: metadata.model.sha256.slice(0, 12)});
  version.title = metadata.model.sha256;

  registerServiceWorker({
    banner: document.getElementById('update-banner'),
    applyButton: document.getElementById('update-apply'),
    dismissButton: document.getElementById('update-dismiss'),
    onStatus: (status) => {
      state.storage = status.code;
      const element = document.getElementById('storage-status');
      element.dataset.i18n = status.key;
      element.dataset.code = status.code;
      refresh();
    },
  }).then((registration) => {
    state.serviceWorker = registration ? 'registered' : 'unavailable';
  });
  window.addEventListener('offline', () => setMessage('app-status', 'app.offline'));
  window.addEventListener('online', () => {
    if (state.state === 'ready') setMessage('app-status', 'app.ready');
  });
  document.getElementById('remeasure-button').addEventListener('click', () => {
    forgetBackend();
    const url = new URL(location.href);
    url.searchParams.delete('backend');
    location.assign(url.href);
  });

  // Weights are tensors, so the model loads once the first backend has started.
  let loading = null;
  const model = () => (loading = loading || loadVerifiedModel(metadata));
  const golden = [metadata.golden[0].input];
  const runOnce = async () => (await predict(await model(), metadata.input, golden)).ms;
  const forced = new URLSearchParams(location.search).get('backend');
  state.forced = forced;
  const choice = await chooseBackend({
    candidates: metadata.app.backends, modelVersion: metadata.model.sha256, forced,
    wasmBase: new URL('runtime/', document.baseURI).href, runOnce,
  });
  Object.assign(state, {backend: choice.started, how: choice.how, skipped: choice.skipped,
    forcedFailure: choice.forcedFailure, warmupMs: choice.warmupMs});
  const loaded = await model();
  refresh();

  state.predict = async (rawInputs) => {
    try {
      const result = await predict(loaded, metadata.input, rawInputs);
      state.lastLatencyMs = result.ms;
      return result.outputs;
    } catch (error) {
      throw codedRuntimeError(error);
    }
  };
  state.numTensors = tensorCount;
  // Loads another graph model of this app (a compressed variant) and predicts raw inputs with
  // it on the current backend; the build uses it to measure each variant where it will run.
  state.evaluateModel = async (url, rawInputs, batchSize = 256) => {
    const {model: other} = await loadModel(url, null);
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
      lastOutput = outputs[0];
      state.predictionCount += 1;
      renderPrediction(output, metadata.output, outputs[0]);
      showRuntime(state);
      document.dispatchEvent(new CustomEvent('webml:prediction', {detail: {input: raw, output: outputs[0]}}));
    } catch (error) {
      fail(error);
    }
  };
  const onError = (message) => {
    if (!message) return;
    const status = document.getElementById('app-status');
    delete status.dataset.i18n;
    status.textContent = message;
  };
  const inputs = metadata.input.kind === 'image'
    ? setupImageInput(document, metadata.input.image, {onInput, onError})
    : setupForm(document, metadata.input, metadata.examples || [], {onInput, onError});
  if (metadata.input.kind === 'tabular') setupBatch(document, metadata, {predict: state.predict});
  // Shows one raw input in the form or preview and predicts it, as if a person had entered it.
  state.show = (raw) => inputs.show(raw);
  state.state = 'ready';
  setMessage('app-status', 'app.ready');
  document.body.dataset.state = 'ready';
}

async function loadVerifiedModel(metadata) {
  try {
    const {model, verified} = await loadModel(metadata.model.url, metadata.model.sha256);
    state.modelVerified = verified;
    return model;
  } catch (error) {
    // A model that fails to load fails on every backend; the backend choice must not retry it.
    throw Object.assign(error, {fatal: true, code: error.code || 'model-load-failed'});
  }
}

function refresh() {
  applyMessages(document);
  if (state.backend) showRuntime(state);
  if (lastOutput) renderPrediction(document.getElementById('prediction'), state.metadata.output, lastOutput);
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(`${url}: HTTP ${response.status}`), {code: 'fetch-failed'});
  return response.json();
}

function fail(error) {
  state.state = 'failed';
  state.error = error.message || String(error);
  state.errorCode = error.code || 'app-failed';
  showError(error);
}

main().catch(fail);
applyMessages(document);
