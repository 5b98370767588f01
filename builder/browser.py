"""Finding and launching headless Chromium through Playwright.

webml uses a Chromium that is already on the machine (``WEBML_CHROMIUM``, then the usual
executable names on PATH) through Playwright's ``executable_path``. Where none is found it falls
back to a browser that ``playwright install chromium`` downloaded, if there is one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import SetupError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Chromium's background services (component updates, sync, safe browsing) try to reach Google's
# hosts at start-up; on a closed network they only add failed connections and delay.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-quic",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--enable-unsafe-swiftshader",
)


def find_chromium() -> str | None:
    """Return the path of a Chromium executable on this machine, or None."""
    configured = os.environ.get("WEBML_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            raise SetupError(f"WEBML_CHROMIUM={configured}: file not found; point it at a Chromium or Chrome executable")
        return configured
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch_options(extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the keyword arguments for Playwright's ``chromium.launch`` (executable and flags).

    Tests that need a second browser with other flags (a fake camera) or a profile folder
    (``launch_persistent_context``) pass these to the ``browser_type`` of a running browser,
    since Playwright's sync API allows one running instance per thread.
    """
    args = [*CHROMIUM_ARGS, *extra_args]
    if os.geteuid() == 0:
        # Chromium refuses to start its sandbox as root.
        args.append("--no-sandbox")
    return {"executable_path": find_chromium(), "args": args}


@contextlib.contextmanager
def launch(headless: bool = True, extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Start Chromium and yield a Playwright ``Browser``; each caller makes its own contexts.

    ``extra_args`` are added to Chromium's command line.
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise SetupError("Playwright is not installed; run `make setup` or `pip install -r requirements.lock`") from exc
    options = launch_options(extra_args)
    executable = options["executable_path"]
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(headless=headless, **options)
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = (f"the browser at {executable} failed to start" if executable else
                    "no Chromium found on PATH and no Playwright-managed browser is installed")
            raise SetupError(f"{hint} ({first}); install Debian's chromium (`apt-get install chromium`) "
                             "or set WEBML_CHROMIUM to a Chromium executable") from exc
        try:
            yield browser
        finally:
            browser.close()
