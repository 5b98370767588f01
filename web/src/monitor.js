// Drift monitoring on the device. The app counts its inputs into the bins of the training
// histograms shipped in metadata.json (builder/stats.py makes them) and keeps only those counts,
// never the inputs, in IndexedDB. Drift per feature is the population stability index (PSI, with
// one more bin for missing values) and the Kolmogorov-Smirnov distance computed on the binned
// distributions of present values. A feature drifts when a measure is above both the spec's
// threshold and the value that chance reaches at this sample size. Every formula and
// approximation here repeats builder/stats.py, which `webml monitor` uses; that file explains them.
//
// Counts live under one key per app, model digest and variant, so an A/B variant or a new
// version of the model starts its own statistics. Each key keeps two sets of counts: ``view``,
// which the monitoring panel shows and a person can reset, and ``unsent``, the counts not yet
// put into a report for a collector. Reports wait in an outbox until a collector acknowledges
// them, so a report is sent again, with the same id, after a failure or a reload.
import {parseCategory, parseNumber} from './encode.js';

const EPSILON = 1e-4;
// Live counts added to each bin that training filled before PSI is computed.
const PSEUDO_COUNT = 0.5;
// Chance of a warning on inputs from the training distribution itself, over all features.
const ALPHA = 0.01;
const DB_NAME = 'webml-monitor';
const STATS = 'stats';
const OUTBOX = 'outbox';
// The keepalive quota of the Fetch standard: 64 KiB of request bodies in flight per page.
const KEEPALIVE_MAX_BYTES = 64 * 1024;
// HTTP statuses after which a report is worth sending again; any other 4xx rejects it for good.
const RETRY_STATUSES = new Set([408, 425, 429]);

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STATS)) db.createObjectStore(STATS);
      if (!db.objectStoreNames.contains(OUTBOX)) db.createObjectStore(OUTBOX, {keyPath: 'id'});
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Run ``work(stores)`` in one transaction; resolves with its return value once committed. */
function transact(db, names, mode, work) {
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(names, mode);
    const stores = Object.fromEntries(names.map((name) => [name, transaction.objectStore(name)]));
    let result;
    Promise.resolve(work(stores)).then((value) => {
      result = value;
    }, (error) => {
      try {
        transaction.abort();
      } catch {
        // The transaction has already finished; the error below is what matters.
      }
      reject(error);
    });
    transaction.oncomplete = () => resolve(result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

function requestValue(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Return the bin of a number: bin i contains values in (edges[i-1], edges[i]], as numpy.searchsorted(side="left"). */
export function binOf(value, edges) {
  let low = 0;
  let high = edges.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (edges[mid] < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

function sum(values) {
  return values.reduce((total, value) => total + value, 0);
}

function proportions(counts) {
  const total = sum(counts);
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/** Population stability index of live counts against expected training proportions (stats.psi). */
export function psi(expected, counts) {
  const actual = proportions(counts.map((c, i) => c + (expected[i] > 0 ? PSEUDO_COUNT : 0)));
  let total = 0;
  expected.forEach((e, i) => {
    const ee = Math.max(e, EPSILON);
    const aa = Math.max(actual[i], EPSILON);
    total += (aa - ee) * Math.log(aa / ee);
  });
  return total;
}

/** KS distance between binned distributions: the largest CDF gap at a bin edge. */
export function binnedKs(expected, counts) {
  const actual = proportions(counts);
  let e = 0;
  let a = 0;
  let best = 0;
  expected.forEach((value, i) => {
    e += value;
    a += actual[i];
    best = Math.max(best, Math.abs(a - e));
  });
  return best;
}

/** z with P(Z > z) = alpha for a standard normal Z (Abramowitz and Stegun 26.2.23). */
export function normalUpperQuantile(alpha) {
  const t = Math.sqrt(-2 * Math.log(alpha));
  return t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t ** 3);
}

/** x with P(X > x) = alpha for a chi-square X with ``df`` degrees of freedom (Wilson-Hilferty). */
export function chi2UpperQuantile(df, alpha) {
  const z = normalUpperQuantile(alpha);
  const h = 2 / (9 * df);
  return df * Math.max(1 - h + z * Math.sqrt(h), 0) ** 3;
}

/** PSI that ``live`` inputs from the reference distribution exceed with probability ``alpha``. */
export function psiCritical(bins, live, reference, alpha) {
  if (live <= 0 || reference <= 0) return Infinity;
  return chi2UpperQuantile(Math.max(bins - 1, 1), alpha) * (1 / live + 1 / reference);
}

/** Two-sample KS distance that samples of one distribution exceed with probability ``alpha``. */
export function ksCritical(live, reference, alpha) {
  if (live <= 0 || reference <= 0) return Infinity;
  return Math.sqrt(-Math.log(alpha / 2) / 2) * Math.sqrt(1 / live + 1 / reference);
}

/**
 * Drift of one feature (stats.feature_drift): {samples, missingRate, psi, ks, psiLimit, ksLimit,
 * drifted}. ``features`` is the number of monitored features, which share ALPHA.
 */
export function featureDrift(feature, slot, thresholds, features) {
  const present = sum(slot.bins);
  const samples = present + slot.missing;
  const rate = feature.missing_rate;
  const expected = [...feature.expected.map((p) => p * (1 - rate)), rate];
  const alpha = ALPHA / Math.max(features, 1);
  const reference = feature.train_samples;
  const valuePsi = samples ? psi(expected, [...slot.bins, slot.missing]) : 0;
  const filled = expected.filter((p) => p > 0).length;
  const psiLimit = Math.max(thresholds.psi, psiCritical(filled, samples, reference, alpha));
  const numeric = feature.kind === 'numeric';
  const ks = present && numeric ? binnedKs(feature.expected, slot.bins) : 0;
  const ksLimit = numeric ? Math.max(thresholds.ks, ksCritical(present, reference * (1 - rate), alpha)) : Infinity;
  const drifted = samples >= thresholds.min_samples && (valuePsi > psiLimit || ks > ksLimit);
  return {samples, missingRate: samples ? slot.missing / samples : 0, psi: valuePsi, ks, psiLimit, ksLimit, drifted};
}

/** Shift of live prediction counts against the test-set distribution (stats.prediction_shift). */
export function predictionShift(predictions, counts, thresholds) {
  let value = 0;
  let total;
  let bins;
  let alpha = ALPHA;
  if (predictions.kind === 'labels') {
    total = counts[counts.length - 1];
    if (total) value = Math.max(...predictions.positive_rate.map((rate, i) => psi([1 - rate, rate], [total - counts[i], counts[i]])));
    bins = 2;
    alpha = ALPHA / Math.max(predictions.labels.length, 1);
  } else {
    total = sum(counts);
    if (total) value = psi(predictions.expected, counts);
    bins = predictions.expected.filter((p) => p > 0).length;
  }
  const limit = Math.max(thresholds.prediction_shift, psiCritical(bins, total, predictions.samples, alpha));
  return {psi: value, limit, shifted: total >= thresholds.min_samples && value > limit};
}

function predictionSlots(predictions) {
  return predictions.kind === 'labels' ? predictions.labels.length + 1 : predictions.expected.length;
}

function emptyCounts(monitor, predictions) {
  return {
    count: 0,
    features: Object.fromEntries(monitor.features.map((f) => [f.name, {bins: new Array(f.expected.length).fill(0), missing: 0}])),
    predictions: new Array(predictionSlots(predictions)).fill(0),
    latency: {sum: 0, count: 0},
    feedback: {total: 0, wrong: 0},
  };
}

/** Values the monitor bins for one raw input: {feature name: number | string | null}. */
export function monitoredValues(input, raw) {
  if (input.kind === 'tabular') return raw;
  const [low, high] = input.image.range;
  const span = high - low || 1;
  let total = 0;
  let ink = 0;
  for (const value of raw) {
    const scaled = (value - low) / span;
    total += scaled;
    if (scaled > 0.1) ink += 1;
  }
  return {'mean intensity': total / raw.length, 'ink coverage': ink / raw.length};
}

function numberOrNull(value) {
  try {
    return parseNumber(value);
  } catch {
    return null;
  }
}

/** Add one prediction's bins, predicted slot and latency to ``counts``. */
function addObservation(counts, monitor, predictions, threshold, values, output, latencyMs) {
  for (const feature of monitor.features) {
    const slot = counts.features[feature.name];
    const value = values[feature.name];
    if (feature.kind === 'numeric') {
      const number = numberOrNull(value);
      if (number === null) slot.missing += 1;
      else slot.bins[binOf(number, feature.edges)] += 1;
    } else {
      const text = parseCategory(value);
      if (text === null) slot.missing += 1;
      else {
        const index = feature.categories.indexOf(text);
        slot.bins[index >= 0 ? index : feature.categories.length] += 1;
      }
    }
  }
  const slots = counts.predictions;
  if (predictions.kind === 'labels') {
    output.forEach((p, i) => {
      if (p >= threshold) slots[i] += 1;
    });
    slots[slots.length - 1] += 1;
  } else if (predictions.kind === 'classes') {
    let best = 0;
    if (output.length === 1) best = output[0] >= threshold ? 1 : 0;
    else output.forEach((p, i) => { if (p > output[best]) best = i; });
    slots[best] += 1;
  } else {
    slots[binOf(output[0], predictions.edges)] += 1;
  }
  counts.count += 1;
  counts.latency.sum += latencyMs;
  counts.latency.count += 1;
}

export class Monitor {
  /**
   * ``variant`` is the model the page runs: {id, name, sha256, predictions}; ``predictions`` is
   * that variant's test-set prediction distribution (metadata.ab) or null for metadata.monitor's.
   */
  constructor(metadata, variant) {
    this.metadata = metadata;
    this.monitor = metadata.monitor;
    this.variant = variant;
    this.predictions = variant.predictions || this.monitor.predictions;
    this.key = `${metadata.name}:${variant.sha256}:${variant.name}`;
    this.record = this.emptyRecord();
    this.db = null;
    this.outbox = new Map();
    this.flushing = null;
  }

  emptyRecord() {
    return {view: emptyCounts(this.monitor, this.predictions), unsent: emptyCounts(this.monitor, this.predictions)};
  }

  /** Counts shown in the panel since the last reset. */
  get stats() {
    return this.record.view;
  }

  async open() {
    try {
      this.db = await openDatabase();
      const saved = await transact(this.db, [STATS], 'readonly', (s) => requestValue(s[STATS].get(this.key)));
      if (saved) this.record = saved;
    } catch (error) {
      // Without IndexedDB (private mode, policies) statistics last for this page only.
      console.warn('[webml:monitor-storage]', error && error.message);
      this.db = null;
    }
    return this;
  }

  /**
   * Apply ``change(record)`` to the stored record in one transaction, so that pages open in
   * several tabs add up instead of overwriting each other.
   */
  async update(change) {
    if (!this.db) {
      change(this.record);
      return;
    }
    this.record = await transact(this.db, [STATS], 'readwrite', async (s) => {
      const record = (await requestValue(s[STATS].get(this.key))) || this.emptyRecord();
      change(record);
      s[STATS].put(record, this.key);
      return record;
    });
  }

  /** Count predictions: each raw input's bins, its predicted class or value, and the latency per input. */
  observe(raws, outputs, latencyMs) {
    const threshold = this.metadata.output.threshold;
    const perInput = latencyMs / raws.length;
    return this.update((record) => {
      raws.forEach((raw, i) => {
        const values = monitoredValues(this.metadata.input, raw);
        for (const counts of [record.view, record.unsent]) {
          addObservation(counts, this.monitor, this.predictions, threshold, values, outputs[i], perInput);
        }
      });
    });
  }

  /** Count one verdict of a person on a prediction: right, or wrong (with a correction). */
  recordFeedback(wrong) {
    return this.update((record) => {
      for (const counts of [record.view, record.unsent]) {
        counts.feedback.total += 1;
        if (wrong) counts.feedback.wrong += 1;
      }
    });
  }

  /** Drift of the counts in view against the training statistics. */
  drift() {
    const {thresholds} = this.monitor;
    const stats = this.record.view;
    const count = this.monitor.features.length;
    const features = this.monitor.features.map((feature) => ({
      name: feature.name,
      kind: feature.kind,
      ...featureDrift(feature, stats.features[feature.name], thresholds, count),
    }));
    const shift = predictionShift(this.predictions, stats.predictions, thresholds);
    return {
      count: stats.count,
      enough: stats.count >= thresholds.min_samples,
      thresholds,
      features,
      drifted: features.filter((f) => f.drifted).map((f) => f.name),
      predictionPsi: shift.psi,
      predictionLimit: shift.limit,
      predictionShift: shift.shifted,
      latencyMs: stats.latency.count ? stats.latency.sum / stats.latency.count : null,
      feedback: {...stats.feedback},
    };
  }

  /** Clear the counts in view; counts not yet reported to a collector are kept for it. */
  reset() {
    return this.update((record) => {
      record.view = emptyCounts(this.monitor, this.predictions);
    });
  }

  /** Move the unsent counts into a report in the outbox; returns the reports waiting there. */
  async packReport(clientId) {
    const make = (record) => {
      const counts = record.unsent;
      record.unsent = emptyCounts(this.monitor, this.predictions);
      return {
        schema: 1,
        id: `${clientId}-${Date.now().toString(36)}-${randomHex(4)}`,
        app: this.metadata.name,
        model: this.variant.sha256,
        variant: this.variant.name,
        client: clientId,
        count: counts.count,
        features: counts.features,
        predictions: {counts: counts.predictions},
        latency_ms: counts.latency,
        feedback: counts.feedback,
      };
    };
    const hasNews = (record) => record.unsent.count > 0 || record.unsent.feedback.total > 0;
    if (!this.db) {
      if (hasNews(this.record)) {
        const report = make(this.record);
        this.outbox.set(report.id, report);
      }
      return [...this.outbox.values()];
    }
    return transact(this.db, [STATS, OUTBOX], 'readwrite', async (s) => {
      const record = (await requestValue(s[STATS].get(this.key))) || this.emptyRecord();
      if (hasNews(record)) {
        // The report enters the outbox in the same transaction that clears the unsent counts,
        // so a count is in exactly one place whatever happens afterwards.
        s[OUTBOX].put(make(record));
        s[STATS].put(record, this.key);
        this.record = record;
      }
      return requestValue(s[OUTBOX].getAll());
    });
  }

  async dropReport(id) {
    this.outbox.delete(id);
    if (this.db) await transact(this.db, [OUTBOX], 'readwrite', (s) => { s[OUTBOX].delete(id); });
  }

  /**
   * Send the counts gathered since the last report to the collector at ``url`` (counts only,
   * never inputs), then every report still waiting in the outbox, including those of earlier
   * model versions. A report leaves the outbox when the collector acknowledges it (HTTP 200) or
   * rejects it (4xx). After a network error or a 5xx it stays for the next flush.
   * Returns {sent, rejected: [{id, status, error}], failed: {status, error} | null, waiting}.
   */
  flush(clientId, url) {
    const run = async () => {
      const reports = await this.packReport(clientId);
      const result = {sent: 0, rejected: [], failed: null, waiting: 0};
      for (const report of reports) {
        const body = JSON.stringify(report);
        let response;
        try {
          response = await fetch(url, {
            method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body,
            credentials: 'omit',
            cache: 'no-store',
            // A keepalive request outlives the page (a flush when it is hidden or closed), but
            // browsers reject one whose body is larger than their keepalive quota.
            keepalive: new Blob([body]).size <= KEEPALIVE_MAX_BYTES,
          });
        } catch (error) {
          result.failed = {status: 0, error: error.message || String(error)};
          break;
        }
        if (response.ok) {
          await this.dropReport(report.id);
          result.sent += 1;
        } else if (response.status >= 400 && response.status < 500 && !RETRY_STATUSES.has(response.status)) {
          const error = await errorText(response);
          // NOTE: the counts of a rejected report are lost to the collector (they stay in the panel).
          console.warn(`[webml:report-rejected] report ${report.id}: HTTP ${response.status}: ${error}`);
          await this.dropReport(report.id);
          result.rejected.push({id: report.id, status: response.status, error});
        } else {
          result.failed = {status: response.status, error: await errorText(response)};
          break;
        }
      }
      result.waiting = reports.length - result.sent - result.rejected.length;
      return result;
    };
    // Flushes of this page run one after another, so the page never sends one report twice at once.
    // Another tab may send it too; the collector stores a report id once.
    const previous = this.flushing || Promise.resolve();
    const next = previous.catch(() => {}).then(run);
    this.flushing = next;
    return next;
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    return String(body.error || response.statusText);
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

function randomHex(bytes) {
  const values = new Uint8Array(bytes);
  crypto.getRandomValues(values);
  return Array.from(values, (b) => b.toString(16).padStart(2, '0')).join('');
}
