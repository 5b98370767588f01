// The app's entry point: read metadata.json, pick the model variant (A/B builds), start the best
// backend, load the model, wire the inputs for this data kind, monitoring and feedback, and
// expose ``window.webml`` for the build's browser checks.
import {assignVariant, chooseVariant, clientId, newClientId} from './ab.js';
import {chooseBackend, forgetBackend} from './backend-choice.js';
import {FeedbackStore} from './feedback.js';
import {applyMessages, pickLanguage, setLanguage, t} from './i18n.js';
import {loadModel, predict} from './model.js';
import {Monitor} from './monitor.js';
import {codedRuntimeError, tensorCount} from './runtime.js';
import {registerServiceWorker} from './sw-client.js';
import {setupBatch} from './ui/batch.js';
import {setupFeedback} from './ui/feedback-panel.js';
import {setupForm} from './ui/form.js';
import {setupImageInput} from './ui/imageinput.js';
import {renderMonitor, renderSendResult, setupMonitorPanel} from './ui/monitor-panel.js';
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
  // The model this page runs: {id, name, sha256, ab, how} (see ab.js chooseVariant).
  variant: null,
};
window.webml = state;
let lastOutput = null;
// The monitor of the model this page runs, or null for builds without training statistics.
let monitor = null;
// Reports go to the collector at most this often while predictions come in, and when the page is hidden.
const REPORT_INTERVAL_MS = 60 * 1000;

async function main() {
  if (location.protocol === 'file:') return;
  const metadata = await fetchJson('metadata.json');
  state.metadata = metadata;
  setLanguage(pickLanguage(metadata.app.language));
  setupLanguageSelect(() => refresh());
  const params = new URLSearchParams(location.search);
  const client = clientId();
  const variant = chooseVariant(metadata, client, params.get('variant'));
  state.variant = {id: variant.id, name: variant.name, sha256: variant.sha256, ab: variant.ab, how: variant.how};
  if (metadata.ab) {
    const {split} = metadata.ab;
    state.ab = {client, split, newClientId, assign: (id) => assignVariant(id, metadata.name, split)};
  }
  const version = document.getElementById('model-version');
  version.dataset.hash = variant.sha256;
  version.dataset.i18n = 'app.version';
  version.dataset.i18nParams = JSON.stringify({hash: variant.sha256.slice(0, 12)});
  version.title = variant.sha256;

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
  const model = () => (loading = loading || loadVerifiedModel(variant));
  const golden = [metadata.golden[0].input];
  const runOnce = async () => (await predict(await model(), metadata.input, golden)).ms;
  const forced = params.get('backend');
  state.forced = forced;
  const choice = await chooseBackend({
    candidates: metadata.app.backends, modelVersion: variant.sha256, forced,
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
  // Predicts raw inputs with A/B variant ``id`` (its files checked against its digest), so that
  // `webml test` checks both variants on every backend.
  state.predictVariant = async (id, rawInputs) => {
    if (id === variant.id) return state.predict(rawInputs);
    const other = metadata.ab && metadata.ab.variants.find((v) => v.id === id);
    if (!other) throw Object.assign(new Error(`no model variant ${id} in this build`), {code: 'variant-unknown'});
    const {model: otherModel} = await loadModel(other.url, other.sha256);
    try {
      return (await predict(otherModel, metadata.input, rawInputs)).outputs;
    } finally {
      otherModel.dispose();
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

  const observe = await setupMonitoring(metadata, variant, client);
  const feedbackStore = await new FeedbackStore(metadata.name).open();
  const feedback = setupFeedback(document, metadata, {
    store: feedbackStore, variant, onVerdict: (wrong) => observe.verdict(wrong),
  });

  const output = document.getElementById('prediction');
  const onInput = async (raw) => {
    try {
      const outputs = await state.predict([raw]);
      lastOutput = outputs[0];
      renderPrediction(output, metadata.output, outputs[0]);
      showRuntime(state);
      feedback.show(raw, outputs[0]);
      await observe.predictions([raw], outputs, state.lastLatencyMs);
      // Counted after monitoring, so that a test waiting for it finds the panel up to date.
      state.predictionCount += 1;
      document.dispatchEvent(new CustomEvent('webml:prediction', {detail: {input: raw, output: outputs[0]}}));
    } catch (error) {
      fail(error);
    }
  };
  // Remove the prediction and the feedback area, so that no verdict is stored for an input
  // that is no longer on screen.
  const onClear = () => {
    lastOutput = null;
    output.replaceChildren(noPrediction());
    feedback.hide();
  };
  // Clear the result for an input that cannot be predicted. The form or image input shows the
  // error next to the input, and a ``message`` also goes to the status line.
  const onError = (message) => {
    onClear();
    if (!message) return;
    const status = document.getElementById('app-status');
    delete status.dataset.i18n;
    status.textContent = message;
  };
  const inputs = metadata.input.kind === 'image'
    ? setupImageInput(document, metadata.input.image, {onInput, onError, onClear})
    : setupForm(document, metadata.input, metadata.examples || [], {onInput, onError, onClear});
  const predictBatch = async (rawInputs) => {
    const outputs = await state.predict(rawInputs);
    await observe.predictions(rawInputs, outputs, state.lastLatencyMs);
    return outputs;
  };
  if (metadata.input.kind === 'tabular') setupBatch(document, metadata, {predict: predictBatch});
  // Shows one raw input in the form or preview and predicts it, as if a person had entered it.
  state.show = (raw) => inputs.show(raw);
  state.state = 'ready';
  setMessage('app-status', 'app.ready');
  document.body.dataset.state = 'ready';
}

/**
 * Open the monitor for ``variant`` and wire the monitoring panel and report collection.
 * Returns {predictions(raws, outputs, ms), verdict(wrong)}, which count into the monitor and
 * never throw: a storage failure must not stop predictions.
 */
async function setupMonitoring(metadata, variant, client) {
  if (!metadata.monitor) return {predictions: async () => {}, verdict: async () => {}};
  monitor = await new Monitor(metadata, variant).open();
  const configured = metadata.monitor.collect_url;
  // Private by default: without monitor.collect_url in the spec nothing is ever sent.
  const collectUrl = configured ? new URL(configured, document.baseURI).href : null;
  let lastReport = 0;
  const show = () => renderMonitor(document, monitor.drift(), variant);
  const sendReports = async ({always = false} = {}) => {
    if (!collectUrl) return null;
    lastReport = Date.now();
    const result = await monitor.flush(client, collectUrl);
    if (always || result.sent || result.rejected.length || result.failed) renderSendResult(document, result, collectUrl);
    return result;
  };
  const sendInBackground = () => {
    sendReports().catch((error) => console.warn('[webml:report-failed]', error.message));
  };
  state.sendReports = () => sendReports({always: true});
  state.monitoring = {drift: () => monitor.drift(), stats: () => monitor.stats};
  setupMonitorPanel(document, {
    collectUrl,
    onReset: async () => {
      await monitor.reset();
      show();
    },
    onSend: () => state.sendReports(),
  });
  show();
  if (collectUrl) {
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') sendInBackground();
    });
    // Reports left from an earlier visit, or from an earlier version of the model.
    sendInBackground();
  }
  const guarded = (work) => async (...args) => {
    try {
      await work(...args);
      show();
    } catch (error) {
      console.warn('[webml:monitor-failed]', error.message || String(error));
    }
  };
  return {
    predictions: guarded(async (raws, outputs, ms) => {
      await monitor.observe(raws, outputs, ms);
      if (collectUrl && Date.now() - lastReport >= REPORT_INTERVAL_MS) sendInBackground();
    }),
    verdict: guarded((wrong) => monitor.recordFeedback(wrong)),
  };
}

async function loadVerifiedModel(variant) {
  try {
    const {model, verified} = await loadModel(variant.url, variant.sha256);
    state.modelVerified = verified;
    return model;
  } catch (error) {
    // A model that fails to load fails on every backend; the backend choice must not retry it.
    throw Object.assign(error, {fatal: true, code: error.code || 'model-load-failed'});
  }
}

/** Create the placeholder that #prediction shows before the first prediction. */
function noPrediction() {
  const placeholder = document.createElement('p');
  placeholder.dataset.i18n = 'output.none';
  placeholder.textContent = t('output.none');
  return placeholder;
}

function refresh() {
  applyMessages(document);
  if (state.backend) showRuntime(state);
  if (lastOutput) renderPrediction(document.getElementById('prediction'), state.metadata.output, lastOutput);
  if (monitor) renderMonitor(document, monitor.drift(), monitor.variant);
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
