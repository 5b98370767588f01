// Model loading and prediction. Raw inputs go through the same encoding as in Python
// (encode.js for tabular rows); images arrive as flat height × width × channels arrays.
import {tensor2d, tensor4d} from '@tensorflow/tfjs-core';
import {loadGraphModel} from '@tensorflow/tfjs-converter';
import {encodeRows} from './encode.js';

/** A model whose files do not belong to the version that metadata.json describes. */
export class ModelVersionError extends Error {
  constructor(expected, actual) {
    super(`the model files have digest ${actual.slice(0, 12)} but this version of the app expects ${expected.slice(0, 12)}`);
    this.code = 'model-mismatch';
  }
}

/**
 * Load the graph model at ``url`` and check that its files are the ones metadata.json names.
 *
 * ``expectedSha256`` is metadata.json's model.sha256: the SHA-256 over the sorted file names,
 * each followed by a NUL byte and the SHA-256 of the file (builder/build.py model_files_digest).
 * A page served by the service worker always gets one version's files; this check catches a
 * page loaded straight from the network while the site is being replaced, which could
 * otherwise pair one build's model.json with another build's weights. Returns {model, verified};
 * ``verified`` is false where the browser has no Web Crypto (plain HTTP other than localhost), or
 * when ``expectedSha256`` is null (the build's own measurement of candidate variants).
 */
export async function loadModel(url, expectedSha256) {
  const base = new URL(url, document.baseURI);
  const folder = new URL('./', base).href;
  const digests = new Map();
  const canHash = Boolean(globalThis.crypto && crypto.subtle);
  const fetchFunc = async (input, init) => {
    const response = await fetch(input, init);
    if (canHash && response.ok) {
      const href = new URL(typeof input === 'string' ? input : input.url, document.baseURI).href;
      const name = href.startsWith(folder) ? href.slice(folder.length) : href;
      digests.set(name, await sha256(await response.clone().arrayBuffer()));
    }
    return response;
  };
  const model = await loadGraphModel(base.href, {fetchFunc});
  if (!canHash || expectedSha256 == null) return {model, verified: false};
  const actual = await combinedDigest(digests);
  if (actual !== expectedSha256) {
    model.dispose();
    throw new ModelVersionError(expectedSha256, actual);
  }
  return {model, verified: true};
}

async function combinedDigest(digests) {
  const parts = [];
  const encoder = new TextEncoder();
  for (const name of [...digests.keys()].sort()) {
    parts.push(encoder.encode(name), new Uint8Array([0]), digests.get(name));
  }
  const total = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    total.set(part, offset);
    offset += part.length;
  }
  return hex(await sha256(total));
}

async function sha256(buffer) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buffer));
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Build the input tensor for a list of raw inputs described by metadata.json's ``input``. */
export function inputTensor(input, rawInputs) {
  if (input.kind === 'tabular') {
    const {values, width} = encodeRows(input.features, rawInputs);
    return tensor2d(values, [rawInputs.length, width], 'float32');
  }
  const {height, width, channels} = input.image;
  const size = height * width * channels;
  const values = new Float32Array(rawInputs.length * size);
  rawInputs.forEach((item, i) => {
    if (item.length !== size) throw new Error(`image input ${i} has ${item.length} values; expected ${size}`);
    values.set(item, i * size);
  });
  return tensor4d(values, [rawInputs.length, height, width, channels], 'float32');
}

/**
 * Predict raw inputs; returns {outputs: number[][], ms} where ms covers encoding, inference
 * and reading the result back.
 */
export async function predict(model, input, rawInputs) {
  const start = performance.now();
  const x = inputTensor(input, rawInputs);
  let y;
  try {
    y = model.predict(x);
    const values = await y.data();
    const width = y.shape[1] ?? 1;
    const outputs = [];
    for (let i = 0; i < rawInputs.length; i += 1) outputs.push(Array.from(values.subarray(i * width, (i + 1) * width)));
    return {outputs, ms: performance.now() - start};
  } finally {
    x.dispose();
    if (y) y.dispose();
  }
}
