// Drift monitoring on the device. The app counts what it sees into the bins of the training
// histograms shipped in metadata.json (builder/stats.py makes them) and keeps only those counts,
// never the inputs, in IndexedDB. Drift per feature is the population stability index (PSI) and
// the Kolmogorov-Smirnov distance computed on the binned distributions; both match the Python
// implementation used by `webml monitor`.

const EPSILON = 1e-4;
const DB_NAME = 'webml-monitor';
const STORE = 'stats';

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE);
      if (!db.objectStoreNames.contains('feedback')) db.createObjectStore('feedback', {autoIncrement: true});
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function transact(db, store, mode, work) {
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(store, mode);
    const result = work(transaction.objectStore(store));
    transaction.oncomplete = () => resolve(result && 'result' in result ? result.result : undefined);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

/** Bin index of a number: bin i holds values in (edges[i-1], edges[i]]. */
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

function proportions(counts) {
  const total = counts.reduce((sum, c) => sum + c, 0);
  return counts.map((c) => (total > 0 ? c / total : 0));
}

/** Population stability index of live counts against expected training proportions. */
export function psi(expected, counts) {
  const actual = proportions(counts);
  let sum = 0;
  expected.forEach((e, i) => {
    const ee = Math.max(e, EPSILON);
    const aa = Math.max(actual[i], EPSILON);
    sum += (aa - ee) * Math.log(aa / ee);
  });
  return sum;
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

function emptyStats(monitor) {
  return {
    count: 0,
    features: Object.fromEntries(monitor.features.map((f) => [f.name, {bins: new Array(f.expected.length).fill(0), missing: 0}])),
    predictions: new Array(predictionBinCount(monitor.predictions)).fill(0),
    latency: {sum: 0, count: 0},
    feedback: {total: 0, wrong: 0},
  };
}

function predictionBinCount(predictions) {
  if (predictions.kind === 'labels') return predictions.labels.length + 1;
  return predictions.expected.length;
}

/** Values the monitor bins for one raw input: {feature name: number | string | null}. */
export function monitoredValues(input, raw) {
  if (input.kind === 'tabular') return raw;
  const [low, high] = input.image.range;
  const span = high - low || 1;
  let sum = 0;
  let ink = 0;
  for (const value of raw) {
    const scaled = (value - low) / span;
    sum += scaled;
    if (scaled > 0.1) ink += 1;
  }
  return {'mean intensity': sum / raw.length, 'ink coverage': ink / raw.length};
}

function combineCounts(a, b, sign) {
  const add = (x, y) => x.map((v, i) => v + sign * (y[i] || 0));
  return {
    count: a.count + sign * b.count,
    features: Object.fromEntries(Object.entries(a.features).map(([name, slot]) => [name, {
      bins: add(slot.bins, b.features[name] ? b.features[name].bins : []),
      missing: slot.missing + sign * (b.features[name] ? b.features[name].missing : 0),
    }])),
    predictions: add(a.predictions, b.predictions),
    latency: {sum: a.latency.sum + sign * b.latency.sum, count: a.latency.count + sign * b.latency.count},
    feedback: {total: a.feedback.total + sign * b.feedback.total, wrong: a.feedback.wrong + sign * b.feedback.wrong},
  };
}

const addCounts = (a, b) => combineCounts(a, b, 1);
const subtractCounts = (a, b) => combineCounts(a, b, -1);

export class Monitor {
  constructor(metadata, variant) {
    this.metadata = metadata;
    this.monitor = metadata.monitor;
    this.variant = variant;
    this.key = `${metadata.name}:${variant.sha256}:${variant.id}`;
    this.stats = emptyStats(this.monitor);
    this.db = null;
  }

  async open() {
    try {
      this.db = await openDatabase();
      const saved = await transact(this.db, STORE, 'readonly', (store) => store.get(this.key));
      if (saved) this.stats = saved;
    } catch (error) {
      // Without IndexedDB (private mode, policies) statistics last for this page only.
      this.db = null;
    }
    return this;
  }

  async save() {
    if (!this.db) return;
    await transact(this.db, STORE, 'readwrite', (store) => store.put(this.stats, this.key));
  }

  /** Count one prediction: its input's bins, its predicted class or value, and its latency. */
  observe(raw, output, latencyMs) {
    const stats = this.stats;
    const values = monitoredValues(this.metadata.input, raw);
    for (const feature of this.monitor.features) {
      const slot = stats.features[feature.name];
      const value = values[feature.name];
      if (value === null || value === undefined || value === '' || (typeof value === 'number' && Number.isNaN(value))) {
        slot.missing += 1;
      } else if (feature.kind === 'numeric') {
        const number = typeof value === 'number' ? value : Number(String(value).trim());
        if (Number.isNaN(number)) slot.missing += 1;
        else slot.bins[binOf(number, feature.edges)] += 1;
      } else {
        const index = feature.categories.indexOf(String(value).trim());
        slot.bins[index >= 0 ? index : feature.categories.length] += 1;
      }
    }
    this.countPrediction(output);
    stats.count += 1;
    stats.latency.sum += latencyMs;
    stats.latency.count += 1;
    return this.save();
  }

  countPrediction(output) {
    const predictions = this.monitor.predictions;
    const counts = this.stats.predictions;
    const threshold = this.metadata.output.threshold;
    if (predictions.kind === 'labels') {
      output.forEach((p, i) => {
        if (p >= threshold) counts[i] += 1;
      });
      counts[counts.length - 1] += 1;
    } else if (predictions.kind === 'classes') {
      let best = 0;
      if (output.length === 1) best = output[0] >= threshold ? 1 : 0;
      else output.forEach((p, i) => { if (p > output[best]) best = i; });
      counts[best] += 1;
    } else {
      counts[binOf(output[0], predictions.edges)] += 1;
    }
  }

  recordFeedback(wrong) {
    this.stats.feedback.total += 1;
    if (wrong) this.stats.feedback.wrong += 1;
    return this.save();
  }

  /** Drift of everything seen so far against the training statistics. */
  drift() {
    const {thresholds} = this.monitor;
    const enough = this.stats.count >= thresholds.min_samples;
    const features = this.monitor.features.map((feature) => {
      const slot = this.stats.features[feature.name];
      const samples = slot.bins.reduce((sum, c) => sum + c, 0);
      const featurePsi = samples ? psi(feature.expected, slot.bins) : 0;
      const ks = samples && feature.kind === 'numeric' ? binnedKs(feature.expected, slot.bins) : 0;
      return {name: feature.name, samples, psi: featurePsi, ks, drifted: enough && (featurePsi > thresholds.psi || ks > thresholds.ks)};
    });
    const predictions = this.monitor.predictions;
    let predictionPsi = 0;
    if (this.stats.count) {
      if (predictions.kind === 'labels') {
        const total = this.stats.predictions[this.stats.predictions.length - 1];
        predictionPsi = Math.max(...predictions.positive_rate.map((rate, i) => {
          const positives = this.stats.predictions[i];
          return psi([1 - rate, rate], [total - positives, positives]);
        }));
      } else {
        predictionPsi = psi(predictions.expected, this.stats.predictions);
      }
    }
    return {
      count: this.stats.count,
      enough,
      features,
      drifted: features.filter((f) => f.drifted).map((f) => f.name),
      predictionPsi,
      predictionShift: enough && predictionPsi > thresholds.prediction_shift,
    };
  }

  /**
   * Send the counts gathered since the last acknowledged report to a collector (counts only,
   * never inputs). The pending report is saved with its id before it is sent, so a retry after a
   * failure or a reload sends the same id and the collector stores it once.
   * Returns the HTTP status, or null when there is nothing new to send.
   */
  async flush(clientId, url) {
    if (!this.stats.pending) {
      const delta = subtractCounts(this.stats, this.stats.sent || emptyStats(this.monitor));
      if (delta.count === 0) return null;
      this.stats.pending = {
        schema: 1,
        id: `${clientId}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
        app: this.metadata.name,
        model: this.variant.sha256,
        variant: this.variant.id,
        client: clientId,
        count: delta.count,
        features: delta.features,
        predictions: {counts: delta.predictions},
        latency_ms: delta.latency,
        feedback: delta.feedback,
      };
      await this.save();
    }
    const pending = this.stats.pending;
    const response = await fetch(url, {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(pending),
      keepalive: true,
    });
    if (response.ok) {
      this.stats.sent = addCounts(this.stats.sent || emptyStats(this.monitor), {
        count: pending.count, features: pending.features, predictions: pending.predictions.counts,
        latency: pending.latency_ms, feedback: pending.feedback,
      });
      this.stats.pending = null;
      await this.save();
    }
    return response.status;
  }

  async reset() {
    this.stats = emptyStats(this.monitor);
    await this.save();
  }
}
