"""Training and conversion results reused from the cache (``builder.cache``) when their inputs match.

The training key covers everything that decides the trained weights. These are the spec
sections that training reads and the seed, the content of the data files, the source of the
training modules (``train``, ``workflow`` and what they import) and the versions of the
libraries that compute. So a template, the [app] section or the rendering code can change
without retraining, while a changed data file, seed or training setting retrains.

The conversion key covers the trained weights themselves (their SHA-256), the training key (the
rows that pruning fine-tunes on), the [optimize] section, the tolerance and row count of the
parity check after export, the conversion source and the converter's version. Browser measurement and verification always run: they check the
build in a real browser and depend on the bundled runtime and Chromium.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import logging
import pickle
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cache import StageCache, digest_json, digest_path, module_closure, source_digest
from .data import Dataset
from .progress import SILENT, Reporter
from .spec import Spec

log = logging.getLogger(__name__)

# Raised whenever the layout of a stored entry changes, so old entries are never misread.
ENTRY_FORMAT = 1
TRAINING_SECTIONS = ("data", "task", "validation", "model", "scale_up", "tuning")
TRAINING_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "keras-tuner")
CONVERSION_PACKAGES = ("tensorflow", "keras", "numpy", "tensorflowjs")
# Modules that hold conversion code outside the import closure of convert and optimize:
# build.convert_candidates drives the stage and site chooses the rows its parity check feeds.
CONVERSION_EXTRA_MODULES = ("build", "site")
# A reloaded model must reproduce the stored test outputs; weights restored bit for bit give 0.
RELOAD_TOLERANCE = 1e-6


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    versions = {"python": platform.python_version(), "machine": platform.machine()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def data_digest(spec: Spec) -> dict[str, str]:
    """Return the SHA-256 of every data source the spec reads (scikit-learn datasets by name)."""
    digests = {}
    for source in (spec.data.source, *spec.data.extra):
        if source.startswith("sklearn:"):
            digests[source] = "scikit-learn " + importlib.metadata.version("scikit-learn")
        else:
            path = spec.resolve(source)
            digests[source] = digest_path(path) if path.exists() else "missing"
    return digests


def weights_digest(model: Any) -> str:
    """Return the SHA-256 of a Keras model's weights: each array's dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        values = np.ascontiguousarray(array)
        digest.update(f"{values.dtype.str}{values.shape}".encode() + values.tobytes())
    return digest.hexdigest()


def training_inputs(spec: Spec) -> dict[str, Any]:
    """Describe everything the training result depends on; the training key is its digest."""
    sections = spec.to_dict()
    return {
        "format": ENTRY_FORMAT,
        "name": spec.name,
        "seed": spec.seed,
        "spec": {name: sections[name] for name in TRAINING_SECTIONS},
        "data": data_digest(spec),
        "code": source_digest(module_closure(["train", "workflow"])),
        "versions": package_versions(TRAINING_PACKAGES),
    }


def train(spec: Spec, dataset: Dataset, reporter: Reporter, cache: StageCache | None,
          run: Callable[[], Any]) -> Any:
    """Return the training result from the cache, or from ``run()`` and store it.

    ``run`` trains (``train.run`` with the search). Distributed tuning never uses the cache: a
    chief that skipped tuning would leave its workers waiting for trials.
    """
    from .workflow import distributed_role

    if cache is None:
        return run()
    if distributed_role() != "local":
        cache.note("train", "off", reason="distributed tuning")
        return run()
    inputs = training_inputs(spec)
    key = digest_json(inputs)
    folder = cache.lookup("train", key)
    if folder is not None:
        training, problem = _load_training(folder, spec, dataset)
        if training is not None:
            cache.note("train", "hit", key)
            reporter.detail(f"reused the trained model from the cache (key {key[:12]})")
            return training
        log.warning("cache entry %s is unusable (%s); training again", folder, problem)
        cache.discard("train", key)
    training = run()
    stored = cache.store("train", key, lambda target: _save_training(target, training), inputs)
    cache.note("train", "miss", key, "stored" if stored else "could not be stored")
    return training


def _save_training(folder: Path, training: Any) -> None:
    split = dataclasses.replace(training.split, dataset=None)
    portable = dataclasses.replace(training, model=None, split=split)
    with (folder / "training.pkl").open("wb") as stream:
        pickle.dump({"training": portable, "y_digest": _array_digest(training.split.dataset.y)}, stream,
                    protocol=pickle.HIGHEST_PROTOCOL)
    np.savez(folder / "weights.npz", *training.model.get_weights())


def _load_training(folder: Path, spec: Spec, dataset: Dataset) -> tuple[Any, str]:
    """Rebuild the training result and its model; return (None, reason) when the entry does not fit."""
    from . import train as train_module
    from .models import build_model

    try:
        with (folder / "training.pkl").open("rb") as stream:
            stored = pickle.load(stream)
        with np.load(folder / "weights.npz") as archive:
            weights = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError, ValueError) as exc:
        return None, f"cannot read it: {exc}"
    if stored["y_digest"] != _array_digest(dataset.y):
        return None, "the loaded targets differ from the stored ones"
    training = stored["training"]
    training.split = dataclasses.replace(training.split, dataset=dataset)
    train_module.configure_determinism(spec.seed)
    split = training.split
    model = build_model(split.input_shape, dataset.input_kind, split.head, training.hyperparameters,
                        split.preprocessing.normalization, split.preprocessing.target)
    try:
        model.set_weights(weights)
    except ValueError as exc:
        return None, f"its weights do not fit the model: {exc}"
    outputs = train_module.predict(model, split.x_test)
    difference = float(np.abs(outputs - training.test_outputs).max()) if len(outputs) else 0.0
    if not difference <= RELOAD_TOLERANCE:
        return None, f"the reloaded model's test outputs differ by {difference:.3g}"
    training.model = model
    return training, ""


def _array_digest(values: np.ndarray) -> str:
    values = np.ascontiguousarray(values)
    return hashlib.sha256(f"{values.dtype.str}{values.shape}".encode() + values.tobytes()).hexdigest()


def conversion_inputs(spec: Spec, training: Any, cache: StageCache) -> dict[str, Any]:
    """Describe everything the converted variants depend on; the conversion key is its digest."""
    sections = spec.to_dict()
    modules = sorted(set(module_closure(["convert", "optimize"])) | set(CONVERSION_EXTRA_MODULES))
    train_outcome = cache.outcomes.get("train")
    return {
        "format": ENTRY_FORMAT,
        "weights": weights_digest(training.model),
        "training": train_outcome.key if train_outcome else digest_json(training_inputs(spec)),
        # The parity check after export reads verify.tolerance and verify.golden rows.
        "spec": {"optimize": sections["optimize"],
                 "verify": {key: sections["verify"][key] for key in ("tolerance", "golden")}},
        "code": source_digest(modules),
        "versions": package_versions(CONVERSION_PACKAGES),
    }


def convert(spec: Spec, training: Any, work: Path, cache: StageCache | None, run: Callable[[], list[Any]],
            reporter: Reporter = SILENT) -> list[Any]:
    """Return the converted model variants from the cache, or from ``run()`` and store them.

    ``run`` is ``build.convert_candidates``; its variants live under ``work``. A hit copies the
    stored variant folders there and restores the pruning record into ``training.stages``.
    """
    if cache is None:
        return run()
    inputs = conversion_inputs(spec, training, cache)
    key = digest_json(inputs)
    folder = cache.lookup("convert", key)
    if folder is not None:
        candidates = _load_candidates(folder, work, training)
        if candidates is not None:
            cache.note("convert", "hit", key)
            reporter.detail(f"reused {len(candidates)} converted model variant(s) from the cache (key {key[:12]})")
            return candidates
        cache.discard("convert", key)
    candidates = run()
    stored = cache.store("convert", key, lambda target: _save_candidates(target, candidates, training), inputs)
    cache.note("convert", "miss", key, "stored" if stored else "could not be stored")
    return candidates


def _save_candidates(folder: Path, candidates: list[Any], training: Any) -> None:
    portable = []
    for variant in candidates:
        shutil.copytree(variant.directory, folder / "variants" / variant.name)
        portable.append(dataclasses.replace(variant, directory=Path(variant.name)))
    with (folder / "variants.pkl").open("wb") as stream:
        pickle.dump({"variants": portable, "pruning": training.stages.get("pruning")}, stream,
                    protocol=pickle.HIGHEST_PROTOCOL)


def _load_candidates(folder: Path, work: Path, training: Any) -> list[Any] | None:
    try:
        with (folder / "variants.pkl").open("rb") as stream:
            stored = pickle.load(stream)
        candidates = []
        for variant in stored["variants"]:
            target = work / "variants" / variant.name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(folder / "variants" / variant.name, target)
            candidates.append(dataclasses.replace(variant, directory=target))
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError) as exc:
        log.warning("cache entry %s is unusable (%s); converting again", folder, exc)
        return None
    if stored["pruning"] is not None:
        training.stages["pruning"] = stored["pruning"]
    return candidates


def annotate_report(report: dict[str, Any], training: Any, cache: StageCache | None, output: Path) -> None:
    """Add the weights' SHA-256 and the cache record to ``report``, and name the output folder
    (verification ran on the staging folder that became it)."""
    report["model"]["weights_sha256"] = weights_digest(training.model)
    report["cache"] = cache.to_json() if cache is not None else {"enabled": False, "directory": "", "stages": {}}
    if cache is not None:
        report["warnings"].extend(cache.warnings)
    if report.get("verification"):
        report["verification"]["dist"] = str(output)
