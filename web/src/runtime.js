// TF.js set-up: each backend is a separate chunk, loaded only when the page tries it.
// The builder generates the ``webml:backend/NAME`` modules (web/build.mjs): each registers only
// the kernels the model runs, or reports with a code why the backend is not in this build.
// Only named imports from tfjs-core appear in the app, so the bundler can drop unused ops.
import {getBackend, memory, ready, setBackend} from '@tensorflow/tfjs-core';

const LOADERS = {
  wasm: () => import('webml:backend/wasm'),
  webgl: () => import('webml:backend/webgl'),
  webgpu: () => import('webml:backend/webgpu'),
  cpu: () => import('webml:backend/cpu'),
};

export const BACKEND_NAMES = Object.keys(LOADERS);
const START_TIMEOUT_MS = 20000;
const KERNEL_NOT_REGISTERED = /Kernel '(\w+)' not registered for backend '(\w+)'/;

/**
 * A backend that could not start or run. ``code`` is machine-readable (the messages table has
 * a ``backend.CODE`` text for each), ``params`` fill that text, ``reason`` is the English detail.
 */
export class BackendError extends Error {
  constructor(code, backend, reason, params = {}) {
    super(`${backend}: ${reason}`);
    this.code = code;
    this.backend = backend;
    this.reason = reason;
    this.params = params;
  }
}

/**
 * Start one backend and make it current. Returns {name, threads, simd, variant}; ``variant``
 * names the WASM binary ("threaded-simd", "simd" or "plain") and is null for other backends.
 * Throws BackendError when the backend is not in this build or cannot start in this browser.
 */
export async function startBackend(name, {wasmBase, timeoutMs = START_TIMEOUT_MS} = {}) {
  const loader = LOADERS[name];
  if (!loader) {
    throw new BackendError('backend-unknown', name, `unknown backend; use one of ${BACKEND_NAMES.join(', ')}`,
      {backends: BACKEND_NAMES.join(', ')});
  }
  const module = await loader();
  if (!module.available) throw new BackendError(module.code, name, module.reason, module.params);
  let started;
  try {
    // A GPU adapter request or a WASM download can hang; the timeout covers both.
    started = await withTimeout((async () => {
      const support = await module.supported();
      if (!support.ok) throw new BackendError(support.code, name, support.reason);
      if (module.configure) module.configure({wasmBase});
      return setBackend(name);
    })(), timeoutMs, name);
  } catch (error) {
    if (error instanceof BackendError) throw error;
    throw new BackendError('backend-failed', name, error.message || String(error), {error: error.message || String(error)});
  }
  if (!started) throw new BackendError('backend-failed', name, 'initialization failed', {error: 'initialization failed'});
  await ready();
  const variant = module.variant ? await module.variant() : null;
  return {name, threads: module.threads ? module.threads() : 1, simd: variant === 'simd' || variant === 'threaded-simd', variant};
}

/** Return the name of the current backend. */
export function currentBackend() {
  return getBackend();
}

/** Return the number of live tensors, for leak checks. */
export function tensorCount() {
  return memory().numTensors;
}

/**
 * Turn TF.js's "Kernel 'X' not registered for backend 'Y'" into a coded BackendError.
 * A build registers only the kernels its model ran in a profile, so this error means the
 * selection missed one. It must fail loudly instead of looking like a wrong prediction.
 */
export function codedRuntimeError(error) {
  const match = KERNEL_NOT_REGISTERED.exec(error && error.message ? error.message : '');
  if (!match) return error;
  return new BackendError('kernel-missing', match[2], `kernel ${match[1]} is not registered`, {kernels: match[1]});
}

function withTimeout(promise, ms, name) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new BackendError('backend-timeout', name, `did not start within ${ms} ms`, {ms})), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
