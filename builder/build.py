"""``webml build``: from a spec to a verified app folder.

Stages: load the data, train (baseline, validation, final model, test), export and convert the
model, bundle the runtime, render the site, verify it in Chromium, write the report, and swap
the new folder in. Nothing replaces the previous output until every stage has passed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import convert, render, report as report_module, site as site_module
from .bundle import bundle_app
from .data import load_dataset
from .errors import VerificationError
from .output import recover, replace_dir, staging_dir
from .progress import SILENT, Reporter
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


def build(spec: Spec, output: Path, *, reporter: Reporter = SILENT, verify: bool = True) -> BuildResult:
    """Build the app for ``spec`` into ``output``; raise a ``WebmlError`` subclass on failure."""
    timer = StageTimer(reporter)
    started = time.perf_counter()
    recover(output)

    timer.start("data", f"loading {spec.data.source}")
    dataset = load_dataset(spec)
    reporter.detail(f"{dataset.rows} rows, {dataset.input_kind} input, task {dataset.task}")

    timer.start("train", "training")
    from .workflow import search

    training = run_training(spec, dataset, reporter, search=search)
    reporter.detail(f"test {training.split.head.primary_metric}: {training.test_scores[training.split.head.primary_metric]:.4f}")

    staging = staging_dir(output)
    try:
        with tempfile.TemporaryDirectory(prefix="webml-work-") as work_name:
            work = Path(work_name)
            timer.start("convert", "exporting the SavedModel and converting it to a TF.js graph model")
            graph = _export_and_convert(spec, training, work, staging)
            model_info = {
                "url": "model/model.json",
                "format": "graph-model",
                "sha256": model_files_digest(graph.directory, graph.files),
                "bytes": sum((graph.directory / f).stat().st_size for f in graph.files),
                "weight_bytes": graph.weight_bytes,
                "variant": "float32",
                "input_name": graph.input_name,
                "ops": graph.ops,
            }
            reporter.detail(f"graph model: {len(graph.files)} files, {model_info['bytes'] / 1024:.0f} KiB, "
                            f"ops {', '.join(graph.ops)}")

            timer.start("bundle", "bundling the TF.js runtime and the app")
            backends = list(spec.app.backends)
            bundle = bundle_app(staging, backends, staging / "model")
            reporter.detail(f"runtime: kernels {', '.join(bundle.kernels or [])}")

            timer.start("render", "rendering the site")
            metadata = site_module.build_metadata(spec, training.split, training.model, model_info, backends)
            _render_site(spec, staging, metadata)
            precache = render.write_service_worker(staging, spec.name, bundle.wasm_files)

        verification = None
        if verify:
            timer.start("verify", "verifying the app in Chromium")
            verification = verify_site(staging, reporter=reporter)
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
                                            timer.seconds, staging)
        report_module.write_report(staging, report)
        replace_dir(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(output=output, report=report, verification=verification, warnings=report["warnings"])


def _export_and_convert(spec: Spec, training: TrainingResult, work: Path, staging: Path) -> convert.GraphModel:
    saved_model = work / "saved_model"
    convert.export_saved_model(training.model, saved_model)
    inputs = site_module.encode_raw(training.split, training.split.preprocessing,
                                    site_module.golden_inputs(spec, training.split))
    convert.check_saved_model(training.model, saved_model, inputs, spec.verify.tolerance)
    return convert.convert_saved_model(saved_model, staging / "model", shard_bytes=spec.optimize.shard_bytes)


def _render_site(spec: Spec, staging: Path, metadata: dict[str, Any]) -> None:
    title = metadata["title"]
    description = spec.app.description
    render.write_json(staging / "metadata.json", metadata)
    render.render_index(staging, metadata, description)
    render.write_manifest(staging, metadata, spec.app.short_name or title[:12], description, spec.app.background_color)
    render.write_icons(staging, title, spec.app.theme_color)
    render.write_theme(staging, spec.app.theme_color)
