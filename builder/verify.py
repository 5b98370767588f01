"""Browser checks of a built app (``webml test``), run in real headless Chromium.

The app is served by ``AppServer`` on 127.0.0.1; Playwright drives Chromium. The checks: the page
loads with no console error and no request to another origin; golden inputs predict what Python
predicted, on every backend that starts; the service worker controls the page and holds every
precached file; with the server stopped, a reload still shows the app and predicts correctly.
An A/B build has each of its two model variants checked against its own golden outputs on every
backend.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .browser import launch
from .errors import UsageError
from .progress import SILENT, Reporter
from .serve import AppServer

log = logging.getLogger(__name__)

READY_TIMEOUT_MS = 90_000
# Backends a build must run on; the others (GPU backends) may be missing from a headless browser.
REQUIRED_BACKENDS = ("wasm", "cpu")
# Error codes from web/src/runtime.js and web/build.mjs that mean "this browser cannot run this
# backend" or "TF.js does not implement the model on it", as opposed to a defect of the build
# (such as "kernel-missing", a kernel the build failed to register).
UNAVAILABLE_CODES = ("webgl-missing", "webgpu-missing", "webgpu-no-adapter", "wasm-missing", "backend-not-built",
                     "kernel-unsupported")
_PRECACHE = re.compile(r"const PRECACHE = (\{.*?\});\n", re.DOTALL)


@dataclass
class Check:
    """One check's outcome: passed, failed or skipped, with a one-line detail."""

    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    """All checks of one run."""

    dist: str
    url: str = ""
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    screenshot: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.status != "failed" for c in self.checks)

    def add(self, name: str, status: str, detail: str, **data: Any) -> Check:
        check = Check(name, status, detail, data)
        self.checks.append(check)
        return check

    def to_json(self) -> dict[str, Any]:
        return {"dist": self.dist, "url": self.url, "passed": self.passed, "seconds": round(self.seconds, 2),
                "screenshot": self.screenshot, "checks": [asdict(c) for c in self.checks]}


@dataclass
class Site:
    """What a built folder declares about itself."""

    root: Path
    metadata: dict[str, Any]
    precache: dict[str, Any]


def load_site(dist: Path) -> Site:
    """Read metadata.json and the service worker's precache manifest; ``UsageError`` if not a build."""
    dist = Path(dist)
    if not dist.is_dir():
        raise UsageError(f"{dist}: folder not found; pass the output folder of `webml build`, e.g. dist/digits")
    missing = [name for name in ("index.html", "metadata.json", "sw.js") if not (dist / name).is_file()]
    if missing:
        raise UsageError(f"{dist}: not a webml build ({', '.join(missing)} missing); build one with `webml build SPEC`")
    try:
        metadata = json.loads((dist / "metadata.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{dist / 'metadata.json'}: invalid JSON ({exc}); rebuild the app with `webml build`") from exc
    if not isinstance(metadata, dict) or metadata.get("generator") != "webml":
        raise UsageError(f"{dist / 'metadata.json'}: not written by webml; rebuild the app with `webml build`")
    match = _PRECACHE.search((dist / "sw.js").read_text(encoding="utf-8"))
    if not match:
        raise UsageError(f"{dist / 'sw.js'}: no precache manifest found; rebuild the app with `webml build`")
    return Site(root=dist, metadata=metadata, precache=json.loads(match.group(1)))


class PageWatch:
    """Collects console errors, page errors and request URLs of one page."""

    def __init__(self, page: Any) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            location = message.location or {}
            self.console_errors.append(f"{message.text} ({location.get('url', '')}:{location.get('lineNumber', '')})")


def wait_ready(page: Any, timeout_ms: int = READY_TIMEOUT_MS) -> dict[str, Any]:
    """Wait until the app reports ready or failed; return ``window.webml``'s state."""
    page.wait_for_function("() => window.webml && window.webml.state !== 'loading'", timeout=timeout_ms)
    return page.evaluate("""() => {
        const w = window.webml;
        return {state: w.state, error: w.error, errorCode: w.errorCode, backend: w.backend, how: w.how,
                skipped: w.skipped, forced: w.forced, forcedFailure: w.forcedFailure, warmupMs: w.warmupMs,
                modelVerified: w.modelVerified};
    }""")


def ab_variants(metadata: dict[str, Any]) -> list[dict[str, Any] | None]:
    """List the A/B variants of a build (metadata.json ``ab``), or [None] for a build with one model."""
    return list(metadata["ab"]["variants"]) if metadata.get("ab") else [None]


def golden_outputs(metadata: dict[str, Any], variant_id: str | None = None) -> list[list[float]]:
    """Return Python's outputs for the golden inputs: the primary model's, or A/B variant ``variant_id``'s."""
    if variant_id is None or not metadata.get("ab"):
        return [g["output"] for g in metadata["golden"]]
    return next(v["golden"] for v in metadata["ab"]["variants"] if v["id"] == variant_id)


def golden_difference(site: Site, outputs: list[list[float]], variant_id: str | None = None) -> float:
    expected = np.asarray(golden_outputs(site.metadata, variant_id), dtype=np.float64)
    actual = np.asarray(outputs, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    return float(np.abs(actual - expected).max())


def predict_golden(page: Any, site: Site, variant_id: str | None = None) -> list[list[float]]:
    """Predict the golden inputs in the page: with the model the page runs, or with A/B variant ``variant_id``."""
    inputs = [g["input"] for g in site.metadata["golden"]]
    if variant_id is None:
        return page.evaluate("inputs => window.webml.predict(inputs)", inputs)
    return page.evaluate("([id, inputs]) => window.webml.predictVariant(id, inputs)", [variant_id, inputs])


def page_variant(page: Any) -> str | None:
    """Return the id of the A/B variant the page runs, or None for a build with one model."""
    return page.evaluate("() => (window.webml.variant && window.webml.variant.ab) ? window.webml.variant.id : null")


def verify_site(dist: Path, *, backends: list[str] | None = None, tolerance: float | None = None,
                offline: bool = True, screenshot: Path | None = None, reporter: Reporter = SILENT,
                browser: Any = None) -> VerifyReport:
    """Run every browser check on a built folder and return the report (never raises on a failed check).

    ``browser`` is a Playwright browser to check in; None launches Chromium for this call.
    """
    site = load_site(dist)
    metadata = site.metadata
    tolerance = metadata["verify"]["tolerance"] if tolerance is None else tolerance
    # A backend named on the command line must run, because a skip would let the command pass unchecked.
    required = list(backends) if backends else list(metadata["verify"]["backends"])
    to_check = backends or list(dict.fromkeys(required + list(metadata["app"]["backends"])))
    report = VerifyReport(dist=str(dist))
    started = time.perf_counter()
    server = AppServer(site.root).start()
    report.url = server.url
    try:
        with contextlib.nullcontext(browser) if browser is not None else launch() as active:
            context = active.new_context(viewport={"width": 1000, "height": 900}, locale="en-US")
            try:
                _run_checks(site, server, context, report, to_check, required, tolerance, offline, screenshot, reporter)
            finally:
                context.close()
    finally:
        try:
            server.stop()
        except OSError:
            pass
    report.seconds = time.perf_counter() - started
    return report


def _run_checks(site: Site, server: AppServer, context: Any, report: VerifyReport, to_check: list[str],
                required: list[str], tolerance: float, offline: bool, screenshot: Path | None,
                reporter: Reporter) -> None:
    origin = server.url.rstrip("/")
    page = context.new_page()
    watch = PageWatch(page)
    reporter.step(f"checking {site.root} at {server.url} in Chromium")
    page.goto(server.url)
    state = wait_ready(page)
    problems = watch.console_errors + watch.page_errors
    # A kernel the build failed to register is a defect of the build, even on a backend the
    # warm-up could skip.
    defects = [s for s in state["skipped"] if s["code"] == "kernel-missing"]
    if state["state"] != "ready":
        report.add("page loads", "failed", f"the app failed to start: {state['error']} [{state['errorCode']}]")
    elif defects:
        first = defects[0]
        report.add("page loads", "failed", f"ready on {state['backend']['name']}, but backend {first['backend']} failed: "
                   f"{first['reason']} [{first['code']}]", skipped=state["skipped"])
    elif problems:
        report.add("page loads", "failed", f"{len(problems)} console error(s), first: {problems[0]}", errors=problems)
    else:
        report.add("page loads", "passed", f"ready on {state['backend']['name']} with no console error",
                   backend=state["backend"], skipped=state["skipped"])

    _check_service_worker(page, site, report)

    for name in to_check:
        _check_backend(context, server, site, report, name, name in required, tolerance)

    if screenshot is not None:
        page.reload()
        wait_ready(page)
        page.evaluate("input => window.webml.show && window.webml.show(input)", site.metadata["golden"][0]["input"])
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        report.screenshot = str(screenshot)

    others = sorted({url for url in watch.requests if not _same_origin(url, origin)})
    if others:
        report.add("no request to another origin", "failed", f"{len(others)} request(s), first: {others[0]}", urls=others)
    else:
        report.add("no request to another origin", "passed", f"{len(watch.requests)} requests, all to {origin}")

    if offline:
        _check_offline(page, server, site, report, tolerance)
    page.close()


def _same_origin(url: str, origin: str) -> bool:
    return url.startswith(origin + "/") or url == origin or url.startswith(("data:", "blob:"))


def _check_service_worker(page: Any, site: Site, report: VerifyReport) -> None:
    outcome = page.evaluate("""async () => {
        const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        const ready = await Promise.race([navigator.serviceWorker.ready.then(() => true), wait(20000).then(() => false)]);
        if (!ready) {
            const registration = await navigator.serviceWorker.getRegistration();
            const worker = registration && (registration.installing || registration.waiting || registration.active);
            return {controlled: false, state: worker ? worker.state : 'redundant or never registered'};
        }
        if (navigator.serviceWorker.controller) return {controlled: true};
        await Promise.race([new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve)), wait(15000)]);
        return {controlled: Boolean(navigator.serviceWorker.controller), state: 'activated but not controlling'};
    }""")
    if not outcome["controlled"]:
        report.add("service worker controls the page", "failed",
                   f"no service worker took control within 20 s (worker state: {outcome['state']}); an install "
                   "fails when a fetched file does not match its precache revision")
        return
    expected_cache = f"webml-{site.precache['name']}-{site.precache['version']}"
    cached = page.evaluate("""async (name) => {
        const names = await caches.keys();
        if (!names.includes(name)) return {names, urls: null};
        const cache = await caches.open(name);
        return {names, urls: (await cache.keys()).map((request) => request.url)};
    }""", expected_cache)
    if cached["urls"] is None:
        report.add("service worker controls the page", "failed",
                   f"cache {expected_cache} not found (caches: {', '.join(cached['names']) or 'none'})")
        return
    base = page.evaluate("() => new URL('./', document.baseURI).href")
    variant = service_worker_info(page)["wasmVariant"]
    # Files of a WASM variant this browser does not use are not precached (web/src/sw.js).
    wanted = {base + entry["url"] for entry in site.precache["files"] if entry.get("variant") in (None, variant)}
    missing = sorted(wanted - set(cached["urls"]))
    if missing:
        report.add("service worker controls the page", "failed",
                   f"{len(missing)} of {len(wanted)} precached URLs missing from Cache Storage, first: {missing[0]}",
                   missing=missing)
    else:
        total = sum(entry["bytes"] for entry in site.precache["files"] if base + entry["url"] in wanted)
        has_wasm = any(entry.get("variant") for entry in site.precache["files"])
        size = f"{total / 1024:.0f} KiB, WASM variant {variant}" if has_wasm else f"{total / 1024:.0f} KiB"
        report.add("service worker controls the page", "passed",
                   f"all {len(wanted)} precached URLs ({size}) in cache {expected_cache}",
                   files=len(wanted), bytes=total, wasm_variant=variant if has_wasm else None)


def service_worker_info(page: Any) -> dict[str, Any]:
    """Ask the controlling service worker for {version, cache, wasmVariant}."""
    return page.evaluate("""() => new Promise((resolve, reject) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (event) => resolve(event.data);
        setTimeout(() => reject(new Error('the service worker did not answer within 10 s')), 10000);
        navigator.serviceWorker.controller.postMessage({type: 'version'}, [channel.port2]);
    })""")


def _check_backend(context: Any, server: AppServer, site: Site, report: VerifyReport, name: str, required: bool,
                   tolerance: float) -> None:
    page = context.new_page()
    watch = PageWatch(page)
    try:
        page.goto(f"{server.url}?backend={name}")
        state = wait_ready(page)
        check_name = f"parity on {name}"
        if state["state"] != "ready":
            report.add(check_name, "failed", f"the app failed to start: {state['error']} [{state['errorCode']}]")
            return
        failure = state["forcedFailure"]
        if failure:
            # The page fell back to another backend and showed a notice, so the forced one did not run.
            if failure["code"] in UNAVAILABLE_CODES and not required:
                report.add(check_name, "skipped", f"backend not available: {failure['reason']}", code=failure["code"])
            else:
                report.add(check_name, "failed", f"backend did not start: {failure['reason']} [{failure['code']}]",
                           code=failure["code"])
            return
        if state["backend"]["name"] != name or state["how"] != "forced":
            report.add(check_name, "failed", f"?backend={name} ran on {state['backend']['name']} ({state['how']})")
            return
        for model in ab_variants(site.metadata):
            _check_parity(page, watch, site, report, state["backend"], tolerance, model,
                          check_name if model is None else f"{check_name}, variant {model['id']} ({model['name']})")
    finally:
        page.close()


def _check_parity(page: Any, watch: PageWatch, site: Site, report: VerifyReport, backend: dict[str, Any],
                  tolerance: float, model: dict[str, Any] | None, check_name: str) -> None:
    variant_id = model["id"] if model else None
    try:
        outputs = predict_golden(page, site, variant_id)
    except Exception as exc:  # Playwright wraps page-side errors in its own Error type.
        report.add(check_name, "failed", f"prediction failed: {str(exc).strip().splitlines()[0]}")
        return
    diff = golden_difference(site, outputs, variant_id)
    data = {"max_abs_diff": diff, "inputs": len(outputs), "threads": backend.get("threads"),
            "simd": backend.get("simd"), "variant": backend.get("variant")}
    if model:
        data["model"] = {"id": model["id"], "name": model["name"], "sha256": model["sha256"]}
    errors = watch.console_errors + watch.page_errors
    if errors:
        report.add(check_name, "failed", f"console error: {errors[0]}", errors=errors, **data)
    elif diff <= tolerance:
        variant = f", {backend['variant']}" if backend.get("variant") else ""
        report.add(check_name, "passed", f"{len(outputs)} golden inputs, max |diff| {diff:.2e} ≤ {tolerance:g}"
                   f" ({backend.get('threads')} thread(s){variant})", **data)
    else:
        report.add(check_name, "failed", f"max |diff| {diff:.3g} > tolerance {tolerance:g} over {len(outputs)} "
                   "golden inputs", **data)


def _check_offline(page: Any, server: AppServer, site: Site, report: VerifyReport, tolerance: float) -> None:
    server.stop()
    try:
        page.reload()
        state = wait_ready(page)
    except Exception as exc:  # Playwright raises its own Error and TimeoutError types here.
        report.add("works offline (server stopped)", "failed", f"reload with the server stopped failed: {exc}")
        return
    if state["state"] != "ready":
        report.add("works offline (server stopped)", "failed", f"the app failed offline: {state['error']}")
        return
    diff = golden_difference(site, predict_golden(page, site), page_variant(page))
    if diff <= tolerance:
        report.add("works offline (server stopped)", "passed",
                   f"reloaded from the service worker and predicted {len(site.metadata['golden'])} golden inputs "
                   f"(max |diff| {diff:.2e})", max_abs_diff=diff)
    else:
        report.add("works offline (server stopped)", "failed", f"offline predictions differ by {diff:.3g}",
                   max_abs_diff=diff)


def measure_models(root: Path, models: dict[str, str], raw_inputs: list[Any], backend: str = "wasm",
                   reporter: Reporter = SILENT, browser: Any = None) -> dict[str, list[list[float]]]:
    """Predict ``raw_inputs`` in Chromium with each graph model (name → URL under ``root``).

    The page's own encoding and runtime are used (``window.webml.evaluateModel``), on ``backend``.
    ``browser`` is a Playwright browser to measure in; None launches Chromium for this call.
    Raises ``VerificationError`` when the page or a model fails.
    """
    from .errors import VerificationError

    results: dict[str, list[list[float]]] = {}
    with AppServer(root) as server, contextlib.nullcontext(browser) if browser is not None else launch() as active:
        context = active.new_context()
        try:
            page = context.new_page()
            watch = PageWatch(page)
            page.goto(f"{server.url}?backend={backend}")
            state = wait_ready(page)
            if state["state"] != "ready":
                raise VerificationError(f"the app did not start on {backend} to measure the model variants: "
                                        f"{state['error']} [{state['errorCode']}]")
            with reporter.loop(f"measuring {len(models)} variant(s) in Chromium ({backend})", len(models)) as advance:
                for name, url in models.items():
                    try:
                        results[name] = page.evaluate("([url, inputs]) => window.webml.evaluateModel(url, inputs)",
                                                      [url, raw_inputs])
                    except Exception as exc:  # Playwright wraps page-side errors in its own Error type.
                        first = str(exc).strip().splitlines()[0]
                        raise VerificationError(f"variant {name} ({url}) failed in the browser: {first}") from exc
                    advance(1, name)
            if watch.page_errors:
                raise VerificationError(f"page error while measuring variants: {watch.page_errors[0]}")
        finally:
            context.close()
    return results
