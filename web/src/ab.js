// A/B assignment. Each client gets a random id once (kept in localStorage) and a variant from a
// hash of that id. So the same browser keeps its variant across reloads, and the share of clients
// on variant "b" approaches the configured split.

const CLIENT_KEY = 'webml.client';

/** FNV-1a, 32 bits, over the UTF-16 code units of a string: a small, well-mixed hash. */
export function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** Return this browser's client id, made and stored on first use (a new one per page without storage). */
export function clientId() {
  try {
    let id = localStorage.getItem(CLIENT_KEY);
    if (!id) {
      id = newClientId();
      localStorage.setItem(CLIENT_KEY, id);
    }
    return id;
  } catch {
    return newClientId();
  }
}

/** Make a client id: 24 hex digits from the browser's cryptographic random source. */
export function newClientId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Return the variant ("a" or "b") of a client for an app; ``split`` is the share of "b". */
export function assignVariant(id, app, split) {
  const position = fnv1a(`${app}:${id}`) / 2 ** 32;
  return position < split ? 'b' : 'a';
}

/**
 * Choose the model this page runs; returns {id, name, url, sha256, predictions, ab, how}.
 *
 * Without metadata.ab it is the build's one model. With it, ``forced`` (the ?variant= value, an
 * id or a variant name) wins; otherwise the client's stable id decides. ``how`` is "only",
 * "forced" or "assigned". An unknown ``forced`` value is ignored.
 */
export function chooseVariant(metadata, client, forced) {
  const model = metadata.model;
  if (!metadata.ab) {
    return {id: 'a', name: model.variant || 'model', url: model.url, sha256: model.sha256, predictions: null, ab: false, how: 'only'};
  }
  const variants = metadata.ab.variants;
  const pick = (variant, how) => ({...variant, predictions: variant.predictions || null, ab: true, how});
  const named = forced ? variants.find((v) => v.id === forced || v.name === forced) : null;
  if (named) return pick(named, 'forced');
  const id = assignVariant(client, metadata.name, metadata.ab.split);
  return pick(variants.find((v) => v.id === id), 'assigned');
}
