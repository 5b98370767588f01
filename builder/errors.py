"""Error types raised by webml's stages.

Every error carries one message line that names the file, key, row or value that failed and says
what to do next. The CLI prints that line and exits with the error's ``exit_code``: 2 for usage
errors (a bad command line, spec, data file or model file), 1 for build failures (training,
conversion or verification that did not succeed).
"""

from __future__ import annotations


class WebmlError(Exception):
    """Base class of every error webml reports to a person."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(WebmlError):
    """A command line, spec, data file or model file that webml cannot use as given."""

    exit_code = 2


class SpecError(UsageError):
    """An invalid project spec: malformed TOML, an unknown key or a value of the wrong kind."""


class DataError(UsageError):
    """Input data that cannot be loaded or learned from as given."""


class ModelFileError(UsageError):
    """A model file or folder that is not a model webml can read."""


class BuildError(WebmlError):
    """A build step that ran and failed."""


class SetupError(BuildError):
    """A missing tool the build needs: Node.js, the TF.js runtime, or a browser."""


class BaselineError(BuildError):
    """The trained model does not beat the common-sense baseline."""


class TuningError(BuildError):
    """A tuning search that ended without a completed trial."""


class ConversionError(BuildError):
    """The TF.js converter failed or wrote a model that does not load."""


class ParityError(ConversionError):
    """A converted model whose outputs differ from the Python model's beyond the tolerance."""

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


class VerificationError(BuildError):
    """A browser check of the built app failed."""
