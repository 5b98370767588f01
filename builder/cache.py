"""A content-addressed cache of build stage results.

An entry is the folder ``ROOT/STAGE/KEY``, where KEY is the SHA-256 of everything the stage reads
(``builder.stage_cache`` computes the keys). A stage writes its entry into a temporary folder in
``ROOT/STAGE`` and renames it into place, so a reader sees either a complete entry or none. A
build killed while writing leaves only the temporary folder, which the next run removes.

The root is ``.webml-cache`` in the working directory, or ``WEBML_CACHE_DIR`` when that is set.
Entries hold pickles, so the cache folder must be as trusted as the code: never point
``WEBML_CACHE_DIR`` at a folder that other users can write.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .output import process_alive
from .render import file_sha256

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "WEBML_CACHE_DIR"
DEFAULT_DIR = ".webml-cache"
# Entries kept per stage; the least recently used ones are removed first.
MAX_ENTRIES_PER_STAGE = 16
ENTRY_FILE = "entry.json"
_TEMPORARY = re.compile(r"^\.tmp-(?P<pid>\d+)-[0-9a-f]+$")
PACKAGE_DIR = Path(__file__).resolve().parent


def default_root() -> Path:
    """Return the cache folder: ``WEBML_CACHE_DIR`` if set, else ``.webml-cache`` in the working directory."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.cwd() / DEFAULT_DIR


def digest_json(value: Any) -> str:
    """Return the SHA-256 of ``value`` as canonical JSON (sorted keys; paths and other objects as strings)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_path(path: Path) -> str:
    """Return the SHA-256 of a file's bytes, or of a folder's relative file names and their bytes.

    Hidden files and folders inside a folder are skipped, as the loaders skip them.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode("utf-8") + b"\0" + bytes.fromhex(file_sha256(file)))
    return digest.hexdigest()


def module_closure(roots: Iterable[str]) -> list[str]:
    """Return the ``builder`` modules that ``roots`` import, directly or through each other.

    Relative imports (``from .x import y``, ``from . import x``) are followed, including those
    inside functions. The result is sorted and includes the roots.
    """
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = PACKAGE_DIR / f"{name}.py"
        if not path.is_file():
            continue
        seen.add(name)
        # The parsed tree, not a pattern over the text, so parenthesized and multi-line imports count too.
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    pending.append(node.module.split(".")[0])
                else:
                    pending.extend(alias.name for alias in node.names)
    return sorted(seen)


def source_digest(modules: Iterable[str]) -> str:
    """Return the SHA-256 of the named ``builder`` modules' source files."""
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode("utf-8") + b"\0" + (PACKAGE_DIR / f"{name}.py").read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass
class StageOutcome:
    """How one stage of one build used the cache: ``hit``, ``miss`` or ``off``, with the reason."""

    status: str
    key: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "key": self.key, "reason": self.reason}


@dataclass
class StageCache:
    """The cache folder of one build, and the record of which stages it served."""

    root: Path
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self._remove_stale_temporaries()

    def lookup(self, stage: str, key: str) -> Path | None:
        """Return the folder of a complete entry, or None; a hit counts as a use for eviction."""
        folder = self.root / stage / key
        if not (folder / ENTRY_FILE).is_file():
            return None
        try:
            os.utime(folder / ENTRY_FILE)
        except OSError:
            pass
        return folder

    def store(self, stage: str, key: str, write: Callable[[Path], None], description: dict[str, Any]) -> bool:
        """Write an entry with ``write(folder)`` and move it into place; return whether it was stored.

        A failure to write (a full disk, a read-only folder, an object that cannot be pickled) is
        logged and recorded as a warning instead of failing the build, because the cache only
        saves time.
        """
        stage_dir = self.root / stage
        temporary = stage_dir / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            temporary.mkdir(parents=True)
            write(temporary)
            entry = {"stage": stage, "key": key, "created": time.time(), "inputs": description}
            (temporary / ENTRY_FILE).write_text(json.dumps(entry, indent=1, default=str) + "\n", encoding="utf-8")
            try:
                os.rename(temporary, stage_dir / key)
            except OSError:
                # Another build stored the same key first; its entry is equivalent.
                if not (stage_dir / key / ENTRY_FILE).is_file():
                    raise
            self._evict(stage_dir)
            return True
        except Exception as exc:  # noqa: BLE001 - the cache only saves time, so no write failure may fail a build.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            message = f"{self.root}: cannot store the {stage} stage in the cache ({reason}); the build goes on"
            log.warning(message)
            self.warnings.append(message)
            return False
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)

    def discard(self, stage: str, key: str) -> None:
        """Remove an entry that turned out unusable."""
        shutil.rmtree(self.root / stage / key, ignore_errors=True)

    def note(self, stage: str, status: str, key: str = "", reason: str = "") -> None:
        self.outcomes[stage] = StageOutcome(status, key, reason)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": True, "directory": str(self.root),
                "stages": {name: outcome.to_json() for name, outcome in self.outcomes.items()}}

    def _evict(self, stage_dir: Path) -> None:
        entries = [p for p in stage_dir.iterdir() if (p / ENTRY_FILE).is_file()]
        entries.sort(key=lambda p: (p / ENTRY_FILE).stat().st_mtime, reverse=True)
        for old in entries[MAX_ENTRIES_PER_STAGE:]:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        if not self.root.is_dir():
            return
        for stage_dir in (p for p in self.root.iterdir() if p.is_dir()):
            for temporary in stage_dir.iterdir():
                match = _TEMPORARY.match(temporary.name)
                if match and not process_alive(int(match.group("pid"))):
                    shutil.rmtree(temporary, ignore_errors=True)
