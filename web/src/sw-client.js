// Service worker registration and the "new version available" flow. A new build installs in
// the background into its own cache; the page offers to switch, and only reloads after the
// person agrees, so one page never mixes files of two versions.
import {t} from './i18n.js';

export async function registerServiceWorker({banner, applyButton, dismissButton, onStatus}) {
  if (!('serviceWorker' in navigator)) return null;
  let registration;
  try {
    registration = await navigator.serviceWorker.register('sw.js', {scope: './'});
  } catch (error) {
    onStatus({code: 'sw-register-failed', message: error.message});
    return null;
  }
  const hadController = Boolean(navigator.serviceWorker.controller);

  const offer = (worker) => {
    banner.hidden = false;
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
    // The first install claims the page without a reload; later versions reload once.
    if (!hadController || reloading) return;
    reloading = true;
    location.reload();
  });
  requestPersistence(onStatus);
  return registration;
}

async function requestPersistence(onStatus) {
  if (!navigator.storage || !navigator.storage.persist) return;
  try {
    const persisted = (await navigator.storage.persisted()) || (await navigator.storage.persist());
    onStatus({code: persisted ? 'storage-persisted' : 'storage-best-effort', message: t(persisted ? 'app.storagePersisted' : 'app.storageBestEffort')});
  } catch {
    // Persistence is a hint; the cache still works without it.
  }
}
