// The app's service worker. The builder prepends `const PRECACHE = {...}`: the build version
// and every file the app fetches, each with the first hex digits of its SHA-256 as revision.
//
// Each build version installs into its own cache. Install fetches every file, checks its digest
// against the manifest and fails as a whole on any mismatch, so a cache never holds files of two
// builds (for example when the site is replaced while a visitor installs). Activation deletes the
// caches of older versions. A new version waits until the page asks it to take over.
//
// The WASM backend ships three binaries and a device uses one of them (SIMD with threads, SIMD,
// or neither). Entries with a ``variant`` are precached only for the variant this browser
// supports; another variant is fetched when a page asks for it, checked against its revision
// like a precached file, and cached in this version's cache.

const CACHE_PREFIX = `webml-${PRECACHE.name}-`;
const CACHE_NAME = `${CACHE_PREFIX}${PRECACHE.version}`;
const SCOPE = new URL(self.registration.scope);
const ENTRIES = new Map(PRECACHE.files.map((file) => [new URL(file.url, SCOPE).href, file]));
// WebAssembly modules that use SIMD and threads, as tfjs-backend-wasm tests for them
// (wasm-feature-detect's probes).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 10, 9, 1, 7, 0, 65, 0, 253, 15, 26, 11]);
const THREADS_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 11, 1, 9, 0, 65, 0, 254, 16, 2, 0, 26, 11]);

class PrecacheError extends Error {
  constructor(code, url, detail) {
    super(`${code}: ${url}: ${detail}`);
    this.code = code;
  }
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    await precache(wasmVariant());
    // The very first version has no page to disrupt, so it activates at once.
    if (!self.registration.active) await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE_NAME).map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'skip-waiting') self.skipWaiting();
  if (event.data && event.data.type === 'version' && event.ports[0]) {
    event.ports[0].postMessage({version: PRECACHE.version, cache: CACHE_NAME, wasmVariant: wasmVariant()});
  }
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return;
  event.respondWith(respond(request, url));
});

/** Return the WASM binary variant tfjs-backend-wasm would pick in a page like this worker. */
function wasmVariant() {
  let simd = false;
  let threads = false;
  try {
    simd = WebAssembly.validate(SIMD_PROBE);
    // SharedArrayBuffer exists only where the worker is cross-origin isolated (COOP and COEP).
    threads = typeof SharedArrayBuffer === 'function' && self.crossOriginIsolated === true && WebAssembly.validate(THREADS_PROBE);
  } catch {
    // No WebAssembly: the plain binary is listed, and the page falls back to another backend.
  }
  return simd && threads ? 'threaded-simd' : simd ? 'simd' : 'plain';
}

async function precache(variant) {
  const cache = await caches.open(CACHE_NAME);
  const wanted = PRECACHE.files.filter((file) => !file.variant || file.variant === variant);
  await Promise.all(wanted.map(async (file) => cache.put(new URL(file.url, SCOPE).href, await fetchVerified(file))));
}

/** Fetch one manifest file from the network; throw unless its bytes match the revision. */
async function fetchVerified(file) {
  const url = new URL(file.url, SCOPE).href;
  const response = await fetch(new Request(url, {cache: 'reload', credentials: 'same-origin'}));
  if (!response.ok) throw new PrecacheError('precache-fetch-failed', file.url, `HTTP ${response.status}`);
  const digest = await sha256Hex(await response.clone().arrayBuffer());
  if (!digest.startsWith(file.revision)) {
    throw new PrecacheError('precache-revision-mismatch', file.url, `expected ${file.revision}, got ${digest.slice(0, file.revision.length)}`);
  }
  return response;
}

async function respond(request, url) {
  const cache = await caches.open(CACHE_NAME);
  let key = url.origin + url.pathname;
  if (request.mode === 'navigate' && url.pathname.endsWith('/')) key = new URL('index.html', key).href;
  const cached = await cache.match(key);
  if (cached) return cached;
  const entry = ENTRIES.get(key);
  if (!entry) return fetch(request);
  // A file of this version that is not cached yet (another WASM variant, or an evicted entry)
  // is taken from the network only if it still is this version's file.
  try {
    const response = await fetchVerified(entry);
    await cache.put(key, response.clone());
    return response;
  } catch (error) {
    console.error(`[webml:${error.code || 'fetch-failed'}]`, error.message);
    return new Response(`webml service worker: ${error.message}`, {
      status: 503, statusText: 'Not this version', headers: {'Content-Type': 'text/plain; charset=utf-8'},
    });
  }
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
