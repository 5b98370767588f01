// Model loading and prediction. Raw inputs go through the same encoding as in Python
// (encode.js for tabular rows); images arrive as flat height × width × channels arrays.
import {loadGraphModel} from '@tensorflow/tfjs-converter';
import {encodeRows} from './encode.js';
import {tf} from './runtime.js';

export async function loadModel(url) {
  return loadGraphModel(url);
}

/** Build the input tensor for a list of raw inputs described by metadata.json's ``input``. */
export function inputTensor(input, rawInputs) {
  if (input.kind === 'tabular') {
    const {values, width} = encodeRows(input.features, rawInputs);
    return tf.tensor2d(values, [rawInputs.length, width], 'float32');
  }
  const {height, width, channels} = input.image;
  const size = height * width * channels;
  const values = new Float32Array(rawInputs.length * size);
  rawInputs.forEach((item, i) => {
    if (item.length !== size) throw new Error(`image input ${i} has ${item.length} values; expected ${size}`);
    values.set(item, i * size);
  });
  return tf.tensor4d(values, [rawInputs.length, height, width, channels], 'float32');
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
