"""Model optimization: weight quantization, magnitude pruning, and choosing what ships.

Quantization uses the TF.js converter's per-weight options. TF.js expands quantized weights back
to float32 when it loads a model, so quantization shrinks the download and the cache, not the
memory or the compute. Before a tensor is quantized, its quantization is simulated with the
converter's own code and judged twice: by the relative error of its weights (an outlier stretches
the affine range of uint8 and uint16 until every other weight rounds to a few levels), and by how
far the dequantized tensor moves the float32 graph model's outputs on sample rows of the training
data (``sensitivity``). A tensor that fails either check keeps a higher precision, and a tensor
outside the float16 range keeps float32.

Pruning zeroes the smallest-magnitude kernel weights on a gradual schedule while fine-tuning.
Zeros make a model smaller only after compression, so sizes are reported raw, gzip and brotli.
"""

from __future__ import annotations

import gzip
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import convert, tasks
from .errors import ConversionError
from .progress import SILENT, Reporter
from .sensitivity import OutputProbe

log = logging.getLogger(__name__)

FLOAT16_MAX = 65504.0
# Precisions from the smallest to the exact one; a tensor that fails a precision tries the next.
LADDER = ("uint8", "uint16", "float16", "float32")
DEFAULT_CLASSIFICATION_DROP = 0.01
DEFAULT_REGRESSION_RELATIVE_DROP = 0.02


@dataclass
class TensorPlan:
    """The precision one weight tensor gets in a variant, and why."""

    name: str
    shape: list[int]
    dtype: str
    error: float | None
    reason: str = ""
    # Output deviation (``sensitivity.output_deviation``) at ``dtype``; None where it was not measured.
    deviation: float | None = None


@dataclass
class Variant:
    """One candidate model: its files, sizes and measured quality."""

    name: str
    quantization: str
    pruned: bool
    directory: Path
    files: list[str]
    tensors: list[TensorPlan] = field(default_factory=list)
    bytes_raw: int = 0
    bytes_gzip: int = 0
    bytes_brotli: int = 0
    bytes_weights: int = 0
    sparsity: float = 0.0
    python_metric: float | None = None
    browser_metric: float | None = None
    browser_scores: dict[str, float] = field(default_factory=dict)
    max_abs_diff: float | None = None
    within_budget: bool | None = None
    selected: bool = False

    @property
    def protected(self) -> list[TensorPlan]:
        """Tensors kept at a higher precision than the variant's own."""
        return [t for t in self.tensors if t.dtype != self.quantization and t.reason]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "quantization": self.quantization, "pruned": self.pruned,
            "sparsity": self.sparsity, "bytes": {"raw": self.bytes_raw, "gzip": self.bytes_gzip, "brotli": self.bytes_brotli,
                                            "weights": self.bytes_weights},
            "python_metric": self.python_metric, "browser_metric": self.browser_metric,
            "browser_scores": self.browser_scores, "max_abs_diff_vs_float32": self.max_abs_diff,
            "within_budget": self.within_budget, "selected": self.selected,
            "protected_tensors": [{"name": t.name, "dtype": t.dtype, "error": t.error,
                                   "output_deviation": t.deviation, "reason": t.reason}
                                  for t in self.protected],
        }


def dequantized(values: np.ndarray, dtype: str) -> np.ndarray:
    """Return ``values`` quantized to ``dtype`` and expanded back to float32 the way TF.js does."""
    from tensorflowjs import quantization

    data = np.asarray(values, dtype=np.float32)
    if dtype == "float32" or data.size == 0:
        return data
    np_dtype = {"float16": np.float16, "uint16": np.uint16, "uint8": np.uint8}[dtype]
    quantized, meta = quantization.quantize_weights(data, np_dtype)
    return quantization.dequantize_weights(quantized, meta, np.float32)


def quantization_error(values: np.ndarray, dtype: str, restored: np.ndarray | None = None) -> float:
    """Relative RMS error of quantizing then dequantizing ``values`` the way TF.js does.

    The error is RMS(dequantized - original) over a robust scale of the tensor: the RMS of the
    values at or below the 99th percentile of |w|. With the plain RMS as the scale, one outlier
    would inflate the scale as much as it coarsens the affine grid and hide the damage done to
    every other weight. Returns 0 for an all-zero tensor. ``restored`` may pass in the result of
    ``dequantized(values, dtype)`` when the caller has it already.
    """
    data = np.asarray(values, dtype=np.float32)
    if dtype == "float32" or data.size == 0:
        return 0.0
    if restored is None:
        restored = dequantized(data, dtype)
    magnitudes = np.abs(data.astype(np.float64))
    bulk = magnitudes[magnitudes <= np.percentile(magnitudes, 99)]
    scale = math.sqrt(float(np.mean(np.square(bulk)))) if bulk.size else 0.0
    if scale == 0.0:
        return 0.0
    return math.sqrt(float(np.mean(np.square(restored.astype(np.float64) - data)))) / scale


def plan_tensors(weights: dict[str, np.ndarray], target: str, max_error: float,
                 probe: OutputProbe | None = None) -> list[TensorPlan]:
    """Choose a precision per tensor: the target where it passes every check, else the first
    precision up the ladder that does. Int tensors stay as they are.

    A precision passes when the tensor's weight error (``quantization_error``) is at most
    ``max_error``. Where ``probe`` can replace the tensor, the output deviation of the dequantized
    tensor (``sensitivity.output_deviation``) must be at most ``max_error`` too.

    Each tensor is judged alone, with every other weight at float32, so the checks do not cover
    the combined effect of quantizing all tensors together. The browser-measured metric of every
    variant, held to ``optimize.max_metric_drop`` by ``select_variant``, covers that.
    """
    plans = []
    for name in sorted(weights):
        values = weights[name]
        shape = list(values.shape)
        if values.dtype.kind != "f":
            plans.append(TensorPlan(name, shape, "float32", None, ""))
            continue
        measured = probe is not None and name in probe.names
        if target == "float32":
            plans.append(TensorPlan(name, shape, "float32", 0.0, deviation=0.0 if measured else None))
            continue
        peak = float(np.abs(values).max()) if values.size else 0.0
        failures: list[str] = []
        error: float | None = 0.0
        deviation: float | None = None
        chosen = "float32"
        for dtype in LADDER[LADDER.index(target):]:
            if dtype == "float32":
                break
            if dtype == "float16" and peak > FLOAT16_MAX:
                failures.append(f"|w| up to {peak:.3g} is outside the float16 range (±{FLOAT16_MAX:g})")
                continue
            restored = dequantized(values, dtype)
            error = quantization_error(values, dtype, restored)
            if error > max_error:
                failures.append(f"{dtype} weight error {error:.3g} > {max_error:g}")
                continue
            deviation = probe.deviation(name, dtype, restored) if measured else None
            if deviation is not None and deviation > max_error:
                failures.append(f"{dtype} moves outputs by {deviation:.3g} > {max_error:g}")
                continue
            chosen = dtype
            break
        if chosen == "float32":
            error = 0.0
            deviation = 0.0 if measured else None
        reason = "; ".join(failures) if chosen != target else ""
        plans.append(TensorPlan(name, shape, chosen, error, reason, deviation))
    return plans


def quantization_patterns(plans: list[TensorPlan]) -> dict[str, list[str]]:
    """Group tensor names by precision for the converter's --quantize_* options."""
    patterns: dict[str, list[str]] = {}
    for plan in plans:
        if plan.dtype in ("float16", "uint16", "uint8"):
            patterns.setdefault(plan.dtype, []).append(plan.name)
    return patterns


def compressed_sizes(directory: Path, files: list[str]) -> tuple[int, int, int]:
    """Return (raw, gzip, brotli) bytes of the given files, compressed one by one at level 9/11."""
    import brotli

    raw = gzipped = brotlied = 0
    for name in files:
        data = (directory / name).read_bytes()
        raw += len(data)
        gzipped += len(gzip.compress(data, compresslevel=9, mtime=0))
        brotlied += len(brotli.compress(data, quality=11))
    return raw, gzipped, brotlied


def weight_sparsity(weights: dict[str, np.ndarray], min_size: int = 64) -> float:
    """Fraction of exact zeros over the float tensors with at least ``min_size`` values (kernels)."""
    zeros = total = 0
    for values in weights.values():
        if values.dtype.kind == "f" and values.size >= min_size:
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else 0.0


def make_variants(saved_model: Path, float32_dir: Path, out_root: Path, names: list[str], max_error: float,
                  shard_bytes: int, pruned: bool = False, samples: np.ndarray | None = None,
                  probabilities: bool = False) -> list[Variant]:
    """Convert one SavedModel into each quantization variant under ``out_root/NAME``.

    ``float32_dir`` holds the float32 conversion whose weight names and values drive the plans.
    ``samples`` are model inputs for the output check of each tensor's quantization, and
    ``probabilities`` says whether the model outputs probabilities (see ``sensitivity``). Without
    samples, or for a graph that TensorFlow cannot run, only the weight error is checked.
    """
    from .graph_model import read_graph_weights

    weights = read_graph_weights(float32_dir)
    probe = _open_probe(float32_dir, samples, probabilities) if set(names) - {"float32"} else None
    prefix = "pruned-" if pruned else ""
    variants = []
    try:
        for quantization in names:
            plans = plan_tensors(weights, quantization, max_error, probe)
            variants.append(_convert_variant(saved_model, float32_dir, out_root / f"{prefix}{quantization}",
                                             quantization, plans, weights, shard_bytes, pruned))
    finally:
        if probe is not None:
            probe.close()
    return variants


def _open_probe(float32_dir: Path, samples: np.ndarray | None, probabilities: bool) -> OutputProbe | None:
    if samples is None or len(samples) == 0:
        return None
    try:
        return OutputProbe(float32_dir, samples, probabilities)
    except ConversionError as exc:
        log.warning("checking only the weight error of each tensor, because the output check cannot run: %s", exc)
        return None


def _convert_variant(saved_model: Path, float32_dir: Path, directory: Path, quantization: str, plans: list[TensorPlan],
                     weights: dict[str, np.ndarray], shard_bytes: int, pruned: bool) -> Variant:
    from .graph_model import read_graph_weights

    if directory.exists():
        shutil.rmtree(directory)
    if quantization == "float32":
        shutil.copytree(float32_dir, directory)
        graph = convert.describe_graph_model(directory)
    else:
        graph = convert.convert_saved_model(saved_model, directory, quantization=quantization_patterns(plans),
                                            shard_bytes=shard_bytes)
    shipped = read_graph_weights(directory)
    missing = set(weights) - set(shipped)
    if missing:
        raise ConversionError(f"{directory}: the quantized model lacks weights {sorted(missing)[:3]}")
    raw, gz, br = compressed_sizes(directory, graph.files)
    return Variant(
        name=directory.name, quantization=quantization, pruned=pruned, directory=directory,
        files=graph.files, tensors=plans, bytes_raw=raw, bytes_gzip=gz, bytes_brotli=br,
        bytes_weights=graph.weight_bytes,
        sparsity=weight_sparsity(shipped),
    )


def metric_budget(head: tasks.TaskHead, reference: float, max_drop: float) -> tuple[float, str]:
    """Return the worst acceptable primary metric and a description of the budget.

    ``max_drop`` < 0 selects the default: 1 percentage point for metrics where higher is better
    (accuracy), 2% relative for error metrics (regression MAE).
    """
    if head.higher_is_better:
        drop = DEFAULT_CLASSIFICATION_DROP if max_drop < 0 else max_drop
        return reference - drop, f"{head.primary_metric} at most {drop:g} below float32's {reference:.4f}"
    drop = DEFAULT_REGRESSION_RELATIVE_DROP if max_drop < 0 else max_drop
    return reference * (1 + drop), f"{head.primary_metric} at most {drop:.0%} above float32's {reference:.4g}"


def select_variant(variants: list[Variant], head: tasks.TaskHead, max_drop: float) -> tuple[Variant, str]:
    """Mark and return the smallest variant (gzip bytes) within the metric budget, with the reason."""
    reference = next(v for v in variants if v.name == "float32")
    if reference.browser_metric is None:
        raise ConversionError("the float32 model has no browser-measured metric; the variant table is incomplete")
    limit, budget = metric_budget(head, reference.browser_metric, max_drop)
    for variant in variants:
        metric = variant.browser_metric
        variant.within_budget = metric is not None and (metric >= limit if head.higher_is_better else metric <= limit)
    candidates = sorted((v for v in variants if v.within_budget), key=lambda v: (v.bytes_gzip, v.bytes_raw, v.name))
    chosen = candidates[0] if candidates else reference
    chosen.selected = True
    rejected = [v for v in variants if not v.within_budget]
    reason = (f"{chosen.name} is the smallest variant ({chosen.bytes_gzip} bytes gzip, {chosen.bytes_raw} raw) with "
              f"{budget}: {head.primary_metric} {chosen.browser_metric:.4f} in the browser")
    if rejected:
        reason += "; over budget: " + ", ".join(f"{v.name} ({v.browser_metric:.4f})" for v in rejected)
    return chosen, reason


def prune_model(model: Any, x: np.ndarray, y: np.ndarray, task: str, classes: int, *, sparsity: float, epochs: int,
                batch_size: int, learning_rate: float, seed: int, reporter: Reporter = SILENT) -> tuple[Any, dict[str, Any]]:
    """Return a pruned, fine-tuned copy of ``model`` and a record of the sparsity reached.

    Kernels of Dense and Conv layers are pruned by magnitude, per tensor. The target rises on a
    cubic schedule (fast at first, slow near the end) over the first 70% of the epochs; the rest
    fine-tune at the final sparsity. Pruned weights are zeroed again after every batch, so the
    optimizer cannot revive them.
    """
    import keras

    keras.utils.set_random_seed(seed)
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    pruned.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=model.loss)
    kernels = [layer.kernel for layer in pruned.layers
               if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D))]
    masks = [np.ones(k.shape, dtype=np.float32) for k in kernels]
    ramp_epochs = max(1, int(round(epochs * 0.7)))

    def target_at(epoch: int) -> float:
        progress = min(1.0, (epoch + 1) / ramp_epochs)
        return sparsity * (1 - (1 - progress) ** 3)

    def update_masks(level: float) -> None:
        for i, kernel in enumerate(kernels):
            values = np.abs(np.asarray(kernel.numpy()))
            count = int(math.floor(level * values.size))
            mask = np.ones(values.shape, dtype=np.float32)
            if count > 0:
                order = np.argsort(values, axis=None, kind="stable")[:count]
                mask.reshape(-1)[order] = 0.0
            masks[i] = mask
            kernel.assign(kernel.numpy() * mask)

    def apply_masks() -> None:
        for kernel, mask in zip(kernels, masks):
            kernel.assign(kernel.numpy() * mask)

    targets = tasks.training_targets(task, y, classes)
    callbacks = [
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: update_masks(target_at(epoch)),
            on_train_batch_end=lambda batch, logs: apply_masks(),
        ),
    ]
    with reporter.loop(f"pruning to {sparsity:.0%} sparsity", epochs) as advance:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: advance(1, f"target {target_at(epoch):.0%}")))
        pruned.fit(x, targets, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    update_masks(sparsity)
    reached = [float(np.mean(k.numpy() == 0)) for k in kernels]
    total = sum(int(np.prod(k.shape)) for k in kernels)
    overall = sum(r * int(np.prod(k.shape)) for r, k in zip(reached, kernels)) / total if total else 0.0
    record = {
        "target": sparsity, "epochs": epochs, "schedule": "cubic ramp over the first 70% of epochs",
        "reached": overall, "layers": {k.path: r for k, r in zip(kernels, reached)},
    }
    return pruned, record
