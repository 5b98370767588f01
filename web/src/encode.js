// Raw input encoding, the same rules as builder/features.py: numeric values are filled with the
// training median when missing (plus a 0/1 indicator where training had gaps) and categorical
// values become one-hot vectors over the training vocabulary plus a missing and an unseen slot.

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Return the encoded width of one row for a feature list from metadata.json. */
export function encodedWidth(features) {
  let width = 0;
  for (const feature of features) {
    if (feature.kind === 'numeric') width += feature.indicator ? 2 : 1;
    else width += feature.vocabulary.length + 2;
  }
  return width;
}

/** Parse a raw numeric cell: null for missing, a number, or throw a coded error. */
export function parseNumber(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isNaN(value) ? null : value;
  const text = String(value).trim();
  if (text === '') return null;
  if (!DECIMAL.test(text)) {
    const error = new Error(`not a number: ${text}`);
    error.code = 'not-a-number';
    error.value = text;
    throw error;
  }
  return Number(text);
}

/** Normalize a raw categorical cell to a trimmed string, or null when missing. */
export function parseCategory(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number' && Number.isNaN(value)) return null;
  const text = String(value).trim();
  return text === '' ? null : text;
}

/** Encode raw rows (objects keyed by feature name) into one Float32Array of rows × width. */
export function encodeRows(features, rows) {
  const width = encodedWidth(features);
  const out = new Float32Array(rows.length * width);
  const slots = features.map((f) => (f.kind === 'categorical' ? new Map(f.vocabulary.map((v, i) => [v, i])) : null));
  rows.forEach((row, r) => {
    let offset = r * width;
    features.forEach((feature, i) => {
      const raw = row[feature.name];
      if (feature.kind === 'numeric') {
        const number = parseNumber(raw);
        out[offset] = number === null ? feature.fill : number;
        offset += 1;
        if (feature.indicator) {
          out[offset] = number === null ? 1 : 0;
          offset += 1;
        }
      } else {
        const text = parseCategory(raw);
        const size = feature.vocabulary.length;
        let slot;
        if (text === null) slot = size;
        else slot = slots[i].has(text) ? slots[i].get(text) : size + 1;
        out[offset + slot] = 1;
        offset += size + 2;
      }
    });
  });
  return {values: out, width};
}
