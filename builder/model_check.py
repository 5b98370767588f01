"""Browser checks of converted models: load each one in Chromium and compare its outputs with Python.

The check page (``web/check/``, bundled by ``web/build-check.mjs``) contains the whole TF.js
4.22 runtime, so a graph model loads through tfjs-converter and a layers model through
tfjs-layers, as an application would load them. The page and the models are served by
``AppServer`` on 127.0.0.1; each backend runs in a fresh page.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .browser import launch
from .bundle import WEB_DIR, check_web_packages, node_executable
from .errors import SetupError
from .progress import SILENT, Reporter
from .serve import AppServer
from .verify import PageWatch

log = logging.getLogger(__name__)

CHECK_BACKENDS = ("wasm", "cpu")
PAGE_TIMEOUT_MS = 60_000


@dataclass
class Artifact:
    """A converted model to check, with the inputs to feed it and the outputs Python expects.

    ``inputs`` are fed in order. For a graph model each name is a tensor name from model.json's
    signature, and for a layers model the order is that of model.inputs. ``outputs`` are the
    names the page fetches (tensor names for a graph model), ``labels`` the names in messages.
    """

    kind: str
    directory: Path
    inputs: list[tuple[str, np.ndarray]]
    outputs: list[str]
    labels: list[str]
    expected: list[np.ndarray]
    tolerance: float

    @property
    def url(self) -> str:
        return f"{self.kind}/model.json"


@dataclass
class ParityCheck:
    """One artifact on one backend: passed or failed, with the largest output difference."""

    artifact: str
    backend: str
    status: str
    max_abs_diff: float
    tolerance: float
    output: str
    detail: str
    threads: int = 1
    error: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not math.isfinite(self.max_abs_diff):
            data["max_abs_diff"] = None
        return data


@lru_cache(maxsize=1)
def check_page() -> Path:
    """Bundle the check page once per process into a temporary folder and return that folder."""
    check_web_packages()
    folder = Path(tempfile.mkdtemp(prefix="webml-check-page-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    completed = subprocess.run([node_executable(), str(WEB_DIR / "build-check.mjs"), str(folder)],
                               capture_output=True, text=True, timeout=300, check=False)
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        raise SetupError(f"bundling the browser check page with esbuild failed: {lines[-1] if lines else 'no output'}; "
                         f"run `npm ci` in {WEB_DIR} and retry with -v")
    log.debug("check page bundled into %s: %s", folder, completed.stdout)
    return folder


def max_abs_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """Return max |actual - expected|; NaN where both are NaN counts as equal, any other NaN as infinite."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    if actual.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(actual - expected)
    diff[actual == expected] = 0.0
    diff[np.isnan(actual) & np.isnan(expected)] = 0.0
    diff[np.isnan(diff)] = math.inf
    return float(diff.max())


def _request(artifact: Artifact) -> dict[str, Any]:
    inputs = []
    for name, values in artifact.inputs:
        dtype = {"f": "float32", "b": "bool"}.get(values.dtype.kind, "int32")
        inputs.append({"name": name, "shape": list(values.shape), "dtype": dtype,
                       "values": values.reshape(-1).tolist()})
    return {"format": artifact.kind, "url": artifact.url, "inputs": inputs, "outputs": artifact.outputs}


def check_artifacts(artifacts: list[Artifact], *, backends: tuple[str, ...] = CHECK_BACKENDS,
                    reporter: Reporter = SILENT, browser: Any = None) -> list[ParityCheck]:
    """Load every artifact on every backend in Chromium and compare with ``expected``.

    A mismatch or a model that fails to load becomes a failed check, not an exception.

    ``browser`` is a Playwright browser to open the pages in; None launches Chromium for this call.
    """
    from playwright.sync_api import Error as PlaywrightError

    results: list[ParityCheck] = []
    with tempfile.TemporaryDirectory(prefix="webml-check-") as root_name:
        root = Path(root_name)
        shutil.copytree(check_page(), root, dirs_exist_ok=True)
        for artifact in artifacts:
            shutil.copytree(artifact.directory, root / artifact.kind)
        server = AppServer(root).start()
        try:
            with contextlib.nullcontext(browser) if browser is not None else launch() as active:
                context = active.new_context()
                try:
                    for backend in backends:
                        results.extend(_check_backend(context, server.url, backend, artifacts, PlaywrightError))
                        for check in results[-len(artifacts):]:
                            reporter.detail(f"{check.status:7} {check.artifact} model on {check.backend}: {check.detail}")
                finally:
                    context.close()
        finally:
            server.stop()
    return results


def _check_backend(context: Any, url: str, backend: str, artifacts: list[Artifact], page_error: type) -> list[ParityCheck]:
    page = context.new_page()
    watch = PageWatch(page)
    results = []
    try:
        page.goto(url + "index.html")
        page.wait_for_function("() => window.check && window.check.state.ready", timeout=PAGE_TIMEOUT_MS)
        try:
            started = page.evaluate("name => window.check.start(name)", backend)
        except page_error as exc:
            reason = _first_line(exc)
            return [ParityCheck(a.kind, backend, "failed", math.inf, a.tolerance, "", f"backend did not start: {reason}",
                                error=reason) for a in artifacts]
        for artifact in artifacts:
            try:
                result = page.evaluate("request => window.check.run(request)", _request(artifact))
            except page_error as exc:
                errors = watch.console_errors + watch.page_errors
                detail = f"the {artifact.kind} model failed to load or run in TF.js: {_first_line(exc)}"
                if errors:
                    detail += f" (console: {errors[0]})"
                results.append(ParityCheck(artifact.kind, backend, "failed", math.inf, artifact.tolerance, "", detail,
                                           started["threads"], error=_first_line(exc)))
                continue
            results.append(_compare(artifact, backend, result, started["threads"]))
    finally:
        page.close()
    return results


def _compare(artifact: Artifact, backend: str, result: dict[str, Any], threads: int) -> ParityCheck:
    worst, worst_label = 0.0, artifact.labels[0] if artifact.labels else ""
    for label, expected, output in zip(artifact.labels, artifact.expected, result["outputs"]):
        shape = tuple(output["shape"])
        if shape != tuple(expected.shape):
            detail = f"output '{label}' has shape {list(shape)} in TF.js but {list(expected.shape)} in Python"
            return ParityCheck(artifact.kind, backend, "failed", math.inf, artifact.tolerance, label, detail, threads,
                               error=detail)
        diff = max_abs_difference(np.asarray(output["values"]).reshape(shape), expected)
        if diff > worst or not math.isfinite(diff):
            worst, worst_label = diff, label
    if len(result["outputs"]) != len(artifact.expected):
        detail = f"TF.js returned {len(result['outputs'])} outputs, Python {len(artifact.expected)}"
        return ParityCheck(artifact.kind, backend, "failed", math.inf, artifact.tolerance, "", detail, threads,
                           error=detail)
    samples = artifact.inputs[0][1].shape[0] if artifact.inputs and artifact.inputs[0][1].ndim else 1
    if worst <= artifact.tolerance:
        return ParityCheck(artifact.kind, backend, "passed", worst, artifact.tolerance, worst_label,
                           f"{samples} inputs, max |diff| {worst:.2e} <= {artifact.tolerance:.2g}", threads)
    return ParityCheck(artifact.kind, backend, "failed", worst, artifact.tolerance, worst_label,
                       f"max |diff| {worst:.3g} > tolerance {artifact.tolerance:.2g} on output '{worst_label}' "
                       f"over {samples} inputs", threads)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("at "):
            return line.removeprefix("Error: ").removeprefix("Page.evaluate: ").removeprefix("Error: ")
    return type(exc).__name__
