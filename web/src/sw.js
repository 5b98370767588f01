// The app's service worker. The builder prepends `const PRECACHE = {...}`: the build version
// and every file the app fetches, each with the first hex digits of its SHA-256 as revision.
//
// Each build version installs into its own cache. Install fetches every file, checks its digest
// against the manifest and fails as a whole on any mismatch, so a cache never holds files of two
// builds (for example when the site is replaced while a visitor installs). Activation deletes the
// caches of older versions. A new version waits until the page asks it to take over.

const CACHE_PREFIX = `webml-${PRECACHE.name}-`;
const CACHE_NAME = `${CACHE_PREFIX}${PRECACHE.version}`;
const SCOPE = new URL(self.registration.scope);

class PrecacheError extends Error {
  constructor(code, url, detail) {
    super(`${code}: ${url}: ${detail}`);
    this.code = code;
  }
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    await precache();
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
    event.ports[0].postMessage({version: PRECACHE.version, cache: CACHE_NAME});
  }
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== SCOPE.origin || !url.pathname.startsWith(SCOPE.pathname)) return;
  event.respondWith(respond(request, url));
});

async function precache() {
  const cache = await caches.open(CACHE_NAME);
  await Promise.all(PRECACHE.files.map(async (file) => {
    const url = new URL(file.url, SCOPE).href;
    const response = await fetch(new Request(url, {cache: 'reload', credentials: 'same-origin'}));
    if (!response.ok) throw new PrecacheError('precache-fetch-failed', file.url, `HTTP ${response.status}`);
    const body = await response.clone().arrayBuffer();
    const digest = await sha256Hex(body);
    if (!digest.startsWith(file.revision)) {
      throw new PrecacheError('precache-revision-mismatch', file.url, `expected ${file.revision}, got ${digest.slice(0, file.revision.length)}`);
    }
    await cache.put(url, response);
  }));
}

async function respond(request, url) {
  const cache = await caches.open(CACHE_NAME);
  let key = url.origin + url.pathname;
  if (request.mode === 'navigate' && (url.pathname === SCOPE.pathname || url.pathname.endsWith('/'))) {
    key = new URL('index.html', SCOPE).href;
  }
  const cached = await cache.match(key);
  if (cached) return cached;
  return fetch(request);
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest('SHA-256', buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
