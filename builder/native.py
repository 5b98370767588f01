"""Capture of output that native libraries write straight to file descriptors 1 and 2.

TensorFlow, XLA and the converter's dependencies print registration notices and banners from C++
(before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL does not silence them). They are
captured here and shown only with -v, or when the wrapped code fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def captured_native_output(label: str) -> Iterator[None]:
    """Redirect fds 1 and 2 into a temporary file for the duration of the block.

    On an exception the captured text is logged at WARNING level before the exception propagates;
    otherwise at DEBUG level (visible with -v).
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = (os.dup(1), os.dup(2))
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace").strip()
            if text:
                log.log(logging.WARNING if failed else logging.DEBUG, "%s output:\n%s", label, text)


def import_tensorflow() -> None:
    """Import TensorFlow, Keras and the TF.js converter once, with their start-up noise captured."""
    with captured_native_output("tensorflow import"):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        from tensorflowjs.converters import converter  # noqa: F401
