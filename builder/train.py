"""Training: the test split, preprocessing fitted on training rows, validation protocols, the
common-sense baseline, and the final model trained on all non-test rows.

The test set is split off first and touched exactly once, after the configuration and the number
of epochs have been chosen on validation folds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import tasks
from .data import Dataset
from .errors import BaselineError, DataError
from .features import TabularEncoder
from .models import Hyperparameters, Normalization, TargetScaling, build_model, count_parameters
from .progress import SILENT, Reporter
from .spec import Spec

log = logging.getLogger(__name__)

# One-sided z value for the baseline check: the model's mean per-row gain over the baseline must
# exceed this many standard errors (about a 5% chance that a model with no real gain passes).
BASELINE_Z = 1.645
VALIDATION_BATCH = 1024


@dataclass
class Preprocessing:
    """Preprocessing fitted on one set of training rows."""

    encoder: TabularEncoder | None
    normalization: Normalization
    target: TargetScaling | None = None

    def transform(self, raw: Any) -> np.ndarray:
        if self.encoder is None:
            return np.asarray(raw, dtype=np.float32)
        return self.encoder.transform(raw)


@dataclass
class Split:
    """The test split and everything fitted on the rest."""

    dataset: Dataset
    head: tasks.TaskHead
    train_index: np.ndarray
    test_index: np.ndarray
    preprocessing: Preprocessing
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def classes(self) -> int:
        return len(self.dataset.class_names)


@dataclass
class Protocol:
    """A validation protocol resolved for one dataset."""

    name: str
    folds: int
    repeats: int
    validation_size: float
    reason: str

    def describe(self) -> str:
        if self.name == "holdout":
            return f"holdout ({self.validation_size:.0%} of non-test rows)"
        if self.name == "kfold":
            return f"{self.folds}-fold"
        return f"{self.repeats}× iterated {self.folds}-fold with shuffling"


@dataclass
class FoldResult:
    """One fold's scores, learning curves and validation outputs.

    ``positions`` index the validation rows within the non-test rows (``Split.y_train``); the
    fold's training rows are all the other non-test rows.
    """

    fold: int
    repeat: int
    scores: dict[str, float]
    best_epoch: int
    history: dict[str, list[float]]
    positions: np.ndarray
    outputs: np.ndarray


@dataclass
class Evaluation:
    """Validation scores of one configuration across all folds."""

    hyperparameters: Hyperparameters
    folds: list[FoldResult]
    primary_metric: str

    @property
    def mean(self) -> float:
        return float(np.mean([f.scores[self.primary_metric] for f in self.folds]))

    @property
    def std(self) -> float:
        return float(np.std([f.scores[self.primary_metric] for f in self.folds]))

    def describe_score(self) -> str:
        """Return the mean score, with its spread across folds when there is more than one."""
        if len(self.folds) == 1:
            return f"{self.mean:.4f} (one holdout fold)"
        return f"{self.mean:.4f} ± {self.std:.4f} over {len(self.folds)} folds"

    @property
    def best_epoch(self) -> int:
        return int(np.median([f.best_epoch for f in self.folds]))

    def summary(self) -> dict[str, Any]:
        metrics = sorted(self.folds[0].scores)
        return {
            "hyperparameters": self.hyperparameters.to_json(),
            "primary_metric": self.primary_metric,
            "mean": self.mean,
            "std": self.std,
            "best_epoch": self.best_epoch,
            "metrics": {m: {"mean": float(np.mean([f.scores[m] for f in self.folds])),
                            "std": float(np.std([f.scores[m] for f in self.folds]))} for m in metrics},
            "folds": [{"fold": f.fold, "repeat": f.repeat, "scores": f.scores, "best_epoch": f.best_epoch,
                       "rows": int(len(f.positions)), "history": f.history}
                      for f in self.folds],
        }


@dataclass
class TrainingResult:
    """The final model and everything measured on the way to it."""

    model: Any
    split: Split
    protocol: Protocol
    hyperparameters: Hyperparameters
    epochs: int
    baseline: dict[str, Any]
    validation: Evaluation
    test_scores: dict[str, float]
    test_outputs: np.ndarray
    final_history: dict[str, list[float]]
    parameters: int
    comparison: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except RuntimeError:
        # Already enabled in this process (a second build in the same interpreter).
        pass


def fit_preprocessing(dataset: Dataset, index: np.ndarray) -> Preprocessing:
    """Fit the encoder and the normalization statistics on the given rows only."""
    raw = dataset.take(index)
    target = TargetScaling.fit(dataset.y[index]) if dataset.task == "regression" else None
    if dataset.input_kind == "tabular":
        encoder = TabularEncoder.fit(raw, dataset.columns)
        mean, variance = encoder.scaling()
        return Preprocessing(encoder, Normalization(mean, variance), target)
    return Preprocessing(None, Normalization.fit_images(np.asarray(raw, dtype=np.float32)), target)


def split_test(spec: Spec, dataset: Dataset) -> Split:
    """Split off the stratified, seeded test set and fit preprocessing on the rest."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(dataset.rows)
    stratify = dataset.y if dataset.task in ("binary", "multiclass") else None
    try:
        train_index, test_index = train_test_split(indices, test_size=spec.data.test_size, random_state=spec.seed,
                                                   stratify=stratify, shuffle=True)
    except ValueError as exc:
        raise DataError(f"{dataset.source}: cannot split off a test set of {spec.data.test_size:.0%} from "
                        f"{dataset.rows} rows ({exc}); add rows or change data.test_size") from exc
    train_index = np.sort(train_index)
    test_index = np.sort(test_index)
    preprocessing = fit_preprocessing(dataset, train_index)
    head = tasks.head_for(dataset.task, len(dataset.class_names), dataset.y.shape[1] if dataset.y.ndim == 2 else 1)
    return Split(
        dataset=dataset, head=head, train_index=train_index, test_index=test_index, preprocessing=preprocessing,
        x_train=preprocessing.transform(dataset.take(train_index)), y_train=dataset.y[train_index],
        x_test=preprocessing.transform(dataset.take(test_index)), y_test=dataset.y[test_index],
    )


def resolve_protocol(spec: Spec, rows: int) -> Protocol:
    """Pick the validation protocol: the spec's choice, or a default by the number of non-test rows.

    Small datasets give noisy holdout scores, so they get more folds and repeats: under 500 rows
    3× iterated 5-fold, under 5,000 rows 5-fold, otherwise a 20% holdout.
    """
    v = spec.validation
    name = v.protocol
    reason = "set in the spec"
    if name == "auto":
        if rows < 500:
            name, reason = "iterated-kfold", f"{rows} training rows (< 500): iterated K-fold keeps the estimate stable"
        elif rows < 5000:
            name, reason = "kfold", f"{rows} training rows (< 5,000): K-fold uses every row for validation once"
        else:
            name, reason = "holdout", f"{rows} training rows: a holdout set is large enough"
    folds = v.folds or 5
    repeats = (v.repeats or 3) if name == "iterated-kfold" else 1
    if name != "holdout" and folds < 2:
        raise DataError(f"{spec.path}: validation.folds = {folds} is too small; use at least 2")
    if name != "holdout" and rows < folds:
        raise DataError(f"{spec.path}: {rows} training rows are fewer than validation.folds = {folds}; "
                        "lower validation.folds or use validation.protocol = \"holdout\"")
    return Protocol(name=name, folds=folds if name != "holdout" else 1, repeats=repeats,
                    validation_size=v.validation_size, reason=reason)


def validation_splits(protocol: Protocol, split: Split, seed: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """Return (repeat, fold, train positions, validation positions) within the non-test rows."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    y = split.y_train
    positions = np.arange(len(y))
    classification = split.dataset.task in ("binary", "multiclass")
    if protocol.name == "holdout":
        try:
            train, val = train_test_split(positions, test_size=protocol.validation_size, random_state=seed,
                                          stratify=y if classification else None)
        except ValueError as exc:
            raise DataError(
                f"{split.dataset.source}: cannot split a stratified validation set of {protocol.validation_size:.0%} "
                f"from {len(y)} training rows ({exc}); add rows, raise validation.validation_size or use "
                "validation.protocol = \"kfold\""
            ) from exc
        return [(0, 0, np.sort(train), np.sort(val))]
    if classification:
        smallest = int(np.bincount(y).min())
        if smallest < protocol.folds:
            raise DataError(
                f"{split.dataset.source}: the smallest class has {smallest} training rows, fewer than "
                f"validation.folds = {protocol.folds}; lower validation.folds or add rows"
            )
    result = []
    for repeat in range(protocol.repeats):
        splitter_cls = StratifiedKFold if classification else KFold
        splitter = splitter_cls(n_splits=protocol.folds, shuffle=True, random_state=seed + repeat)
        for fold, (train, val) in enumerate(splitter.split(positions, y if classification else None)):
            result.append((repeat, fold, train, val))
    return result


def fit(split: Split, hp: Hyperparameters, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int,
        preprocessing: Preprocessing, validation: tuple[np.ndarray, np.ndarray] | None = None,
        patience: int = 10, restore_best: bool = True,
        on_epoch: Callable[[int, dict], None] | None = None) -> tuple[Any, dict[str, list[float]], int]:
    """Train one model; with ``validation``, stop early on validation loss.

    Training stops after ``patience`` epochs without a new lowest validation loss; with
    ``restore_best`` the model keeps the weights of that lowest epoch. Returns (model, history,
    best epoch counted from 1; without validation, the number of epochs run).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = build_model(split.input_shape, split.dataset.input_kind, split.head, hp, preprocessing.normalization,
                        preprocessing.target)
    if split.dataset.input_kind == "tabular":
        _zero_constant_inputs(model, x, preprocessing.normalization)
    targets = tasks.training_targets(split.dataset.task, y, split.classes)
    batch_size = max(1, min(hp.batch_size, len(x)))
    # A repeated dataset with steps_per_epoch keeps one iterator for the whole fit. With numpy
    # arrays, fit() builds a new tf.data iterator every epoch, and for 140 rows, batch size 32 and
    # 100 epochs on 2 CPU cores that made training about 5 times slower.
    train_data = (tf.data.Dataset.from_tensor_slices((x, targets))
                  .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
                  .batch(batch_size).repeat())
    callbacks: list[Any] = []
    val_data = None
    val_steps = None
    if validation is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                       restore_best_weights=restore_best))
        val_targets = tasks.training_targets(split.dataset.task, validation[1], split.classes)
        val_data = tf.data.Dataset.from_tensor_slices((validation[0], val_targets)).batch(VALIDATION_BATCH).repeat()
        val_steps = math.ceil(len(validation[0]) / VALIDATION_BATCH)
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs or {})))
    history = model.fit(train_data, steps_per_epoch=math.ceil(len(x) / batch_size), validation_data=val_data,
                        validation_steps=val_steps, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    logs = {k: [float(v) for v in values] for k, values in history.history.items()}
    if validation is not None and logs.get("val_loss"):
        best_epoch = int(np.argmin(logs["val_loss"])) + 1
    else:
        best_epoch = len(logs.get("loss", [])) or epochs
    return model, logs, best_epoch


def _zero_constant_inputs(model: Any, x: np.ndarray, normalization: Normalization) -> None:
    """Zero the first Dense layer's weights for encoded columns that are constant in training.

    Such a column (an unseen-category slot, the missing slot of a column that had no gaps) is 0
    after normalization in every training row, so its weights get no gradient and would keep
    their random initial values. Starting them at 0 keeps them at 0, so a value never seen in
    training adds nothing instead of a random offset.
    """
    import keras

    scaled = (x - normalization.mean) / np.sqrt(np.maximum(normalization.variance, 1e-12))
    constant = np.all(np.abs(scaled) < 1e-6, axis=0)
    if not constant.any():
        return
    first = next((layer for layer in model.layers if isinstance(layer, keras.layers.Dense)), None)
    if first is None or first.kernel.shape[0] != x.shape[1]:
        return
    kernel = np.array(first.kernel.numpy())
    kernel[constant, :] = 0.0
    first.kernel.assign(kernel)


def predict(model: Any, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Run the model in inference mode (dropout off) without Keras' progress output."""
    outputs = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


class EvaluationCache:
    """Evaluations already run in this build, keyed by configuration, epochs and patience.

    Training is seeded per fold, so scoring the same configuration again would repeat the same
    work and give the same numbers.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[Hyperparameters, int, int], Evaluation] = {}

    def get(self, hp: Hyperparameters, epochs: int, patience: int) -> Evaluation | None:
        return self._entries.get((hp, epochs, patience))

    def put(self, evaluation: Evaluation, epochs: int, patience: int) -> None:
        self._entries[(evaluation.hyperparameters, epochs, patience)] = evaluation


def evaluate(spec: Spec, split: Split, protocol: Protocol, hp: Hyperparameters, *, epochs: int,
             reporter: Reporter = SILENT, label: str = "", cache: EvaluationCache | None = None) -> Evaluation:
    """Score a configuration with the protocol; preprocessing is refitted inside every fold."""
    patience = spec.model.patience
    if cache is not None:
        cached = cache.get(hp, epochs, patience)
        if cached is not None:
            return cached
    folds = []
    plan = validation_splits(protocol, split, spec.seed)
    with reporter.loop(label or f"validating {hp.describe()}", len(plan)) as advance:
        for repeat, fold, train_pos, val_pos in plan:
            fold_pre = fit_preprocessing(split.dataset, split.train_index[train_pos])
            x_train = fold_pre.transform(split.dataset.take(split.train_index[train_pos]))
            x_val = fold_pre.transform(split.dataset.take(split.train_index[val_pos]))
            y_train, y_val = split.y_train[train_pos], split.y_train[val_pos]
            model, history, best_epoch = fit(
                split, hp, x_train, y_train, epochs=epochs, seed=spec.seed + 1000 * repeat + fold,
                preprocessing=fold_pre, validation=(x_val, y_val), patience=patience,
            )
            outputs = predict(model, x_val)
            scores = tasks.score(split.dataset.task, y_val, outputs, spec.task.threshold)
            folds.append(FoldResult(fold=fold, repeat=repeat, scores=scores, best_epoch=best_epoch, history=history,
                                    positions=val_pos, outputs=outputs))
            advance(1, f"{split.head.primary_metric} {scores[split.head.primary_metric]:.4f}")
    evaluation = Evaluation(hyperparameters=hp, folds=folds, primary_metric=split.head.primary_metric)
    if cache is not None:
        cache.put(evaluation, epochs, patience)
    return evaluation


BASELINE_DESCRIPTIONS = {
    "binary": "predicts the training class priors (the majority class)",
    "multiclass": "predicts the training class priors (the majority class)",
    "multilabel": "predicts each label's training frequency",
    "regression": "predicts the training mean",
}


def baseline_scores(spec: Spec, split: Split, protocol: Protocol) -> dict[str, Any]:
    """Score the common-sense baseline with the same folds as the model.

    Classification predicts the training class priors (so accuracy is the majority class's share);
    multi-label predicts each label's training frequency; regression predicts the training mean.
    """
    task = split.dataset.task
    fold_scores = []
    for _, _, train_pos, val_pos in validation_splits(protocol, split, spec.seed):
        y_train, y_val = split.y_train[train_pos], split.y_train[val_pos]
        outputs = _baseline_outputs(task, y_train, len(val_pos), split.classes)
        fold_scores.append(tasks.score(task, y_val, outputs, spec.task.threshold))
    metric = split.head.primary_metric
    test_outputs = _baseline_outputs(task, split.y_train, len(split.y_test), split.classes)
    return {
        "description": BASELINE_DESCRIPTIONS[task],
        "primary_metric": metric,
        "mean": float(np.mean([s[metric] for s in fold_scores])),
        "std": float(np.std([s[metric] for s in fold_scores])),
        "folds": fold_scores,
        "test": tasks.score(task, split.y_test, test_outputs, spec.task.threshold),
    }


def _baseline_outputs(task: str, y_train: np.ndarray, rows: int, classes: int) -> np.ndarray:
    if task == "multiclass":
        priors = np.bincount(y_train, minlength=classes) / len(y_train)
        return np.tile(priors, (rows, 1))
    if task == "binary":
        return np.full((rows, 1), y_train.mean())
    return np.tile(y_train.mean(axis=0), (rows, 1))


def compare_with_baseline(spec: Spec, split: Split, evaluation: Evaluation, baseline: dict[str, Any]) -> dict[str, Any]:
    """Measure the model's per-row gain over the baseline on the validation rows of every fold.

    Each validation row is scored for both (see ``tasks.row_credit``) and the model beats the
    baseline when the mean paired gain exceeds ``BASELINE_Z`` standard errors. The standard error
    counts each non-test row once, even when iterated K-fold validates it several times.
    """
    task = split.dataset.task
    head = split.head
    gains, seen = [], []
    everything = np.arange(len(split.y_train))
    for fold in evaluation.folds:
        y_val = split.y_train[fold.positions]
        train_pos = np.setdiff1d(everything, fold.positions, assume_unique=True)
        base_outputs = _baseline_outputs(task, split.y_train[train_pos], len(fold.positions), split.classes)
        model_credit = tasks.row_credit(task, y_val, fold.outputs, spec.task.threshold)
        base_credit = tasks.row_credit(task, y_val, base_outputs, spec.task.threshold)
        gains.append(model_credit - base_credit if head.higher_is_better else base_credit - model_credit)
        seen.append(fold.positions)
    gain = np.concatenate(gains)
    rows = len(np.unique(np.concatenate(seen)))
    standard_error = float(gain.std(ddof=1) / math.sqrt(rows)) if len(gain) > 1 else 0.0
    required = BASELINE_Z * standard_error
    mean_gain = float(gain.mean())
    return {
        "primary_metric": head.primary_metric,
        "higher_is_better": head.higher_is_better,
        "model": evaluation.mean,
        "model_std": evaluation.std,
        "baseline": baseline["mean"],
        "baseline_std": baseline["std"],
        "gain": mean_gain,
        "standard_error": standard_error,
        "required_gain": required,
        "z": BASELINE_Z,
        "rows": rows,
        "beats_baseline": bool(mean_gain > required and mean_gain > 0),
    }


def check_baseline(comparison: dict[str, Any], baseline: dict[str, Any], model_name: str) -> None:
    """Raise ``BaselineError`` unless ``comparison`` (from ``compare_with_baseline``) beats the baseline.

    ``model_name`` starts the message, e.g. "the starting model from [model]".
    """
    if comparison["beats_baseline"]:
        return
    metric = comparison["primary_metric"]
    direction = "higher" if comparison["higher_is_better"] else "lower"
    raise BaselineError(
        f"{model_name} does not beat the common-sense baseline: validation {metric} {comparison['model']:.4f} "
        f"± {comparison['model_std']:.4f} against the baseline's {comparison['baseline']:.4f} "
        f"({baseline['description']}; {direction} is better); the mean per-row gain {comparison['gain']:+.4f} "
        f"must exceed {comparison['required_gain']:.4f} ({comparison['z']} standard errors over "
        f"{comparison['rows']} rows); check that the target is predictable from the inputs (shuffled or "
        "leaked labels?), or give the model more capacity, epochs or a higher learning rate in [model]"
    )


def train_final(spec: Spec, split: Split, hp: Hyperparameters, epochs: int, reporter: Reporter = SILENT) -> tuple[Any, dict]:
    """Train the chosen configuration on all non-test rows for a fixed number of epochs."""
    with reporter.loop("training the final model", epochs) as advance:
        model, history, _ = fit(split, hp, split.x_train, split.y_train, epochs=epochs, seed=spec.seed,
                                preprocessing=split.preprocessing,
                                on_epoch=lambda epoch, logs: advance(1, f"loss {logs.get('loss', math.nan):.4f}"))
    return model, history


def hyperparameters_from_spec(spec: Spec) -> Hyperparameters:
    """Return the starting configuration that the spec's [model] section describes."""
    m = spec.model
    return Hyperparameters(architecture=m.architecture, units=m.units, filters=m.filters, dropout=m.dropout,
                           l1=m.l1, l2=m.l2, learning_rate=m.learning_rate, batch_size=m.batch_size)


def prepare(spec: Spec, dataset: Dataset) -> tuple[Split, Protocol]:
    """Split off the test set, fit preprocessing on the rest and resolve the validation protocol."""
    configure_determinism(spec.seed)
    split = split_test(spec, dataset)
    return split, resolve_protocol(spec, len(split.train_index))


def run(spec: Spec, dataset: Dataset, reporter: Reporter = SILENT,
        search: Callable[..., tuple[Hyperparameters, dict[str, Any]]] | None = None) -> TrainingResult:
    """Run the whole training workflow for a loaded dataset.

    The starting configuration from [model] must beat the baseline first, which fails fast on data
    with no learnable signal. ``search`` (scale-up and tuning) then receives (spec, split, protocol,
    starting hyperparameters, the starting evaluation, cache, reporter) and returns the chosen
    hyperparameters plus a record for the report. The chosen configuration is scored with the
    protocol, checked against the baseline again, retrained on all non-test rows for its median
    best epoch, and evaluated once on the test set.
    """
    started = time.perf_counter()
    split, protocol = prepare(spec, dataset)
    reporter.detail(f"{dataset.rows} rows: {len(split.train_index)} for training and validation, "
                    f"{len(split.test_index)} held out for the test; validation: {protocol.describe()}")
    reporter.detail(f"task {dataset.task}{' (inferred)' if dataset.task_inferred else ''}: "
                    f"{split.head.activation} output, {split.head.loss} loss")
    baseline = baseline_scores(spec, split, protocol)
    reporter.detail(f"baseline, which {baseline['description']}: {baseline['primary_metric']} {baseline['mean']:.4f}")
    cache = EvaluationCache()
    start = hyperparameters_from_spec(spec)
    start_evaluation = evaluate(spec, split, protocol, start, epochs=spec.model.epochs, reporter=reporter,
                                label=f"validating the starting model ({start.describe()})", cache=cache)
    start_comparison = compare_with_baseline(spec, split, start_evaluation, baseline)
    reporter.detail(f"starting model: validation {start_evaluation.primary_metric} "
                    f"{start_evaluation.describe_score()}")
    check_baseline(start_comparison, baseline, "the starting model from [model]")
    hp, stages = start, {}
    if search is not None:
        hp, stages = search(spec, split, protocol, start, start_evaluation, cache, reporter)
    stages["start"] = {**start_evaluation.summary(), "comparison": start_comparison}
    evaluation = evaluate(spec, split, protocol, hp, epochs=spec.model.epochs, reporter=reporter,
                          label=f"validating {hp.describe()}", cache=cache)
    reporter.detail(f"chosen model {hp.describe()}: validation {evaluation.primary_metric} "
                    f"{evaluation.describe_score()}; best epoch {evaluation.best_epoch}")
    comparison = compare_with_baseline(spec, split, evaluation, baseline)
    check_baseline(comparison, baseline, f"the chosen model ({hp.describe()})")
    warnings = list(dataset.warnings)
    if evaluation.best_epoch >= spec.model.epochs:
        warnings.append(f"the validation loss was still falling at epoch {spec.model.epochs}, the last one, in most "
                        "folds; raise model.epochs to let the model train longer")
    epochs = max(1, evaluation.best_epoch)
    model, history = train_final(spec, split, hp, epochs, reporter)
    test_outputs = predict(model, split.x_test)
    test_scores = tasks.score(dataset.task, split.y_test, test_outputs, spec.task.threshold)
    log.info("training finished in %.1f s", time.perf_counter() - started)
    return TrainingResult(
        model=model, split=split, protocol=protocol, hyperparameters=hp, epochs=epochs, baseline=baseline,
        validation=evaluation, test_scores=test_scores, test_outputs=test_outputs, final_history=history,
        parameters=count_parameters(model), comparison=comparison, stages=stages, warnings=warnings,
    )
