// The monitoring panel. It shows how many predictions this device has counted and the drift of
// each input against the training data (PSI and KS distance), with warnings that name the drifted
// features and a shift of the predictions. It also shows the model variant with its latency and
// feedback accuracy, and the state of report collection when the build names a collector.
import {formatNumber, t} from '../i18n.js';
import {setMessage} from './status.js';

const DIGITS = {maximumFractionDigits: 3, minimumFractionDigits: 3};

/**
 * Wire the panel's buttons. ``onReset`` and ``onSend`` return promises; the panel re-renders
 * through ``renderMonitor`` once they settle.
 */
export function setupMonitorPanel(root, {collectUrl, onReset, onSend}) {
  root.querySelector('#monitor-section').hidden = false;
  if (collectUrl) setMessage('monitor-privacy', 'monitor.collecting', {url: collectUrl});
  const send = root.querySelector('#monitor-send');
  send.hidden = !collectUrl;
  send.addEventListener('click', async () => {
    send.disabled = true;
    try {
      await onSend();
    } finally {
      send.disabled = false;
    }
  });
  root.querySelector('#monitor-reset').addEventListener('click', () => onReset());
}

/** Show ``drift`` (Monitor.drift()) for ``variant`` (ab.js chooseVariant) in the panel. */
export function renderMonitor(root, drift, variant) {
  const {thresholds} = drift;
  setMessage('monitor-summary', 'monitor.summary', {count: drift.count});
  root.querySelector('#monitor-summary').dataset.count = String(drift.count);
  setMessage('monitor-thresholds', 'monitor.thresholds', {
    psi: formatNumber(thresholds.psi), ks: formatNumber(thresholds.ks), min: thresholds.min_samples,
  });
  renderModelLine(root, drift, variant);

  const driftWarning = root.querySelector('#monitor-drift-warning');
  driftWarning.dataset.features = JSON.stringify(drift.drifted);
  driftWarning.hidden = drift.drifted.length === 0;
  if (!driftWarning.hidden) setMessage('monitor-drift-warning', 'monitor.warning', {features: drift.drifted.join(', ')});

  const shiftWarning = root.querySelector('#monitor-shift-warning');
  shiftWarning.hidden = !drift.predictionShift;
  shiftWarning.dataset.psi = String(drift.predictionPsi);
  if (drift.predictionShift) {
    setMessage('monitor-shift-warning', 'monitor.predictionShift', {
      psi: formatNumber(drift.predictionPsi, DIGITS), limit: formatNumber(drift.predictionLimit, DIGITS),
    });
  }

  const state = root.querySelector('#monitor-state');
  if (!drift.enough) setMessage('monitor-state', 'monitor.notEnough', {min: thresholds.min_samples});
  else if (drift.drifted.length === 0 && !drift.predictionShift) setMessage('monitor-state', 'monitor.ok');
  else {
    delete state.dataset.i18n;
    state.textContent = '';
  }
  state.hidden = state.textContent === '';

  renderTable(root, drift, thresholds.min_samples);
}

function renderModelLine(root, drift, variant) {
  const parts = [];
  if (variant.ab) parts.push(t('monitor.variant', {variant: variant.id, name: variant.name}));
  if (drift.latencyMs !== null) parts.push(t('monitor.latency', {ms: formatNumber(drift.latencyMs, {maximumFractionDigits: 2})}));
  const {total, wrong} = drift.feedback;
  parts.push(total
    ? t('monitor.accuracy', {right: total - wrong, total, percent: formatNumber((total - wrong) / total, {style: 'percent', maximumFractionDigits: 1})})
    : t('monitor.noFeedback'));
  const line = root.querySelector('#monitor-model');
  line.dataset.variant = variant.id;
  line.dataset.variantName = variant.name;
  line.textContent = parts.join(' · ');
}

function renderTable(root, drift, minSamples) {
  const body = root.querySelector('#monitor-table tbody');
  body.replaceChildren(...drift.features.map((feature) => {
    const row = document.createElement('tr');
    row.dataset.feature = feature.name;
    row.dataset.psi = String(feature.psi);
    row.dataset.ks = String(feature.ks);
    row.dataset.psiLimit = String(feature.psiLimit);
    row.dataset.ksLimit = String(feature.ksLimit);
    row.dataset.drifted = String(feature.drifted);
    if (feature.drifted) row.className = 'drifted';
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = feature.name;
    const numeric = feature.kind === 'numeric';
    // Below min_samples no limit applies (stats.feature_drift flags no drift), and the critical
    // value there can exceed 1, which no KS distance reaches.
    const counted = feature.samples >= minSamples;
    let ksLimit = t('monitor.notApplicable');
    if (numeric) ksLimit = counted ? limitText(feature.ksLimit) : '–';
    const cells = [
      formatNumber(feature.samples),
      formatNumber(feature.missingRate, {style: 'percent', maximumFractionDigits: 1}),
      formatNumber(feature.psi, DIGITS),
      counted ? limitText(feature.psiLimit) : '–',
      numeric ? formatNumber(feature.ks, DIGITS) : t('monitor.notApplicable'),
      ksLimit,
      t(feature.drifted ? 'monitor.drifted' : 'monitor.stable'),
    ].map((text) => {
      const cell = document.createElement('td');
      cell.textContent = text;
      return cell;
    });
    row.append(name, ...cells);
    return row;
  }));
}

/** Format a limit for the table: a dash while it is infinite, before anything is counted. */
function limitText(limit) {
  return Number.isFinite(limit) ? formatNumber(limit, DIGITS) : '–';
}

/** Show the outcome of sending reports ({sent, rejected, failed, waiting} from Monitor.flush). */
export function renderSendResult(root, result, url) {
  const element = root.querySelector('#monitor-send-status');
  if (result.rejected.length) {
    const first = result.rejected[0];
    setMessage('monitor-send-status', 'monitor.reportRejected', {status: first.status, error: first.error});
    element.dataset.code = 'report-rejected';
  } else if (result.failed) {
    setMessage('monitor-send-status', 'monitor.reportFailed', {error: result.failed.error || `HTTP ${result.failed.status}`});
    element.dataset.code = 'report-failed';
  } else {
    setMessage('monitor-send-status', 'monitor.reportSent', {reports: result.sent, url});
    element.dataset.code = 'report-sent';
  }
  element.dataset.sent = String(result.sent);
}
