// The page `webml convert` loads a converted model in, to compare its outputs with Python's.
// It bundles the whole of @tensorflow/tfjs (tfjs-layers and tfjs-converter included) and the
// WASM backend, so that graph models and layers models load exactly as an application would
// load them. Python drives it through ``window.check``; nothing here fetches from another origin.
import * as tf from '@tensorflow/tfjs';
import {getThreadsCount, setWasmPaths} from '@tensorflow/tfjs-backend-wasm';

const state = {ready: false, backend: null};

/** Make ``name`` the current backend; returns {name, threads}. */
async function start(name) {
  if (name === 'wasm') setWasmPaths(new URL('runtime/', document.baseURI).href);
  const started = await tf.setBackend(name);
  if (!started) throw new Error(`the ${name} backend failed to initialize`);
  await tf.ready();
  state.backend = tf.getBackend();
  return {name: state.backend, threads: name === 'wasm' ? getThreadsCount() : 1};
}

function toTensor({shape, dtype, values}) {
  return tf.tensor(values, shape, dtype);
}

async function readOutputs(tensors, names) {
  const outputs = [];
  for (let i = 0; i < tensors.length; i += 1) {
    const tensor = tensors[i];
    outputs.push({name: names[i], shape: tensor.shape, dtype: tensor.dtype, values: Array.from(await tensor.data())});
  }
  return outputs;
}

/**
 * Load a model and predict one batch.
 *
 * ``request`` is {format: 'graph' | 'layers', url, inputs: [{name, shape, dtype, values}],
 * outputs: [name]}. Graph models get their inputs and outputs by tensor name (from model.json's
 * signature) and run with executeAsync, which also runs control flow (GRU and LSTM loops).
 * Layers models get their inputs in model.inputs order and load their weights strictly, so a
 * weight without a matching variable, or a variable left unset, fails the load.
 */
async function run(request) {
  const tensors = request.inputs.map(toTensor);
  let outputs = [];
  let model = null;
  try {
    if (request.format === 'graph') {
      model = await tf.loadGraphModel(request.url);
      const feeds = {};
      request.inputs.forEach((input, i) => {
        feeds[input.name] = tensors[i];
      });
      const result = await model.executeAsync(feeds, request.outputs);
      outputs = Array.isArray(result) ? result : [result];
    } else {
      model = await tf.loadLayersModel(request.url, {strict: true});
      const result = model.predict(tensors.length === 1 ? tensors[0] : tensors);
      outputs = Array.isArray(result) ? result : [result];
    }
    return {backend: tf.getBackend(), outputs: await readOutputs(outputs, request.outputs)};
  } finally {
    tensors.forEach((t) => t.dispose());
    outputs.forEach((t) => t.dispose());
    if (model) model.dispose();
  }
}

window.check = {state, start, run, version: tf.version.tfjs};
state.ready = true;
