"""Atomic replacement of an output folder.

A build writes into a staging folder next to the target and swaps it in only after every check
passed. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call, so at every instant the
target is either the complete old build or the complete new one. Elsewhere two renames are used
and a build that dies between them is repaired by ``recover`` at the start of the next build.

Staging and scratch folders carry the process id in their names (``.NAME.staging-PID``,
``.NAME.work-PID``). A build that is killed cannot remove them, so ``recover`` removes those whose
process no longer runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError


def process_alive(pid: int) -> bool:
    """Return whether a process with this id exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

log = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# Staging and scratch folders this process created, for remove_temporaries.
_temporaries: set[Path] = set()


def remove_temporaries() -> None:
    """Remove every staging and scratch folder this process created and still has.

    Meant for a process about to exit without running its cleanup code (see ``cli``). A staging
    folder that was already swapped in contains the previous build, which the swap drops anyway.
    """
    for path in list(_temporaries):
        shutil.rmtree(path, ignore_errors=True)
        _temporaries.discard(path)


def _fresh_temporary(target: Path, kind: str) -> Path:
    """Create an empty ``.NAME.KIND-PID`` folder next to ``target`` and record it in _temporaries."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}.{kind}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    _temporaries.add(path)
    return path


def staging_dir(target: Path) -> Path:
    """Create a fresh staging folder next to ``target`` (same file system, so renames are atomic)."""
    return _fresh_temporary(target, "staging")


@contextlib.contextmanager
def work_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder next to ``target`` for files that are not part of the output
    (SavedModels, converted variants), and remove it afterwards."""
    path = _fresh_temporary(target, "work")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        _temporaries.discard(path)


def _old_dir(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def recover(target: Path) -> None:
    """Repair the state a crash between two renames can leave, and drop stale staging folders."""
    old = _old_dir(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            log.warning("restoring %s from %s left by an interrupted build", target, old)
            os.rename(old, target)
    for pattern in (f".{target.name}.staging-*", f".{target.name}.work-*"):
        for stale in target.parent.glob(pattern):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not process_alive(int(pid)):
                log.info("removing %s left by an interrupted build", stale)
                shutil.rmtree(stale, ignore_errors=True)


def check_parents(target: Path) -> None:
    """Raise ``UsageError`` when the nearest existing folder above ``target`` is a file, before any
    work that would fail on it at the end."""
    parent = next((folder for folder in target.absolute().parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{target}: {parent} is a file, not a folder; pick another --output")


def check_target(target: Path) -> None:
    """Raise ``UsageError`` unless ``target`` is absent, an empty folder or an earlier webml build.

    A build replaces its whole output folder, so pointing ``--output`` at a folder of other files
    would delete them. A webml build is recognized by its metadata.json.
    """
    check_parents(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"{target}: exists and is not a folder; pick another --output")
    if any(target.iterdir()) and not _written_by_webml(target):
        raise UsageError(f"{target}: a folder that `webml build` did not write (no metadata.json from webml), "
                         "which the build would replace; pick another --output or remove the folder")


def _written_by_webml(folder: Path) -> bool:
    try:
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metadata, dict) and metadata.get("generator") == "webml"


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        log.debug("renameat2(RENAME_EXCHANGE) failed with errno %d; falling back to two renames", errno)
        return False
    return True


def replace_dir(staging: Path, target: Path) -> None:
    """Make ``staging`` the new ``target``; the old target is removed afterwards."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
        return
    old = _old_dir(target)
    if old.exists():
        shutil.rmtree(old)
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
