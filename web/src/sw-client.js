// Service worker registration and the "new version available" flow. A new build installs in
// the background into its own cache; the page offers to switch and reloads only after the
// person agrees, so one page never mixes files of two versions.

// How often an open page asks the server for a new sw.js (browsers also check on navigation).
const UPDATE_CHECK_MS = 60 * 60 * 1000;

/**
 * Register sw.js and wire the update banner. ``onStatus({code, key})`` reports the storage
 * persistence outcome with its message key. Returns the registration, or null where service
 * workers are unavailable or registration failed.
 */
export async function registerServiceWorker({banner, applyButton, dismissButton, onStatus}) {
  if (!('serviceWorker' in navigator)) return null;
  let registration;
  try {
    registration = await navigator.serviceWorker.register('sw.js', {scope: './'});
  } catch (error) {
    console.error('[webml:sw-register-failed]', error.message);
    onStatus({code: 'sw-register-failed', key: 'app.swFailed'});
    return null;
  }
  const hadController = Boolean(navigator.serviceWorker.controller);

  const offer = (worker) => {
    banner.hidden = false;
    applyButton.disabled = false;
    applyButton.onclick = () => {
      applyButton.disabled = true;
      worker.postMessage({type: 'skip-waiting'});
    };
    dismissButton.onclick = () => {
      banner.hidden = true;
    };
  };
  const watch = (worker) => {
    worker.addEventListener('statechange', () => {
      if (worker.state === 'installed' && navigator.serviceWorker.controller) offer(worker);
    });
  };

  if (registration.waiting && navigator.serviceWorker.controller) offer(registration.waiting);
  if (registration.installing) watch(registration.installing);
  registration.addEventListener('updatefound', () => watch(registration.installing));

  let reloading = false;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    // The first install claims the page without a reload: the page already runs the files that
    // version cached. A later version reloads the page once, so every file comes from it.
    if (!hadController || reloading) return;
    reloading = true;
    location.reload();
  });

  const check = () => registration.update().catch(() => {
    // Offline or the server is down: the installed version keeps running.
  });
  setInterval(check, UPDATE_CHECK_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') check();
  });
  requestPersistence(onStatus);
  return registration;
}

async function requestPersistence(onStatus) {
  if (!navigator.storage || !navigator.storage.persist) return;
  try {
    const persisted = (await navigator.storage.persisted()) || (await navigator.storage.persist());
    onStatus(persisted ? {code: 'storage-persisted', key: 'app.storagePersisted'} : {code: 'storage-best-effort', key: 'app.storageBestEffort'});
  } catch {
    // Persistence is a hint; the cache works without it.
  }
}
