"""How far quantizing one weight tensor moves a graph model's outputs.

``OutputProbe`` imports the float32 graph model once, with every top-level float constant turned
into a placeholder, and opens one TensorFlow session on it. A trial feeds the sample inputs, the
original values of all weights but one, and that one weight quantized and dequantized as TF.js
does. So each trial is one ``session.run``, and no graph is rebuilt or imported again.

The deviation of a trial is the largest change of any output over the sample rows, on a scale
that fits the output:

* probabilities (classification heads): the absolute difference, on a scale of 1, so 0.05 means
  that no sample's probability of any class moved by more than 5 percentage points;
* other outputs (regression): the absolute difference over the standard deviation of that output
  column across the sample rows of the float32 model, so 0.05 means that no prediction moved by
  more than 5% of the spread of the predictions. A constant column (standard deviation 0) uses
  the RMS of its values instead, and an all-zero column uses 1.

Non-finite outputs count as an infinite deviation.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError
from .native import captured_native_output

log = logging.getLogger(__name__)

# Rows of the training data fed to every trial. One trial of the digits model on 256 rows took
# about 1.5 ms on a shared 2-core VM.
# NOTE: 256 is a guess, not tuned. Damage that only rows outside the sample show goes unseen here
# and is left to the browser-measured metric of the whole variant.
SAMPLE_ROWS = 256


def sample_rows(x: np.ndarray, limit: int = SAMPLE_ROWS) -> np.ndarray:
    """Return up to ``limit`` rows of ``x``, evenly spaced, so the choice is deterministic."""
    if len(x) <= limit:
        return x
    return x[np.linspace(0, len(x) - 1, num=limit).round().astype(int)]


def output_deviation(reference: list[np.ndarray], outputs: list[np.ndarray], probabilities: bool) -> float:
    """Return the largest scaled change from ``reference`` to ``outputs`` (see the module docstring)."""
    worst = 0.0
    for expected, actual in zip(reference, outputs):
        expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
        actual = np.asarray(actual, dtype=np.float64).reshape(expected.shape)
        if not np.all(np.isfinite(actual)):
            return math.inf
        change = np.abs(actual - expected).max(axis=0)
        if probabilities:
            scale = np.ones_like(change)
        else:
            spread = expected.std(axis=0)
            rms = np.sqrt(np.mean(np.square(expected), axis=0))
            scale = np.where(spread > 0, spread, np.where(rms > 0, rms, 1.0))
        worst = max(worst, float((change / scale).max()))
    return worst


class OutputProbe:
    """The float32 graph model in one TensorFlow session, with its float weights fed as placeholders.

    Use it as a context manager, or call ``close``. Trials are cached by (tensor name, precision),
    so the plans of several variants share them.
    """

    def __init__(self, directory: Path, samples: np.ndarray, probabilities: bool) -> None:
        import tensorflow as tf

        from .graph_model import restored_graph_def

        graph_def, manifest = restored_graph_def(directory)
        signature = manifest.get("signature", {})
        inputs = signature.get("inputs", {})
        outputs = signature.get("outputs", {})
        if len(inputs) != 1 or not outputs:
            raise ConversionError(f"{directory / 'model.json'}: only single-input graph models can be probed")
        originals: dict[str, np.ndarray] = {}
        for node in graph_def.node:
            if node.op != "Const" or node.input:
                continue
            values = tf.make_ndarray(node.attr["value"].tensor)
            if values.dtype.kind != "f":
                continue
            originals[node.name] = values
            node.op = "Placeholder"
            del node.attr["value"]
            node.attr["shape"].shape.CopyFrom(tf.TensorShape(values.shape).as_proto())

        self.probabilities = probabilities
        self._graph = tf.Graph()
        with captured_native_output("importing the graph model for the quantization check"), self._graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        self._session = tf.compat.v1.Session(graph=self._graph)
        input_tensor = self._graph.get_tensor_by_name(next(iter(inputs.values()))["name"])
        self._fetches = [self._graph.get_tensor_by_name(info["name"]) for info in outputs.values()]
        self._placeholders = {name: self._graph.get_tensor_by_name(f"{name}:0") for name in originals}
        self._feed: dict[Any, np.ndarray] = {self._placeholders[name]: values for name, values in originals.items()}
        self._feed[input_tensor] = np.asarray(samples, dtype=input_tensor.dtype.as_numpy_dtype)
        self._cache: dict[tuple[str, str], float] = {}
        self.reference = self._run(self._feed)

    @property
    def names(self) -> set[str]:
        """The weights a trial can replace: the graph's top-level float constants."""
        return set(self._placeholders)

    def deviation(self, name: str, dtype: str, values: np.ndarray) -> float:
        """Return the output deviation with weight ``name`` replaced by ``values``, its ``dtype`` round trip."""
        key = (name, dtype)
        if key not in self._cache:
            placeholder = self._placeholders[name]
            feed = {**self._feed, placeholder: np.asarray(values, dtype=placeholder.dtype.as_numpy_dtype)}
            self._cache[key] = output_deviation(self.reference, self._run(feed), self.probabilities)
        return self._cache[key]

    def _run(self, feed: dict[Any, np.ndarray]) -> list[np.ndarray]:
        with captured_native_output("running the graph model for the quantization check"):
            return self._session.run(self._fetches, feed)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> OutputProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
