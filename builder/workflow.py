"""Model search before the final training: scale-up until the model overfits, then regularization
and tuning with KerasTuner.

Scale-up trains models of growing capacity (the [scale_up] widths and depths, each for up to
``scale_up.epochs`` epochs) on the protocol's first validation split. It records each model's
learning curves and the epoch where its validation loss is lowest, which is where overfitting
starts, and the capacity step after which more capacity stops lowering the validation loss.

Tuning runs a KerasTuner search over [tuning]'s ranges. Every trial is scored with the full
validation protocol through ``train.evaluate``, so preprocessing is refitted inside each fold. The
first trial is the configuration the search starts from, so the search never picks a
configuration that scored worse than it. KerasTuner's distributed mode spreads the trials over
processes: with ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID``
set, the process whose tuner id contains "chief" serves the oracle and builds the app, and every
other process runs trials (``run_worker``) and exits. See docs/workflow.md.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import train
from .data import Dataset
from .errors import TuningError, UsageError
from .models import Hyperparameters, count_parameters
from .progress import SILENT, Reporter
from .spec import Spec, TuningSpec
from .train import EvaluationCache, Evaluation, Protocol, Split

log = logging.getLogger(__name__)

ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
TUNER_ID = "KERASTUNER_TUNER_ID"
# A range [0, high] for L1 or L2 becomes these choices: no penalty, or high scaled by a power of 10.
REGULARIZATION_STEPS = (0.001, 0.01, 0.1, 1.0)


def distributed_role() -> str:
    """Return "local", "chief" or "worker" from KerasTuner's distributed-mode environment variables.

    KerasTuner treats a process as distributed when ``KERASTUNER_ORACLE_IP`` is set, and as the
    chief when its ``KERASTUNER_TUNER_ID`` contains "chief". Raises ``UsageError`` when the
    variables are incomplete.
    """
    if ORACLE_IP not in os.environ:
        return "local"
    missing = [name for name in (ORACLE_PORT, TUNER_ID) if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"{ORACLE_IP} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; "
            f"distributed tuning needs all three, e.g. {TUNER_ID}=chief {ORACLE_IP}=127.0.0.1 {ORACLE_PORT}=8470"
        )
    return "chief" if "chief" in os.environ[TUNER_ID] else "worker"


def search(spec: Spec, split: Split, protocol: Protocol, start: Hyperparameters, start_evaluation: Evaluation,
           cache: EvaluationCache, reporter: Reporter) -> tuple[Hyperparameters, dict[str, Any]]:
    """Run scale-up and tuning as the spec enables them.

    Returns the hyperparameters to train with and a record of both stages for the report.
    """
    role = distributed_role()
    if role == "chief" and not spec.tuning.enabled:
        raise UsageError(f"{TUNER_ID}={os.environ[TUNER_ID]} makes this build a tuning chief, but tuning.enabled "
                         "is false; enable tuning in the spec or unset the KERASTUNER_* variables")
    record: dict[str, Any] = {}
    chosen = start
    if spec.scale_up.enabled:
        units, record["scale_up"] = scale_up(spec, split, protocol, start, reporter)
        chosen = start.with_(units=units)
    else:
        record["scale_up"] = {"enabled": False}
    if spec.tuning.enabled:
        chosen, record["tuning"] = tune(spec, split, protocol, chosen, cache, reporter)
    else:
        record["tuning"] = {"enabled": False}
    return chosen, record


# Scale-up ---------------------------------------------------------------------------------------

def scale_up(spec: Spec, split: Split, protocol: Protocol, start: Hyperparameters,
             reporter: Reporter) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Grow capacity until the lowest validation loss stops improving; return the best layer stack.

    Width grows first, through ``scale_up.widths`` at the smallest of ``scale_up.depths``; then
    depth grows through the other depths at the best width. Each direction stops at the first
    step whose lowest validation loss is not at least ``scale_up.min_improvement`` (relative)
    below the best so far: past that step, more capacity only overfits sooner. Each step trains
    for up to ``scale_up.epochs`` epochs and stops ``scale_up.patience`` epochs after its lowest
    validation loss, without restoring weights, so its curve shows the loss turning up.
    """
    settings = spec.scale_up
    repeat, fold, train_pos, val_pos = train.validation_splits(protocol, split, spec.seed)[0]
    preprocessing = train.fit_preprocessing(split.dataset, split.train_index[train_pos])
    x_train = preprocessing.transform(split.dataset.take(split.train_index[train_pos]))
    x_val = preprocessing.transform(split.dataset.take(split.train_index[val_pos]))
    y_train, y_val = split.y_train[train_pos], split.y_train[val_pos]
    widths = sorted(set(settings.widths))
    depths = sorted(set(settings.depths))
    steps: list[dict[str, Any]] = []
    limits: dict[str, int | None] = {"width": None, "depth": None}

    def run_step(units: tuple[int, ...], direction: str) -> dict[str, Any]:
        hp = start.with_(units=units)
        model, history, best_epoch = train.fit(
            split, hp, x_train, y_train, epochs=settings.epochs, seed=spec.seed, preprocessing=preprocessing,
            validation=(x_val, y_val), patience=settings.patience, restore_best=False,
        )
        step = _scale_up_step(units, direction, count_parameters(model), history, best_epoch, settings.epochs)
        steps.append(step)
        reporter.detail(
            f"scale-up {_stack(units)} ({step['parameters']:,} parameters): lowest validation loss "
            f"{step['best_val_loss']:.4f} at epoch {best_epoch} of {step['epochs_run']}"
            + ("" if step["turned_up"] else " (still falling)")
        )
        advance(1, f"{_stack(units)}: val loss {step['best_val_loss']:.4f}")
        return step

    def improves(step: dict[str, Any], best: dict[str, Any]) -> bool:
        return step["best_val_loss"] < best["best_val_loss"] * (1 - settings.min_improvement)

    with reporter.loop("scale-up", len(widths) + len(depths) - 1) as advance:
        best = run_step((widths[0],) * depths[0], "width")
        for width in widths[1:]:
            step = run_step((width,) * depths[0], "width")
            if not improves(step, best):
                limits["width"] = len(steps) - 1
                break
            best = step
        best_width = best["units"][0]
        for depth in depths[1:]:
            step = run_step((best_width,) * depth, "depth")
            if not improves(step, best):
                limits["depth"] = len(steps) - 1
                break
            best = step
    best_index = steps.index(best)
    record = {
        "enabled": True,
        "validation": (f"repeat {repeat + 1}, fold {fold + 1} of the protocol: {len(train_pos)} training rows, "
                       f"{len(val_pos)} validation rows"),
        "epochs": settings.epochs,
        "patience": settings.patience,
        "min_improvement": settings.min_improvement,
        "steps": steps,
        "best_step": best_index,
        "best_units": list(best["units"]),
        "overfitting_epoch": best["best_epoch"],
        "width_limit_step": limits["width"],
        "depth_limit_step": limits["depth"],
        "summary": _scale_up_summary(steps, best_index, limits, settings.epochs, settings.min_improvement),
    }
    reporter.detail(record["summary"])
    return tuple(best["units"]), record


def _scale_up_step(units: tuple[int, ...], direction: str, parameters: int, history: dict[str, list[float]],
                   best_epoch: int, max_epochs: int) -> dict[str, Any]:
    val_loss = history["val_loss"]
    return {
        "units": list(units),
        "grows": direction,
        "parameters": parameters,
        "epochs_run": len(val_loss),
        "best_epoch": best_epoch,
        "best_val_loss": float(min(val_loss)),
        "final_val_loss": float(val_loss[-1]),
        "train_loss_at_best": float(history["loss"][best_epoch - 1]),
        "final_train_loss": float(history["loss"][-1]),
        # Early stopping ended the run before the epoch limit: the validation loss went
        # `patience` epochs without a new low after `best_epoch`.
        "turned_up": len(val_loss) < max_epochs,
        "history": {"loss": history["loss"], "val_loss": val_loss},
    }


def _scale_up_summary(steps: list[dict[str, Any]], best: int, limits: dict[str, int | None], max_epochs: int,
                      min_improvement: float) -> str:
    chosen = steps[best]
    text = f"Scale-up chose {_stack(tuple(chosen['units']))}: "
    if chosen["turned_up"]:
        text += f"its validation loss is lowest at epoch {chosen['best_epoch']}, where overfitting starts."
    else:
        text += (f"its validation loss was still falling at epoch {max_epochs}, the last one; raise "
                 "scale_up.epochs to see where overfitting starts.")
    stopped = [f"the {'wider' if direction == 'width' else 'deeper'} step {_stack(tuple(steps[index]['units']))}"
               for direction, index in limits.items() if index is not None]
    if stopped:
        sentence = " and ".join(stopped)
        text += (f" {sentence[0].upper()}{sentence[1:]} did not lower the lowest validation loss by "
                 f"{min_improvement * 100:g}%, so more capacity only overfits sooner.")
    else:
        text += " Every larger step lowered the validation loss, so larger [scale_up] widths or depths may still help."
    return text


def _stack(units: tuple[int, ...]) -> str:
    return f"{units[0]}×{len(units)}" if len(set(units)) == 1 else "-".join(map(str, units))


# Tuning ------------------------------------------------------------------------------------------

@dataclass
class TrialContext:
    """The data, protocol and settings that every trial of one search is scored with."""

    spec: Spec
    split: Split
    protocol: Protocol
    start: Hyperparameters
    cache: EvaluationCache
    objective: str


def search_space(settings: TuningSpec, start: Hyperparameters) -> Any:
    """Build the KerasTuner search space; each default is the value closest to ``start``."""
    import keras_tuner

    space = keras_tuner.HyperParameters()
    width = max(start.units) if start.units else settings.units[0]
    _choice(space, "units", sorted(set(settings.units)), width, log=True)
    _choice(space, "depth", sorted(set(settings.depths)), len(start.units), log=False)
    _float(space, "dropout", settings.dropout, start.dropout, log=False)
    for name in ("l1", "l2"):
        low, high = getattr(settings, name)
        value = getattr(start, name)
        if low == 0:
            values = sorted({0.0, *(high * step for step in REGULARIZATION_STEPS)})
            _choice(space, name, values, value, log=True)
        else:
            _float(space, name, (low, high), value, log=True)
    _float(space, "learning_rate", settings.learning_rate, start.learning_rate, log=True)
    return space


def _choice(space: Any, name: str, values: list[Any], near: float, *, log: bool) -> None:
    if len(values) == 1:
        space.Fixed(name, values[0])
        return

    def distance(value: float) -> float:
        if not log:
            return abs(value - near)
        if value > 0 and near > 0:
            return abs(math.log(value) - math.log(near))
        # On a log scale 0 is infinitely far from any positive value.
        return 0.0 if value == near else math.inf

    space.Choice(name, values, default=min(values, key=distance))


def _float(space: Any, name: str, bounds: tuple[float, ...], near: float, *, log: bool) -> None:
    low, high = bounds
    if low == high:
        space.Fixed(name, float(low))
        return
    space.Float(name, float(low), float(high), sampling="log" if log else "linear",
                default=float(min(max(near, low), high)))


def hyperparameters_from_values(start: Hyperparameters, values: dict[str, Any]) -> Hyperparameters:
    """Turn one trial's KerasTuner values into a configuration; other settings come from ``start``."""
    return start.with_(units=(int(values["units"]),) * int(values["depth"]), dropout=float(values["dropout"]),
                       l1=float(values["l1"]), l2=float(values["l2"]),
                       learning_rate=float(values["learning_rate"]))


def _make_oracle(settings: TuningSpec, objective: Any, space: Any, seed: int) -> Any:
    """Return the oracle for ``tuning.algorithm`` whose first trial is the search space's defaults."""
    import keras_tuner
    from keras_tuner.src.engine import trial as trial_module

    base = (keras_tuner.oracles.BayesianOptimizationOracle if settings.algorithm == "bayesian"
            else keras_tuner.oracles.RandomSearchOracle)

    class StartFirstOracle(base):
        def populate_space(self, trial_id: str) -> dict[str, Any]:
            if not self.trials:
                defaults = {hp.name: hp.default for hp in self.hyperparameters.space}
                return {"status": trial_module.TrialStatus.RUNNING, "values": defaults}
            return super().populate_space(trial_id)

    # Trials that raise stop the search (see ProtocolTuner.run_trial), so failures never repeat.
    return StartFirstOracle(objective=objective, max_trials=settings.trials, hyperparameters=space, seed=seed,
                            tune_new_entries=False, allow_new_entries=False)


def _make_tuner(context: TrialContext, directory: Path, on_trial: Any) -> Any:
    from keras_tuner.engine.base_tuner import BaseTuner
    from keras_tuner.errors import FatalError

    class ProtocolTuner(BaseTuner):
        """Scores each trial's configuration with ``train.evaluate`` instead of one Keras fit."""

        failure: BaseException | None = None

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            try:
                hp = hyperparameters_from_values(context.start, trial.hyperparameters.values)
                evaluation = train.evaluate(context.spec, context.split, context.protocol, hp,
                                            epochs=context.spec.model.epochs, cache=context.cache)
            except Exception as exc:
                # KerasTuner marks a trial that raises as invalid and moves on. A trial fails here
                # because of the data or the environment, which every other trial would hit too.
                self.failure = exc
                raise FatalError(f"trial {trial.trial_id} failed: {exc}") from exc
            metrics = {context.objective: evaluation.mean, "std": evaluation.std,
                       "best_epoch": float(evaluation.best_epoch)}
            for name, summary in evaluation.summary()["metrics"].items():
                metrics[f"val_{name}"] = summary["mean"]
            on_trial(trial.trial_id, hp, evaluation)
            return metrics

    settings = context.spec.tuning
    head = context.split.head
    import keras_tuner

    objective = keras_tuner.Objective(context.objective, direction="max" if head.higher_is_better else "min")
    space = search_space(settings, context.start)
    oracle = _make_oracle(settings, objective, space, context.spec.seed)
    tuner_id = os.environ.get(TUNER_ID, "tuner0")
    return ProtocolTuner(oracle, directory=str(directory), project_name=f"{context.spec.name}-{tuner_id}",
                         overwrite=True)


def tune(spec: Spec, split: Split, protocol: Protocol, start: Hyperparameters, cache: EvaluationCache,
         reporter: Reporter) -> tuple[Hyperparameters, dict[str, Any]]:
    """Search [tuning]'s space with KerasTuner; return the best configuration and the trial record.

    In a distributed chief this call serves the oracle until the workers have run every trial.
    """
    from keras_tuner.errors import FatalError

    role = distributed_role()
    objective = f"val_{split.head.primary_metric}"
    context = TrialContext(spec, split, protocol, start, cache, objective)
    with _tuning_directory(spec) as directory, reporter.loop("tuning", spec.tuning.trials) as advance:
        def on_trial(trial_id: str, hp: Hyperparameters, evaluation: Evaluation) -> None:
            reporter.detail(f"trial {trial_id}: {hp.describe()}: {evaluation.primary_metric} "
                            f"{evaluation.describe_score()}")
            advance(1, f"trial {trial_id}")

        tuner = _make_tuner(context, directory, on_trial)
        if role == "chief":
            reporter.detail(f"tuning chief: serving the oracle on {os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]} "
                            f"until workers have run {spec.tuning.trials} trials")
            _serve_as_chief(tuner, advance, reporter)
        else:
            try:
                tuner.search(verbose=0)
            except FatalError:
                if tuner.failure is not None:
                    raise tuner.failure from None
                raise
        oracle = tuner.oracle
        trials = [_trial_record(oracle.trials[trial_id], objective) for trial_id in oracle.start_order]
        completed = [t for t in oracle.get_best_trials(len(oracle.trials)) if t.status == "COMPLETED"]
    if not completed:
        raise TuningError(f"tuning finished without a completed trial ({len(trials)} started); rerun with -v for the "
                          "trial errors")
    best = completed[0]
    chosen = hyperparameters_from_values(start, best.hyperparameters.values)
    record = {
        "enabled": True,
        "algorithm": spec.tuning.algorithm,
        "objective": objective,
        "direction": "max" if split.head.higher_is_better else "min",
        "trials_requested": spec.tuning.trials,
        "distributed": role == "chief",
        "start": start.to_json(),
        "space": _space_record(search_space(spec.tuning, start)),
        "trials": trials,
        "best_trial": best.trial_id,
        "best": chosen.to_json(),
    }
    reporter.detail(f"tuning chose trial {best.trial_id}: {chosen.describe()} "
                    f"({objective} {best.score:.4f} over {len(completed)} completed trial(s))")
    return chosen, record


def _serve_as_chief(tuner: Any, advance: Any, reporter: Reporter) -> None:
    """Block in KerasTuner's chief loop while a thread reports trials as workers finish them."""
    stop = threading.Event()
    oracle = tuner.oracle

    def watch() -> None:
        reported = 0
        while not stop.wait(1.0):
            ended = list(oracle.end_order)
            for trial_id in ended[reported:]:
                trial = oracle.trials[trial_id]
                if trial.score is None:
                    log.warning("tuning trial %s ended %s: %s", trial_id, trial.status, trial.message or "no score")
                score = "failed" if trial.score is None else f"{trial.score:.4f}"
                reporter.detail(f"trial {trial_id} ended ({trial.status}): {score}")
                advance(1, f"trial {trial_id}")
            reported = len(ended)

    watcher = threading.Thread(target=watch, name="webml-tuning-progress", daemon=True)
    watcher.start()
    try:
        tuner.search(verbose=0)
    finally:
        stop.set()
        watcher.join()


def _trial_record(trial: Any, objective: str) -> dict[str, Any]:
    metrics = {name: float(trial.metrics.get_last_value(name)) for name in sorted(trial.metrics.metrics)
               if trial.metrics.get_last_value(name) is not None}
    return {
        "trial_id": trial.trial_id,
        "status": str(trial.status),
        "hyperparameters": {name: _plain(value) for name, value in trial.hyperparameters.values.items()},
        "score": None if trial.score is None else float(trial.score),
        "std": metrics.get("std"),
        "best_epoch": int(metrics["best_epoch"]) if "best_epoch" in metrics else None,
        "metrics": {name: value for name, value in metrics.items() if name.startswith("val_")},
        "message": (trial.message or "").strip().splitlines()[-1] if trial.message else "",
    }


def _space_record(space: Any) -> list[dict[str, Any]]:
    rows = []
    for hp in space.space:
        config = hp.get_config()
        row = {"name": hp.name, "kind": type(hp).__name__.lower(), "default": _plain(hp.default)}
        if "values" in config:
            row["values"] = [_plain(v) for v in config["values"]]
        if "min_value" in config:
            row["range"] = [_plain(config["min_value"]), _plain(config["max_value"])]
            row["sampling"] = config.get("sampling") or "linear"
        if "value" in config:
            row["value"] = _plain(config["value"])
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


class _TuningDirectory:
    def __init__(self, spec: Spec) -> None:
        self.configured = spec.tuning.directory
        self.spec = spec
        self.path: Path | None = None

    def __enter__(self) -> Path:
        if self.configured:
            self.path = self.spec.resolve(self.configured)
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path = Path(tempfile.mkdtemp(prefix="webml-tuning-"))
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if not self.configured and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def _tuning_directory(spec: Spec) -> _TuningDirectory:
    """Return the folder KerasTuner writes its trial files to: tuning.directory, else a temporary one."""
    return _TuningDirectory(spec)


# Distributed workers ----------------------------------------------------------------------------

def run_worker(spec: Spec, dataset: Dataset, reporter: Reporter = SILENT) -> dict[str, Any]:
    """Run tuning trials for a distributed chief until its oracle reports the search as over.

    The worker splits the data and resolves the protocol exactly as the chief does (same spec,
    same seed), takes each trial's values from the chief's oracle, and reports the scores back.
    """
    if not spec.tuning.enabled:
        raise UsageError(f"{TUNER_ID}={os.environ.get(TUNER_ID)} makes this build a tuning worker, but "
                         "tuning.enabled is false in the spec; use the chief's spec")
    from keras_tuner.errors import FatalError

    split, protocol = train.prepare(spec, dataset)
    start = train.hyperparameters_from_spec(spec)
    context = TrialContext(spec, split, protocol, start, EvaluationCache(), f"val_{split.head.primary_metric}")
    finished: list[dict[str, Any]] = []
    tuner_id = os.environ[TUNER_ID]
    reporter.detail(f"tuning worker {tuner_id}: taking trials from the chief at "
                    f"{os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]}")
    with _tuning_directory(spec) as directory, reporter.loop("tuning trials", spec.tuning.trials) as advance:
        def on_trial(trial_id: str, hp: Hyperparameters, evaluation: Evaluation) -> None:
            finished.append({"trial_id": trial_id, "hyperparameters": hp.to_json(), "score": evaluation.mean,
                             "std": evaluation.std})
            reporter.detail(f"trial {trial_id}: {hp.describe()}: {evaluation.primary_metric} "
                            f"{evaluation.describe_score()}")
            advance(1, f"trial {trial_id}")

        tuner = _make_tuner(context, directory, on_trial)
        try:
            tuner.search(verbose=0)
        except FatalError:
            if tuner.failure is not None:
                raise tuner.failure from None
            raise
    return {"tuner_id": tuner_id, "trials": finished, "primary_metric": split.head.primary_metric}
