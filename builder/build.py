"""``webml build``: from a spec to a verified app folder.

Stages: load the data, train (baseline, validation, final model, test), export and convert the
model, bundle the runtime, render the site, verify it in Chromium, write the report, and swap
the new folder in. Nothing replaces the previous output until every stage has passed. An A/B
build (``app.ab_variants``) installs two model variants instead of the selected one (builder/ab.py).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ab, convert, optimize, render, report as report_module, site as site_module, stage_cache, tasks, verify
from .bundle import bundle_app
from .cache import StageCache
from .data import load_dataset
from .errors import ParityError, VerificationError
from .graph_model import load_graph_model
from .output import check_target, recover, replace_dir, staging_dir, work_dir
from .progress import SILENT, Reporter
from .sensitivity import sample_rows
from .spec import Spec
from .train import TrainingResult, run as run_training
from .verify import VerifyReport, verify_site

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a finished build wrote and measured."""

    output: Path
    report: dict[str, Any]
    verification: VerifyReport | None
    warnings: list[str] = field(default_factory=list)
    # Set instead of an output when this process ran as a distributed tuning worker.
    worker: dict[str, Any] | None = None


class StageTimer:
    """Records the wall time of each named stage."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._started = 0.0

    def start(self, name: str, message: str) -> None:
        self.stop()
        self._name = name
        self._started = time.perf_counter()
        self.reporter.step(message)

    def stop(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._started, 3)
            self._name = None


def model_files_digest(directory: Path, files: list[str]) -> str:
    """Hash a converted model's files (model.json and weight shards) into one version string."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + bytes.fromhex(render.file_sha256(directory / name)))
    return digest.hexdigest()


def build(spec: Spec, output: Path, *, reporter: Reporter = SILENT, verify: bool = True,
          cache: StageCache | None = None) -> BuildResult:
    """Build the app for ``spec`` into ``output``; raise a ``WebmlError`` subclass on failure.

    With ``cache``, training and conversion results are reused when their inputs are unchanged
    (see ``stage_cache``). In a distributed tuning worker (see ``workflow.distributed_role``) the
    build only runs tuning trials for the chief. It then returns a result with ``worker`` set and
    leaves ``output`` alone.
    """
    from .workflow import distributed_role, run_worker, search

    timer = StageTimer(reporter)
    started = time.perf_counter()
    worker = distributed_role() == "worker"
    if not worker:
        recover(output)
        check_target(output)

    timer.start("data", f"loading {spec.data.source}")
    dataset = load_dataset(spec)
    reporter.detail(f"{dataset.rows} rows, {dataset.input_kind} input, task {dataset.task}")
    for path, rows in dataset.extra_rows:
        reporter.detail(f"including {rows} row{'s' if rows != 1 else ''} from {path} (data.extra)")
    # Warnings are shown as they arise, so a build that fails later still shows them.
    for warning in dataset.warnings:
        reporter.warn(warning)

    if worker:
        timer.start("tune", "running tuning trials for the chief")
        summary = run_worker(spec, dataset, reporter)
        timer.stop()
        return BuildResult(output=output, report={}, verification=None, worker=summary)

    timer.start("train", "training")
    training = stage_cache.train(spec, dataset, reporter, cache,
                                 lambda: run_training(spec, dataset, reporter, search=search))
    reporter.detail(f"test {training.split.head.primary_metric}: {training.test_scores[training.split.head.primary_metric]:.4f}")
    for warning in training.warnings:
        if warning not in dataset.warnings:
            reporter.warn(warning)

    staging = staging_dir(output)
    try:
        with work_dir(output) as work:
            timer.start("convert", "exporting the SavedModel and converting it to a TF.js graph model")
            candidates = stage_cache.convert(spec, training, work, cache,
                                             lambda: convert_candidates(spec, training, work, reporter), reporter)

            timer.start("bundle", "bundling the TF.js runtime and the app")
            # Quantization and pruning change weights, not ops, so every variant needs the kernels
            # of the float32 conversion.
            float32 = next(v for v in candidates if v.name == "float32")
            bundle = bundle_app(staging, list(spec.app.backends), float32.directory)
            backends = [b for b in spec.app.backends if b not in bundle.missing_kernels]
            reporter.detail(f"runtime: kernels {', '.join(bundle.kernels or [])}")
            for warning in bundle.warnings():
                reporter.warn(warning)

            timer.start("optimize", f"measuring {len(candidates)} model variant(s) in Chromium")
            optimization = measure_and_select(spec, training, candidates, staging, backends, reporter)
            shipped = ab.shipped_variants(spec, candidates, optimization["chosen"])
            for variant_id, variant in shipped:
                _install_model(variant.directory, variant.files, staging / ab.MODEL_DIRS[variant_id])

            timer.start("render", "rendering the site")
            installed = _describe_shipped(spec, training, staging, shipped)
            _, _, model_info, reference = installed[0]
            metadata = site_module.build_metadata(spec, training.split, reference, model_info, backends)
            if len(installed) > 1:
                metadata["ab"] = ab.ab_metadata(spec, training.split, installed)
                optimization["record"]["ab"] = ab.ab_record(spec, shipped)
                budget_warnings = ab.budget_warnings(shipped, optimization["record"]["metric"])
                for warning in budget_warnings:
                    reporter.warn(warning)
                training.warnings.extend(budget_warnings)
                reporter.detail("A/B: " + ", ".join(f"{variant_id} = {variant.name}" for variant_id, variant in shipped)
                                + f", {spec.app.ab_split:.0%} of clients on b")
            _render_site(spec, staging, metadata)
            precache = render.write_service_worker(staging, spec.name, bundle.wasm_files)

        verification = None
        if verify:
            timer.start("verify", "verifying the app in Chromium")
            verification = verify_site(staging, offline=spec.verify.offline, reporter=reporter)
            for check in verification.checks:
                reporter.detail(f"{check.status:7} {check.name}: {check.detail}")
            if not verification.passed:
                failed = [c for c in verification.checks if c.status == "failed"]
                raise VerificationError(
                    f"browser verification failed: {failed[0].name}: {failed[0].detail}; the previous {output} "
                    "is unchanged (run `webml test` on a build for the full table)"
                )
        timer.stop()
        timer.seconds["total"] = round(time.perf_counter() - started, 3)
        report = report_module.build_report(spec, dataset, training, metadata, precache, bundle, verification,
                                            timer.seconds, staging, optimization=optimization["record"])
        stage_cache.annotate_report(report, training, cache, output)
        report_module.write_report(staging, report)
        replace_dir(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(output=output, report=report, verification=verification, warnings=report["warnings"])


def convert_candidates(spec: Spec, training: TrainingResult, work: Path,
                       reporter: Reporter = SILENT) -> list[optimize.Variant]:
    """Export and convert the trained model (and its pruned copy) into every requested variant."""
    max_error = spec.optimize.max_quantization_error
    golden = site_module.encode_raw(training.split, training.split.preprocessing,
                                    site_module.golden_inputs(spec, training.split))
    split = training.split
    # Training rows, never test rows: the test set stays held out for the variant measurements.
    samples = sample_rows(split.x_train)
    probabilities = split.head.activation in ("softmax", "sigmoid")
    models = [(training.model, False)]
    if spec.optimize.pruning_sparsity > 0:
        pruned, record = optimize.prune_model(
            training.model, split.x_train, split.y_train, split.dataset.task, split.classes,
            sparsity=spec.optimize.pruning_sparsity, epochs=spec.optimize.pruning_epochs,
            batch_size=training.hyperparameters.batch_size, learning_rate=training.hyperparameters.learning_rate / 10,
            seed=spec.seed, reporter=reporter)
        training.stages["pruning"] = record
        reporter.detail(f"pruned to {record['reached']:.1%} sparsity (target {record['target']:.0%})")
        models.append((pruned, True))
    candidates: list[optimize.Variant] = []
    for model, pruned in models:
        label = "pruned" if pruned else "trained"
        saved_model = work / f"saved_model-{label}"
        convert.export_saved_model(model, saved_model)
        convert.check_saved_model(model, saved_model, golden, spec.verify.tolerance)
        float32_dir = work / f"float32-{label}"
        graph = convert.convert_saved_model(saved_model, float32_dir, shard_bytes=spec.optimize.shard_bytes)
        if not pruned:
            reporter.detail(f"graph model: {len(graph.files)} files, {graph.weight_bytes / 1024:.0f} KiB of weights, "
                            f"ops {', '.join(graph.ops)}")
        candidates += optimize.make_variants(saved_model, float32_dir, work / "variants", list(spec.optimize.variants),
                                             max_error, spec.optimize.shard_bytes, pruned=pruned, samples=samples,
                                             probabilities=probabilities)
    for variant in candidates:
        for plan in variant.protected:
            reporter.detail(f"{variant.name}: {plan.name} kept at {plan.dtype} ({plan.reason})")
    return candidates


def measure_and_select(spec: Spec, training: TrainingResult, candidates: list[optimize.Variant], staging: Path,
                       backends: list[str], reporter: Reporter = SILENT, browser: Any = None) -> dict[str, Any]:
    """Measure every variant on the test set in Chromium and pick the one to ship.

    ``staging`` must already hold the bundled app (``bundle_app``); it receives a provisional site
    (the float32 model) that serves the measuring page. Returns {"chosen": Variant, "record": ...}.
    """
    split = training.split
    task = split.dataset.task
    measuring = staging / "variants"
    for variant in candidates:
        _install_model(variant.directory, variant.files, measuring / variant.name)
    # The page needs a model and metadata to start; the float32 variant serves until one is chosen.
    float32 = next(v for v in candidates if v.name == "float32")
    _install_model(float32.directory, float32.files, staging / "model")
    reference = load_graph_model(staging / "model")
    provisional = site_module.build_metadata(spec, split, reference, _model_info(staging / "model", float32), backends)
    _render_site(spec, staging, provisional)

    for variant in candidates:
        outputs = load_graph_model(variant.directory)(split.x_test)
        variant.python_metric = tasks.score(task, split.y_test, outputs, spec.task.threshold)[split.head.primary_metric]
    backend = "wasm" if "wasm" in backends else backends[0]
    measured = verify.measure_models(staging, {v.name: f"variants/{v.name}/model.json" for v in candidates},
                                     site_module.test_inputs(split), backend=backend, reporter=reporter,
                                     browser=browser)
    float32_outputs = np.asarray(measured["float32"], dtype=np.float64)
    for variant in candidates:
        outputs = np.asarray(measured[variant.name], dtype=np.float64)
        variant.browser_scores = tasks.score(task, split.y_test, outputs, spec.task.threshold)
        variant.browser_metric = variant.browser_scores[split.head.primary_metric]
        variant.max_abs_diff = float(np.abs(outputs - float32_outputs).max())
    chosen, reason = optimize.select_variant(candidates, split.head, spec.optimize.max_metric_drop)
    for variant in candidates:
        reporter.detail(f"{variant.name:16} {variant.bytes_raw:>9} B raw {variant.bytes_gzip:>9} B gzip  "
                        f"{split.head.primary_metric} {variant.browser_metric:.4f}  max |diff| {variant.max_abs_diff:.2e}"
                        + ("  <- ships" if variant.selected else ""))
    reporter.detail(reason)
    shutil.rmtree(measuring)
    record = {
        "backend": backend, "metric": split.head.primary_metric, "reason": reason, "selected": chosen.name,
        "max_metric_drop": spec.optimize.max_metric_drop,
        "max_quantization_error": spec.optimize.max_quantization_error,
        "pruning": training.stages.get("pruning"),
        "variants": [v.to_json() for v in candidates],
    }
    return {"chosen": chosen, "record": record}


def _describe_shipped(spec: Spec, training: TrainingResult, staging: Path,
                      shipped: list[tuple[str, optimize.Variant]]) -> list[tuple[str, optimize.Variant, dict[str, Any], Any]]:
    """Load each installed model as its Python reference, check it, and describe it for metadata.json.

    Returns (id, variant, model info, reference) per shipped variant, variant "a" first.
    """
    installed = []
    for variant_id, variant in shipped:
        directory = staging / ab.MODEL_DIRS[variant_id]
        reference = load_graph_model(directory)
        _check_against_keras(spec, training, reference, variant)
        info = _model_info(directory, variant, f"{ab.MODEL_DIRS[variant_id]}/model.json")
        installed.append((variant_id, variant, info, reference))
    return installed


def _install_model(source: Path, files: list[str], target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in files:
        shutil.copy2(source / name, target / name)


def _model_info(directory: Path, variant: optimize.Variant, url: str = "model/model.json") -> dict[str, Any]:
    graph = convert.describe_graph_model(directory)
    return {
        "url": url,
        "format": "graph-model",
        "sha256": model_files_digest(directory, graph.files),
        "bytes": sum((directory / f).stat().st_size for f in graph.files),
        "weight_bytes": graph.weight_bytes,
        "variant": variant.name,
        "input_name": graph.input_name,
        "ops": graph.ops,
    }


def _check_against_keras(spec: Spec, training: TrainingResult, reference: Any, chosen: optimize.Variant) -> None:
    """The float32 conversion must reproduce the Keras model; a compressed one is measured instead."""
    if chosen.name != "float32":
        return
    golden = site_module.encode_raw(training.split, training.split.preprocessing,
                                    site_module.golden_inputs(spec, training.split))
    expected = np.asarray(training.model(golden, training=False))
    diff = float(np.abs(reference(golden) - expected).max())
    if diff > spec.verify.tolerance:
        raise ParityError(f"the converted graph model differs from the Keras model by up to {diff:.3g} "
                          f"(tolerance {spec.verify.tolerance:g}); the conversion is wrong", diff)


def _render_site(spec: Spec, staging: Path, metadata: dict[str, Any]) -> None:
    title = metadata["title"]
    description = spec.app.description
    render.write_json(staging / "metadata.json", metadata)
    render.render_index(staging, metadata, description)
    render.write_manifest(staging, metadata, spec.app.short_name or title[:12], description, spec.app.background_color)
    render.write_icons(staging, title, spec.app.theme_color)
    render.write_theme(staging, spec.app.theme_color)
