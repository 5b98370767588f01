"""The browser runtime: bundling the client sources and the pinned TF.js packages with esbuild.

The JavaScript side lives in ``web/``: ``web/package.json`` and its lock pin TF.js, ``npm ci``
installs it, and ``web/build.mjs`` runs esbuild. This module finds Node.js and those packages,
runs the bundler for one build and returns what it wrote.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConversionError, SetupError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = PROJECT_ROOT / "web"
TFJS_VERSION = "4.22.0"


@dataclass
class BundleResult:
    """What the bundler wrote and selected.

    ``files`` are relative to the output folder; ``packages`` maps each npm package to the
    bytes it adds to the JavaScript. ``graph_ops``, ``converter_ops`` and ``kernels`` are the
    model's graph ops, the tfjs-core ops the converter runs for them and the kernels each
    backend registers (empty and None when every op and kernel was bundled).
    ``missing_kernels`` maps a backend to kernels TF.js does not implement on it; that backend
    is left out of the app. ``wasm_files`` maps each WASM binary variant to its file. ``sizes``
    contains raw and gzip bytes of what ships, and of the full tf.min.js bundle for comparison.
    """

    files: list[str]
    packages: dict[str, int]
    missing_kernels: dict[str, list[str]] = field(default_factory=dict)
    graph_ops: list[str] = field(default_factory=list)
    converter_ops: list[str] | None = None
    kernels: list[str] | None = None
    wasm_files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        """Describe each backend left out for lack of a kernel, with what to do."""
        return [
            f"the {backend} backend is left out of the app: TF.js {TFJS_VERSION} has no {backend} kernel for "
            f"{', '.join(kernels)}; the app uses its other backends (change the model or app.backends to silence this)"
            for backend, kernels in sorted(self.missing_kernels.items())
        ]


def node_executable() -> str:
    """Return the Node.js executable, or raise ``SetupError`` with the fix."""
    node = os.environ.get("WEBML_NODE") or shutil.which("node")
    if not node:
        raise SetupError("Node.js not found on PATH; install Node.js 20 or newer, or set WEBML_NODE to its path")
    return node


def check_web_packages() -> None:
    """Raise ``SetupError`` unless ``npm ci`` has installed the pinned TF.js packages."""
    package = WEB_DIR / "node_modules" / "@tensorflow" / "tfjs-core" / "package.json"
    if not package.is_file():
        raise SetupError(f"{WEB_DIR / 'node_modules'}: the TF.js runtime is not installed; run `npm ci` in {WEB_DIR} (or `make setup`)")
    version = json.loads(package.read_text())["version"]
    if version != TFJS_VERSION:
        raise SetupError(
            f"{package}: TF.js {version} is installed but webml pins {TFJS_VERSION}; run `npm ci` in {WEB_DIR}"
        )


def bundle_app(outdir: Path, backends: list[str], model_dir: Path | None, *, select_kernels: bool = True,
               minify: bool = True) -> BundleResult:
    """Bundle the app into ``outdir``: app.js with one chunk per backend, boot.js, app.css, WASM binaries.

    With ``select_kernels`` the converted model in ``model_dir`` is profiled in Node.js, and only
    the ops and kernels it runs are bundled. Without it every op and kernel is. Raises
    ``ConversionError`` when the model uses an op the TF.js runtime lacks, ``SetupError`` when
    the bundler cannot run.
    """
    check_web_packages()
    if select_kernels and model_dir is None:
        raise ValueError("select_kernels needs the converted model's folder")
    with tempfile.TemporaryDirectory(prefix="webml-bundle-") as work:
        config = {"outdir": str(outdir), "modelDir": str(model_dir) if model_dir else None, "backends": backends,
                  "selectKernels": select_kernels, "minify": minify, "workDir": work}
        config_path = Path(work) / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        completed = subprocess.run(
            [node_executable(), str(WEB_DIR / "build.mjs"), str(config_path)],
            capture_output=True, text=True, timeout=300, check=False,
        )
    if completed.returncode != 0:
        log.debug("web/build.mjs: %s", completed.stderr)
        code, message = _bundle_error(completed.stderr)
        if code == "op-unsupported":
            raise ConversionError(f"{model_dir}: {message}")
        raise SetupError(f"bundling the web app with esbuild failed ({code}): {message}; "
                         f"run `npm ci` in {WEB_DIR} and retry with -v for the full log")
    if completed.stderr.strip():
        log.debug("web/build.mjs: %s", completed.stderr.strip())
    summary = json.loads(completed.stdout)
    return BundleResult(files=summary["files"], packages=summary["packages"], missing_kernels=summary["missingKernels"],
                        graph_ops=summary["graphOps"], converter_ops=summary["converterOps"], kernels=summary["kernels"],
                        wasm_files=summary["wasmFiles"], sizes=summary["sizes"])


def _bundle_error(stderr: str) -> tuple[str, str]:
    """Return (code, message) from web/build.mjs's last ``webml-bundle-error CODE: MESSAGE`` line."""
    lines = stderr.strip().splitlines()
    for line in reversed(lines):
        if line.startswith("webml-bundle-error "):
            code, _, message = line.removeprefix("webml-bundle-error ").partition(": ")
            return code, message
    return "bundle-failed", lines[-1] if lines else "no output"
