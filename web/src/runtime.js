// TF.js runtime set-up: backends are separate chunks, loaded only when the page tries them.
// The builder generates the ``webml:backend/NAME`` modules (web/build.mjs), registering only the
// kernels the model uses, or reporting that a backend was left out of this build.
import * as tf from '@tensorflow/tfjs-core';

const LOADERS = {
  wasm: () => import('webml:backend/wasm'),
  webgl: () => import('webml:backend/webgl'),
  webgpu: () => import('webml:backend/webgpu'),
  cpu: () => import('webml:backend/cpu'),
};

export const BACKEND_NAMES = Object.keys(LOADERS);

/** A backend that could not start, with a machine-readable code and a human reason. */
export class BackendError extends Error {
  constructor(code, backend, reason) {
    super(`${backend}: ${reason}`);
    this.code = code;
    this.backend = backend;
    this.reason = reason;
  }
}

/**
 * Start one backend and make it current. Returns {name, threads, simd}.
 * Throws BackendError when the backend is not in this build or cannot start in this browser.
 */
export async function startBackend(name, {wasmBase, timeoutMs = 15000} = {}) {
  const loader = LOADERS[name];
  if (!loader) throw new BackendError('backend-unknown', name, `unknown backend; use one of ${BACKEND_NAMES.join(', ')}`);
  const module = await loader();
  if (!module.available) throw new BackendError('backend-not-built', name, module.reason);
  const support = module.supported ? await module.supported() : {ok: true};
  if (!support.ok) throw new BackendError('backend-unsupported', name, support.reason);
  if (module.configure) module.configure({wasmBase});
  let started;
  try {
    started = await withTimeout(tf.setBackend(name), timeoutMs, name);
  } catch (error) {
    throw new BackendError('backend-failed', name, error.reason || error.message || String(error));
  }
  if (!started) throw new BackendError('backend-failed', name, 'initialization failed');
  await tf.ready();
  return {name, threads: module.threads ? module.threads() : 1, simd: module.simd ? await module.simd() : false};
}

function withTimeout(promise, ms, name) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new BackendError('backend-timeout', name, `did not start within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export {tf};
