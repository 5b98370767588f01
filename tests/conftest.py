"""Shared fixtures: the webml CLI as a subprocess, and expensive builds made once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import builder  # noqa: F401  (sets environment variables that TensorFlow imports read)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def run_webml(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `webml` command line and capture its output."""
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env=environment, check=False)


def build_or_fail(spec: Path, output: Path, *extra: str) -> dict:
    """Build a spec with the CLI; fail the test with the CLI's output unless it succeeds."""
    result = run_webml("build", str(spec), "--output", str(output), *extra)
    if result.returncode != 0:
        pytest.fail(f"webml build {spec} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}")
    return json.loads((output / "report.json").read_text())


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point the build cache at a folder of this test session, so no test reuses results from
    another session or from the working directory's .webml-cache."""
    from builder.cache import CACHE_DIR_ENV

    folder = tmp_path_factory.mktemp("webml-cache")
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(folder)
    yield folder
    if previous is None:
        del os.environ[CACHE_DIR_ENV]
    else:
        os.environ[CACHE_DIR_ENV] = previous


@pytest.fixture(scope="session")
def digits_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits app built from models/digits.toml, once per test session."""
    output = tmp_path_factory.mktemp("digits") / "digits"
    build_or_fail(MODELS / "digits.toml", output)
    return output


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session's page-level tests."""
    from builder.browser import launch

    with launch() as instance:
        yield instance


@pytest.fixture
def served(request):
    """Serve a folder on 127.0.0.1 for one test: ``url = served(path)``."""
    from builder.serve import AppServer

    servers = []

    def start(path: Path, **options) -> AppServer:
        server = AppServer(path, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        try:
            server.stop()
        except OSError:
            pass
