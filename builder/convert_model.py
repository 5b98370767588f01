"""``webml convert``: a Keras or TensorFlow model file to TF.js models verified in the browser.

The format is detected from the file's content. What cannot be converted (Lambda and custom
layers in a file, layers that tfjs-layers lacks, ops that TF.js lacks) is rejected before anything
is written. The model is loaded and exported as a SavedModel, which becomes a graph model; a
layers model is written on request. Chromium loads every artifact on the WASM and CPU backends and
its outputs are compared with Python's on inputs generated from the model's input signature. On
request the app is rendered around the graph model and checked like ``webml test``. The output
folder is replaced only after every check has passed.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import convert, layers_format, modelfile, render
from .convert_app import AppPlan, load_schema, plan_app, write_app
from .convert_prepare import check_graph_ops, embedding_limit, generate_inputs, graph_ready, signature_specs, unsupported_ops
from .convert_reference import (Reference, keras_inputs, layers_order, python_reference, quantized_graph_reference,
                                quantized_layers_reference)
from .errors import ConversionError, ModelFileError, ParityError, UsageError, VerificationError, WebmlError
from .graph_model import rewrite_graph_model
from .model_check import CHECK_BACKENDS, Artifact, ParityCheck, check_artifacts
from .modelfile import SAVED_MODEL, LoadedModel, ModelSource, TensorSpec
from .native import import_tensorflow
from .output import check_parents, recover, replace_dir, staging_dir
from .progress import SILENT, Reporter

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "uint16", "uint8")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_SAMPLES = 8
DEFAULT_SHARD_BYTES = 4 * 1024 * 1024
LOOP_OPS = frozenset({"Enter", "Exit", "LoopCond", "NextIteration", "While", "StatelessWhile"})
REPORT_FILE = "conversion.json"
REPORT_SCHEMA = 1
FRAMEWORK_NAMES = {"keras": "Keras 3", "tf_keras": "tf_keras (Keras 2)", SAVED_MODEL: "TensorFlow"}


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of one conversion: the artifacts to write, their weight format and the check's strictness."""

    layers: bool = False
    quantization: str = "float32"
    shard_bytes: int = DEFAULT_SHARD_BYTES
    tolerance: float = DEFAULT_TOLERANCE
    samples: int = DEFAULT_SAMPLES
    seed: int = 42
    backends: tuple[str, ...] = CHECK_BACKENDS
    app_schema: Path | None = None
    name: str = ""


@dataclass
class ConvertResult:
    """The output folder, report, browser checks and warnings of a finished conversion."""

    output: Path
    report: dict[str, Any]
    checks: list[ParityCheck]
    warnings: list[str] = field(default_factory=list)


def default_output(model: Path) -> Path:
    """Return dist/NAME for a model path, NAME being its file or folder name without the suffix."""
    return Path("dist") / (app_name(Path(model).stem) or "model")


def app_name(text: str) -> str:
    """Turn a folder or file name into a name the app and its service worker cache can use."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return name[:64]


def convert_model(model: Path, output: Path, options: ConvertOptions = ConvertOptions(), *,
                  reporter: Reporter = SILENT, browser: Any = None) -> ConvertResult:
    """Convert ``model`` into ``output``; raise a ``WebmlError`` subclass when it cannot or the check fails.

    ``browser`` is a Playwright browser to check in; None launches Chromium for this call.
    """
    started = time.perf_counter()
    _check_options(options)
    source = modelfile.detect_format(Path(model))
    reporter.step(f"reading {model}: {source.description}")
    _check_output_folder(source.path, output)
    if options.layers and source.format == SAVED_MODEL:
        raise ModelFileError(f"{source.path}: a SavedModel holds a TensorFlow graph, not Keras layers, so it cannot "
                             "become a layers model; drop --format layers, or convert the model's .keras or .h5 file")
    if source.format != SAVED_MODEL:
        modelfile.check_lambda_layers(source)
    schema = load_schema(options.app_schema) if options.app_schema else None

    import_tensorflow()
    loaded = modelfile.load(source)
    reporter.detail(f"loaded with {FRAMEWORK_NAMES[loaded.framework]}: inputs "
                    f"{', '.join(_describe_spec(s) for s in loaded.inputs)}; outputs {', '.join(loaded.outputs)}")
    if options.layers:
        layers_format.check_support(source)
    recover(output)

    with tempfile.TemporaryDirectory(prefix="webml-convert-") as work_name:
        work = Path(work_name)
        reporter.step("exporting a SavedModel")
        graph_model, unrolled = graph_ready(loaded)
        saved = graph_model.export(work / "saved_model")
        signature = loaded.model if loaded.framework == SAVED_MODEL else modelfile.load_saved_model_signature(saved)
        specs, output_shapes = signature_specs(signature, [spec.name for spec in loaded.inputs])
        check_graph_ops(source.path, specs, unsupported_ops(signature))
        plan = plan_app(schema, specs, [output_shapes[k] for k in sorted(output_shapes, key=modelfile.output_order)],
                        source.path) if schema else None

        inputs = generate_inputs(specs, options.samples, options.seed, ranges=plan.ranges if plan else None,
                                 integer_high=embedding_limit(source))
        reporter.step(f"running the model in Python on {options.samples} generated inputs")
        reference = python_reference(loaded, signature, inputs, options.tolerance)

        staging = staging_dir(output)
        try:
            result = _write_and_check(source, loaded, saved, work, staging, output, options, inputs, reference, plan,
                                      reporter, browser)
            report = _report(source, loaded, specs, reference, options, unrolled, result, started)
            render.write_json(staging / REPORT_FILE, report)
            replace_dir(staging, output)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return ConvertResult(output=output, report=report, checks=result["checks"], warnings=report["warnings"])


def _check_options(options: ConvertOptions) -> None:
    if options.quantization not in QUANTIZATIONS:
        raise UsageError(f"--quantize {options.quantization}: invalid; use one of {', '.join(QUANTIZATIONS[1:])}")
    if options.shard_bytes < 1024:
        raise UsageError(f"--shard-bytes {options.shard_bytes}: too small; use 1024 bytes or more")
    if not 0 <= options.tolerance <= 1:
        raise UsageError(f"--tolerance {options.tolerance:g}: out of range; use a value from 0 to 1")
    if not 1 <= options.samples <= 256:
        raise UsageError(f"--samples {options.samples}: out of range; use 1 to 256 inputs")


def _describe_spec(spec: TensorSpec) -> str:
    shape = ", ".join("None" if d is None else str(d) for d in spec.shape)
    return f"{spec.name} ({shape}) {spec.dtype}"


def _check_output_folder(source: Path, output: Path) -> None:
    source_path, output_path = source.resolve(), output.resolve()
    if output_path == source_path or source_path in output_path.parents or output_path in source_path.parents:
        raise UsageError(f"{output}: the output folder must neither contain nor lie inside the model {source}; "
                         "pick another --output")
    check_parents(output)
    if output.exists():
        if not output.is_dir():
            raise UsageError(f"{output}: exists and is not a folder; pick another --output")
        if any(output.iterdir()) and not (output / REPORT_FILE).is_file():
            raise UsageError(f"{output}: a folder that `webml convert` did not write (no {REPORT_FILE}), which it "
                             "would replace; pick another --output or remove the folder")


# --- writing and checking ---------------------------------------------------------------------


def _write_and_check(source: ModelSource, loaded: LoadedModel, saved: Path, work: Path, staging: Path, output: Path,
                     options: ConvertOptions, inputs: dict[str, np.ndarray], reference: Reference,
                     plan: AppPlan | None, reporter: Reporter, browser: Any) -> dict[str, Any]:
    quantization = None if options.quantization == "float32" else options.quantization
    reporter.step("converting the SavedModel to a TF.js graph model")
    converted = _run_converter(source, saved, work / "converted")
    rewrite = rewrite_graph_model(converted, staging / "model", quantization=quantization, shard_bytes=options.shard_bytes)
    graph = convert.describe_graph_model(staging / "model")
    reporter.detail(f"graph model: {len(graph.files)} files, {_bytes(graph.directory, graph.files) / 1024:.0f} KiB, "
                    f"ops {', '.join(graph.ops)}")
    graph_artifact = _graph_artifact(graph, inputs, reference, options.tolerance)
    artifacts = [graph_artifact]
    quantization_errors: dict[str, float] = {}
    if quantization:
        graph_artifact.expected, quantization_errors["graph"] = quantized_graph_reference(
            source, converted, graph.directory, work, graph_artifact, tolerance=options.tolerance,
            shard_bytes=options.shard_bytes)
    layers = None
    if options.layers:
        reporter.step("writing the tfjs-layers model")
        layers = layers_format.write_layers_model(loaded, staging / "layers", quantization=quantization,
                                                  shard_bytes=options.shard_bytes)
        reporter.detail(f"layers model: {len(layers.files)} files, {_bytes(layers.directory, layers.files) / 1024:.0f} KiB, "
                        f"{len(layers.weight_names)} weights")
        layers_artifact = _layers_artifact(layers, loaded, inputs, reference.keras or {}, options.tolerance)
        if quantization:
            layers_artifact.expected, quantization_errors["layers"] = quantized_layers_reference(
                loaded, layers, layers_artifact, inputs)
        artifacts.append(layers_artifact)
    for kind, error in quantization_errors.items():
        reporter.detail(f"{quantization} weights change the {kind} model's outputs by up to {error:.3g} (measured in "
                        "Python on the stored weights)")

    reporter.step(f"checking the converted model{'s' if layers else ''} in Chromium on {', '.join(options.backends)}")
    checks = check_artifacts(artifacts, backends=options.backends, reporter=reporter, browser=browser)
    failed = [check for check in checks if not check.passed]
    if failed:
        raise _check_failure(failed, len(checks), graph, output)

    app = None
    if plan is not None:
        app = _write_app(staging, output, plan, options, graph, inputs, graph_artifact.expected[0], reporter, browser)
    return {"graph": graph, "layers": layers, "checks": checks, "rewrite": rewrite, "app": app,
            "quantization_errors": quantization_errors}


def _run_converter(source: ModelSource, saved: Path, directory: Path) -> Path:
    """Convert the SavedModel with float32 weights; ``rewrite_graph_model`` quantizes and shards them afterwards."""
    try:
        convert.convert_saved_model(saved, directory)
    except (AssertionError, KeyError, TypeError, NotImplementedError) as exc:
        raise ConversionError(f"{source.path}: the TF.js converter failed: {type(exc).__name__}: {exc}; rerun with -v "
                              "for the converter log") from exc
    return directory


def _bytes(directory: Path, files: list[str]) -> int:
    return sum((directory / name).stat().st_size for name in files)


def _graph_artifact(graph: convert.GraphModel, inputs: dict[str, np.ndarray], reference: Reference,
                    tolerance: float) -> Artifact:
    import json

    signature = json.loads((graph.directory / "model.json").read_text()).get("signature", {})
    feeds = []
    for name, values in inputs.items():
        entry = signature.get("inputs", {}).get(name)
        if entry is None:
            raise ConversionError(f"the graph model's signature has no input '{name}' (it has "
                                  f"{', '.join(signature.get('inputs', {})) or 'none'}); report this with the model")
        feeds.append((entry["name"], values))
    fetches = []
    for key in reference.keys:
        entry = signature.get("outputs", {}).get(key)
        if entry is None:
            raise ConversionError(f"the graph model's signature has no output '{key}'; report this with the model")
        fetches.append(entry["name"])
    return Artifact(kind="graph", directory=graph.directory, inputs=feeds, outputs=fetches, labels=list(reference.keys),
                    expected=[reference.saved[key] for key in reference.keys], tolerance=tolerance)


def _layers_artifact(layers: layers_format.LayersModel, loaded: LoadedModel, inputs: dict[str, np.ndarray],
                     keras_outputs: dict[str, np.ndarray], tolerance: float) -> Artifact:
    by_name = keras_inputs(loaded, inputs)
    if len(layers.input_names) == 1 and len(by_name) == 1:
        feeds = [(layers.input_names[0], next(iter(by_name.values())))]
    else:
        feeds = [(name, by_name[name]) for name in layers.input_names]
    return Artifact(kind="layers", directory=layers.directory, inputs=feeds, outputs=layers.output_names,
                    labels=layers.output_names, expected=layers_order(keras_outputs, layers), tolerance=tolerance)


def _check_failure(failed: list[ParityCheck], total: int, graph: convert.GraphModel, output: Path) -> WebmlError:
    compared = [check for check in failed if not check.error]
    if compared:
        worst = max(compared, key=lambda check: check.max_abs_diff)
        return ParityError(
            f"the converted {worst.artifact} model does not match the Python model: max |diff| {worst.max_abs_diff:.3g} "
            f"> {worst.tolerance:.2g} on {worst.backend} (output '{worst.output}'); {len(failed)} of {total} browser "
            f"checks failed and {output} was not written", worst.max_abs_diff)
    first = failed[0]
    hint = ""
    loops = sorted(LOOP_OPS & set(graph.ops))
    if first.artifact == "graph" and loops:
        hint = (f"; the graph runs a while loop ({', '.join(loops)}), which TF.js 4.22 fails on for recurrent "
                "layers: export the model with unroll=True on its GRU and LSTM layers")
    return ConversionError(f"{first.detail} (on {first.backend}){hint}; {len(failed)} of {total} browser checks failed "
                           f"and {output} was not written")


def _write_app(staging: Path, output: Path, plan: AppPlan, options: ConvertOptions, graph: convert.GraphModel,
               inputs: dict[str, np.ndarray], outputs: np.ndarray, reporter: Reporter, browser: Any) -> Any:
    from .build import model_files_digest
    from .verify import verify_site

    loops = sorted(LOOP_OPS & set(graph.ops))
    if loops:
        raise ConversionError(f"the graph model runs a while loop ({', '.join(loops)}), which the app's synchronous "
                              "predict cannot run; convert without --app, or unroll the recurrent layers")
    reporter.step("rendering the app")
    name = options.name or app_name(output.name) or "model"
    model_info = {
        "url": "model/model.json",
        "format": "graph-model",
        "sha256": model_files_digest(graph.directory, graph.files),
        "bytes": _bytes(graph.directory, graph.files),
        "weight_bytes": graph.weight_bytes,
        "variant": options.quantization,
        "input_name": graph.input_name,
        "ops": graph.ops,
    }
    batch = next(iter(inputs.values()))
    write_app(staging, plan, name=name, model_info=model_info, inputs=batch, outputs=outputs, tolerance=options.tolerance)
    reporter.step("checking the app in Chromium")
    app = verify_site(staging, reporter=reporter, browser=browser)
    for check in app.checks:
        reporter.detail(f"{check.status:7} {check.name}: {check.detail}")
    if not app.passed:
        failed = [check for check in app.checks if check.status == "failed"]
        raise VerificationError(f"the app's browser check failed: {failed[0].name}: {failed[0].detail}; {output} "
                                "was not written")
    return app


def _report(source: ModelSource, loaded: LoadedModel, specs: list[TensorSpec], reference: Reference,
            options: ConvertOptions, unrolled: list[str], result: dict[str, Any], started: float) -> dict[str, Any]:
    from .report import package_versions

    graph, layers, checks, app = result["graph"], result["layers"], result["checks"], result["app"]
    artifacts = {"graph": {"url": "model/model.json", "files": graph.files, "bytes": _bytes(graph.directory, graph.files),
                           "weight_bytes": graph.weight_bytes, "ops": graph.ops}}
    if layers is not None:
        artifacts["layers"] = {"url": "layers/model.json", "files": layers.files,
                               "bytes": _bytes(layers.directory, layers.files), "weights": layers.weight_names}
    warnings: list[str] = []
    if unrolled:
        warnings.append(f"the graph model runs {', '.join(unrolled)} unrolled, because TF.js 4.22 fails on the while "
                        "loop of recurrent layers; its graph holds their ops once per time step")
    diffs = [check.max_abs_diff for check in checks]
    return {
        "schema": REPORT_SCHEMA,
        "generator": "webml",
        "source": {"path": str(source.path), "format": source.format, "description": source.description,
                   "keras_version": source.keras_version, "framework": loaded.framework},
        "inputs": [asdict(spec) for spec in specs],
        "outputs": reference.keys,
        "artifacts": artifacts,
        "quantization": {"dtype": options.quantization, "max_abs_error": result["quantization_errors"]},
        "shard_bytes": options.shard_bytes,
        "rewrites": {"unrolled_layers": unrolled, "split_fused_matmuls": result["rewrite"].split_nodes,
                     "removed_duplicate_constants": result["rewrite"].removed_constants},
        "verification": {
            "samples": options.samples, "seed": options.seed, "tolerance": options.tolerance,
            "export_max_abs_diff": reference.export_difference,
            "max_abs_diff": max(diffs) if diffs else None, "checks": [check.to_json() for check in checks],
        },
        "app": app.to_json() if app is not None else None,
        "versions": package_versions(),
        "timings_seconds": {"total": round(time.perf_counter() - started, 3)},
        "warnings": warnings,
    }
