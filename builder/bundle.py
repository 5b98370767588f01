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

from .errors import SetupError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = PROJECT_ROOT / "web"
TFJS_VERSION = "4.22.0"


@dataclass
class BundleResult:
    """Files the bundler wrote (relative to the output folder) and bytes per source package."""

    files: list[str]
    packages: dict[str, int]
    missing_kernels: dict[str, list[str]] = field(default_factory=dict)


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


def bundle_app(outdir: Path, backends: list[str], kernels: list[str] | None, minify: bool = True) -> BundleResult:
    """Bundle the app into ``outdir``: app.js with one chunk per backend, boot.js, app.css, WASM binaries.

    ``kernels`` lists the TF.js kernel names to register (None registers every kernel).
    """
    check_web_packages()
    config = {"outdir": str(outdir), "backends": backends, "kernels": kernels, "minify": minify}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
        config_path = handle.name
    try:
        completed = subprocess.run(
            [node_executable(), str(WEB_DIR / "build.mjs"), config_path],
            capture_output=True, text=True, timeout=300, check=False,
        )
    finally:
        os.unlink(config_path)
    if completed.returncode != 0:
        detail = completed.stderr.strip().splitlines()
        raise SetupError(f"bundling the web app with esbuild failed: {detail[-1] if detail else 'no output'}; "
                         f"run `npm ci` in {WEB_DIR} and retry with -v for the full log")
    if completed.stderr.strip():
        log.debug("esbuild: %s", completed.stderr.strip())
    summary = json.loads(completed.stdout)
    return BundleResult(files=summary["files"], packages=summary["packages"], missing_kernels=summary["missingKernels"])
