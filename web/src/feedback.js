// Feedback: a person marks a prediction wrong and gives the right label. Corrections stay on
// the device (IndexedDB). The input itself is kept only when the person opts in, because only
// then can the correction become training data; the export is a CSV that `webml build` accepts
// in data.extra.

const DB_NAME = 'webml-feedback';
const STORE = 'corrections';
const OPT_IN_KEY = 'webml.keepInputs';

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, {autoIncrement: true});
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// The opt-in where localStorage is unavailable; the choice then lasts for this page only.
let keepsInputsFallback = false;

/** Return whether the person opted in to keep inputs with corrections (off by default). */
export function keepsInputs() {
  try {
    return localStorage.getItem(OPT_IN_KEY) === 'yes';
  } catch {
    return keepsInputsFallback;
  }
}

export function setKeepsInputs(value) {
  keepsInputsFallback = Boolean(value);
  try {
    localStorage.setItem(OPT_IN_KEY, value ? 'yes' : 'no');
  } catch {
    // keepsInputsFallback keeps the choice.
  }
}

export class FeedbackStore {
  constructor(app) {
    this.app = app;
    this.db = null;
    this.memory = [];
  }

  async open() {
    try {
      this.db = await openDatabase();
    } catch (error) {
      // Without IndexedDB (private mode, policies) corrections last for this page only.
      console.warn('[webml:feedback-storage]', error && error.message);
      this.db = null;
    }
    return this;
  }

  /**
   * Store one correction; ``input`` is dropped unless the person opted in. ``correct`` is a class
   * label, a list of labels (multi-label) or a list of numbers, one per target (regression).
   */
  async add({input, predicted, correct, variant, model}) {
    const record = {app: this.app, time: Date.now(), predicted, correct, variant, model, input: keepsInputs() ? input : null};
    if (!this.db) {
      this.memory.push(record);
      return;
    }
    await new Promise((resolve, reject) => {
      const transaction = this.db.transaction(STORE, 'readwrite');
      transaction.objectStore(STORE).add(record);
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error);
    });
  }

  async all() {
    if (!this.db) return this.memory.filter((r) => r.app === this.app);
    const records = await new Promise((resolve, reject) => {
      const request = this.db.transaction(STORE, 'readonly').objectStore(STORE).getAll();
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return records.filter((r) => r.app === this.app);
  }

  /** Delete this app's corrections from the device. */
  async clear() {
    this.memory = this.memory.filter((r) => r.app !== this.app);
    if (!this.db) return;
    await new Promise((resolve, reject) => {
      const transaction = this.db.transaction(STORE, 'readwrite');
      const request = transaction.objectStore(STORE).openCursor();
      request.onsuccess = () => {
        const cursor = request.result;
        if (!cursor) return;
        if (cursor.value.app === this.app) cursor.delete();
        cursor.continue();
      };
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error);
    });
  }
}

function csvCell(value) {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * Build the CSV of corrections that kept their input: one column per raw input (feature names, or
 * pixel_0 … pixel_N for images) and one per target, matching builder/feedback.py.
 */
export function correctionsCsv(metadata, records) {
  const input = metadata.input;
  const output = metadata.output;
  const inputColumns = input.kind === 'tabular'
    ? input.features.map((f) => f.name)
    : Array.from({length: input.image.height * input.image.width * input.image.channels}, (_, i) => `pixel_${i}`);
  const targets = output.task === 'multilabel' ? output.labels : output.targets;
  const lines = [[...inputColumns, ...targets].map(csvCell).join(',')];
  for (const record of records) {
    if (!record.input) continue;
    const values = input.kind === 'tabular' ? inputColumns.map((name) => record.input[name]) : record.input;
    let target;
    if (output.task === 'multilabel') target = output.labels.map((label) => (record.correct.includes(label) ? 1 : 0));
    else if (output.task === 'regression') target = record.correct;
    else target = [record.correct];
    lines.push([...values, ...target].map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}
