"""Native TensorFlow timing of the same converted model, for the browser/native ratios."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np


def latency(model_dir: Path, batch: np.ndarray, runs: int) -> float:
    """Median milliseconds of one call of the graph model's TensorFlow function, readback included.

    The function is the converted graph run in TensorFlow (``builder.graph_model``): a concrete
    ``tf.function`` of exactly the shipped model, called directly rather than through
    ``model.predict`` and its per-call set-up.
    """
    import tensorflow as tf

    from builder.graph_model import load_graph_model

    runner = load_graph_model(model_dir)
    x = tf.constant(batch, dtype=tf.float32)
    for _ in range(max(5, runs // 10)):
        runner.function(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.function(x).numpy()
        times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))
