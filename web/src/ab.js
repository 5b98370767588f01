// A/B assignment: each client gets a random id once (kept in localStorage) and a variant from
// a hash of that id, so the same browser keeps its variant across reloads and the share of
// clients on variant "b" approaches the configured split.

const CLIENT_KEY = 'webml.client';

/** FNV-1a, 32 bits: a small, well-mixed hash of a string. */
export function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** A random client id, stored on first use; a fresh one per page when storage is unavailable. */
export function clientId() {
  try {
    let id = localStorage.getItem(CLIENT_KEY);
    if (!id) {
      id = newId();
      localStorage.setItem(CLIENT_KEY, id);
    }
    return id;
  } catch {
    return newId();
  }
}

function newId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Return the variant ("a" or "b") of a client for an app; ``split`` is the share of "b". */
export function assignVariant(id, app, split) {
  const position = fnv1a(`${app}:${id}`) / 2 ** 32;
  return position < split ? 'b' : 'a';
}
