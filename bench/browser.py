"""Browser measurements for the benchmarks: latency per backend, transfer bytes, start-up time,
JS heap and tensor leaks. Every figure comes from real Chromium against a server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.browser import launch
from builder.serve import AppServer
from builder.verify import wait_ready

# The timing loop runs inside the page, so that no Playwright round trip is timed.
LATENCY_LOOP = """async ([inputs, runs, warmup]) => {
    for (let i = 0; i < warmup; i += 1) await window.webml.predict(inputs);
    const times = [];
    for (let i = 0; i < runs; i += 1) {
        const start = performance.now();
        await window.webml.predict(inputs);
        times.push(performance.now() - start);
    }
    return times;
}"""

@dataclass
class Transfer:
    """Bytes fetched on a first visit, by category, raw and gzip-compressed."""

    raw: dict[str, int] = field(default_factory=dict)
    gzip: dict[str, int] = field(default_factory=dict)
    files: int = 0

    @property
    def total_raw(self) -> int:
        return sum(self.raw.values())

    @property
    def total_gzip(self) -> int:
        return sum(self.gzip.values())


def category(path: str) -> str:
    if path.startswith("model"):
        return "model"
    if path.endswith(".wasm"):
        return "runtime (WASM binary)"
    if path.startswith(("chunks/", "runtime/")) or path in ("app.js", "tf.min.js"):
        return "runtime (JavaScript)"
    return "app"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def latency(dist: Path, backend: str, inputs: list[Any], runs: int, isolate: bool = True) -> dict[str, Any]:
    """Median time of ``webml.predict(inputs)`` on one backend, or the reason it did not start."""
    with AppServer(dist, isolate=isolate) as server, launch() as browser:
        page = browser.new_page()
        page.goto(f"{server.url}?backend={backend}")
        state = wait_ready(page)
        if state["state"] != "ready":
            return {"backend": backend, "skipped": state["error"]}
        # The page falls back to another backend when the forced one cannot start (or the build
        # left it out), and timing that one would be reported under the wrong name.
        if state["forcedFailure"]:
            return {"backend": backend, "skipped": state["forcedFailure"]["reason"]}
        if state["backend"]["name"] != backend or state["how"] != "forced":
            return {"backend": backend, "skipped": f"the page ran {state['backend']['name']} ({state['how']})"}
        times = page.evaluate(LATENCY_LOOP, [inputs, runs, max(5, runs // 10)])
        isolated = page.evaluate("() => crossOriginIsolated")
        return {"backend": backend, "median_ms": median(times), "runs": runs, "threads": state["backend"]["threads"],
                "isolated": isolated}


def first_visit(dist: Path) -> Transfer:
    """Every byte the first visit fetches, the service worker's precache included."""
    transfer = Transfer()
    seen: set[str] = set()
    with AppServer(dist) as server, launch() as browser:
        context = browser.new_context()
        bodies: list[tuple[str, bytes]] = []

        def on_response(response: Any) -> None:
            if response.url.startswith(server.url) and response.status == 200:
                try:
                    bodies.append((response.url[len(server.url):].split("?")[0] or "index.html", response.body()))
                except Exception:  # Playwright cannot read some bodies (redirects, aborted loads).
                    pass

        context.on("response", on_response)
        page = context.new_page()
        page.goto(server.url)
        wait_ready(page)
        page.evaluate("() => navigator.serviceWorker.ready")
        # Let the service worker finish precaching before counting.
        page.wait_for_timeout(1000)
        context.close()
    for path, body in bodies:
        if path in seen:
            continue
        seen.add(path)
        kind = category(path)
        transfer.raw[kind] = transfer.raw.get(kind, 0) + len(body)
        transfer.gzip[kind] = transfer.gzip.get(kind, 0) + len(gzip.compress(body, 9, mtime=0))
        transfer.files += 1
    return transfer


BASELINE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Full TF.js bundle baseline</title>
<script src="tf.min.js"></script><script src="baseline.js" defer></script></head>
<body><p id="status">loading</p></body></html>
"""
BASELINE_SCRIPT = """(async () => {
  const model = await tf.loadGraphModel('model/model.json');
  const shape = model.inputs[0].shape.map((d) => (d === -1 || d === null ? 1 : d));
  const y = model.predict(tf.zeros(shape));
  await y.data();
  document.getElementById('status').textContent = 'ready';
  window.baselineReady = true;
})();
"""


def baseline_visit(float32_model: Path, full_bundle: Path) -> Transfer:
    """Transfer of a page that loads the full tf.min.js bundle and the float32 model."""
    with tempfile.TemporaryDirectory(prefix="webml-baseline-") as folder:
        root = Path(folder)
        (root / "index.html").write_text(BASELINE_PAGE)
        (root / "baseline.js").write_text(BASELINE_SCRIPT)
        shutil.copy(full_bundle, root / "tf.min.js")
        shutil.copytree(float32_model, root / "model")
        transfer = Transfer()
        with AppServer(root, isolate=False, csp=False) as server, launch() as browser:
            page = browser.new_page()
            bodies: list[tuple[str, bytes]] = []
            page.on("response", lambda r: bodies.append((r.url[len(server.url):] or "index.html", r.body()))
                    if r.status == 200 else None)
            page.goto(server.url)
            page.wait_for_function("() => window.baselineReady === true", timeout=60_000)
        for path, body in bodies:
            kind = category(path)
            transfer.raw[kind] = transfer.raw.get(kind, 0) + len(body)
            transfer.gzip[kind] = transfer.gzip.get(kind, 0) + len(gzip.compress(body, 9, mtime=0))
            transfer.files += 1
        return transfer


START_PROBE = """async (input) => {
    await window.webml.predict([input]);
    return performance.now();
}"""


def start_times(dist: Path, golden: Any, runs: int) -> dict[str, Any]:
    """Milliseconds from navigation start to the first prediction: cold online, then offline."""
    cold: list[float] = []
    offline: list[float] = []
    server = AppServer(dist).start()
    try:
        with launch() as browser:
            for _ in range(runs):
                context = browser.new_context()
                page = context.new_page()
                page.goto(server.url)
                wait_ready(page)
                cold.append(page.evaluate(START_PROBE, golden))
                context.close()
            context = browser.new_context()
            page = context.new_page()
            page.goto(server.url)
            wait_ready(page)
            page.evaluate("() => navigator.serviceWorker.ready")
            page.reload()
            wait_ready(page)
            server.stop()
            for _ in range(runs):
                page.reload()
                state = wait_ready(page)
                if state["state"] != "ready":
                    raise RuntimeError(f"the app did not start offline: {state['error']}")
                offline.append(page.evaluate(START_PROBE, golden))
            context.close()
    finally:
        try:
            server.stop()
        except OSError:
            pass
    return {"cold_online_ms": median(cold), "offline_ms": median(offline), "runs": runs}


def memory_and_leaks(dist: Path, golden: Any, predictions: int) -> dict[str, Any]:
    """Peak JS heap (sampled through the DevTools protocol) and tensors left after many predictions."""
    with AppServer(dist) as server, launch() as browser:
        page = browser.new_page()
        session = page.context.new_cdp_session(page)
        session.send("Performance.enable")
        peak = 0.0
        samples = 0

        def sample() -> None:
            nonlocal peak, samples
            metrics = {m["name"]: m["value"] for m in session.send("Performance.getMetrics")["metrics"]}
            peak = max(peak, metrics.get("JSHeapUsedSize", 0.0))
            samples += 1

        page.goto(server.url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sample()
            if page.evaluate("() => Boolean(window.webml) && window.webml.state !== 'loading'"):
                break
            page.wait_for_timeout(20)
        page.evaluate("input => window.webml.predict([input])", golden)
        before = page.evaluate("() => window.webml.numTensors()")
        chunk = max(1, predictions // 20)
        done = 0
        while done < predictions:
            runs = min(chunk, predictions - done)
            page.evaluate("""async ([input, runs]) => {
                for (let i = 0; i < runs; i += 1) await window.webml.predict([input]);
            }""", [golden, runs])
            done += runs
            sample()
        after = page.evaluate("() => window.webml.numTensors()")
        return {"peak_js_heap_bytes": int(peak), "heap_samples": samples, "predictions": predictions,
                "tensors_before": before, "tensors_after": after, "leaked_tensors": after - before}


def chromium_version() -> str:
    with launch() as browser:
        return browser.version


def load_metadata(dist: Path) -> dict[str, Any]:
    return json.loads((dist / "metadata.json").read_text())
