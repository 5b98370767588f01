"""Progress reporting seam between the stages (which never print) and the CLI (which does)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Reporter:
    """Receives stage starts, details and loop progress; this base class ignores them."""

    def step(self, message: str) -> None:
        """A stage starts."""

    def detail(self, message: str) -> None:
        """A fact worth one indented line under the current stage."""

    def warn(self, message: str) -> None:
        """A warning; stages also record warnings in their results."""

    @contextlib.contextmanager
    def loop(self, label: str, total: int) -> Iterator[callable]:
        """A long loop (epochs, trials, checks); yields ``advance(n=1, note="")``."""
        yield lambda n=1, note="": None


SILENT = Reporter()
