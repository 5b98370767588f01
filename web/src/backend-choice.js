// Choosing the TF.js backend: the one that predicts fastest in a short timed warm-up, remembered
// per model version in localStorage, or the one a person forces with ?backend=NAME.
import {BACKEND_NAMES, codedRuntimeError, currentBackend, startBackend} from './runtime.js';

const UNTIMED_RUNS = 1;
const TIMED_RUNS = 3;
const STORAGE_KEY = 'webml.backend';

/**
 * Start a backend for this page.
 *
 * ``runOnce()`` predicts one golden input on the current backend and returns its time in ms.
 * ``forced`` is the ?backend= value or null. Returns {started, how, warmupMs, skipped,
 * forcedFailure}: ``how`` is "forced", "remembered" or "measured"; ``skipped`` lists
 * {backend, code, reason, params} for each backend that could not start; ``forcedFailure`` is
 * the entry of a forced backend that failed, after which the measured choice among the others
 * is used. Throws a coded Error when no backend starts.
 */
export async function chooseBackend({candidates, modelVersion, forced, wasmBase, runOnce}) {
  const result = {started: null, how: null, warmupMs: {}, skipped: [], forcedFailure: null};
  const tryBackend = async (name) => {
    try {
      const started = await startBackend(name, {wasmBase});
      const ms = await warmUp(runOnce);
      result.warmupMs[name] = ms;
      return {started, ms};
    } catch (error) {
      // Failures of the model itself (its files, their version) are not the backend's fault.
      if (error.fatal) throw error;
      const coded = codedRuntimeError(error);
      result.skipped.push({backend: name, code: coded.code || 'backend-failed', reason: coded.reason || coded.message || String(coded),
        params: coded.params || {error: coded.message || String(coded)}});
      return null;
    }
  };

  if (forced) {
    const outcome = await tryBackend(forced);
    if (outcome) return {...result, started: outcome.started, how: 'forced'};
    result.forcedFailure = result.skipped[result.skipped.length - 1];
  }

  const usable = candidates.filter((name) => BACKEND_NAMES.includes(name) && name !== forced);
  const remembered = forced ? null : rememberedBackend(modelVersion);
  if (remembered && usable.includes(remembered)) {
    const outcome = await tryBackend(remembered);
    if (outcome) return {...result, started: outcome.started, how: 'remembered'};
  }

  let best = null;
  for (const name of usable) {
    if (name === remembered) continue;
    const outcome = await tryBackend(name);
    if (outcome && (!best || outcome.ms < best.ms)) best = outcome;
  }
  if (!best) {
    const detail = result.skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
    throw Object.assign(new Error(`no backend could start (${detail})`), {code: 'no-backend', skipped: result.skipped});
  }
  // The loop leaves the last backend tried current; switch back to the fastest one.
  if (currentBackend() !== best.started.name) best.started = await startBackend(best.started.name, {wasmBase});
  // A forced run measures only the others, so it does not replace the remembered choice.
  if (!forced) rememberBackend(modelVersion, best.started.name);
  return {...result, started: best.started, how: 'measured'};
}

/** Forget the remembered choice, so that the next visit measures every backend again. */
export function forgetBackend() {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled; then nothing was remembered either.
  }
}

/** Predict a few times; the first runs compile shaders and allocate, the median of the rest counts. */
async function warmUp(runOnce) {
  for (let i = 0; i < UNTIMED_RUNS; i += 1) await runOnce();
  const times = [];
  for (let i = 0; i < TIMED_RUNS; i += 1) times.push(await runOnce());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function rememberedBackend(modelVersion) {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
    return saved && saved.model === modelVersion ? saved.backend : null;
  } catch {
    return null;
  }
}

function rememberBackend(modelVersion, backend) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({model: modelVersion, backend}));
  } catch {
    // Without storage the warm-up simply runs again on the next visit.
  }
}
