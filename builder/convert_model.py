"""``webml convert``: a Keras or TensorFlow model file to TF.js models verified in the browser.

Stages: detect the format from the file's content; reject what cannot be converted (Lambda and
custom layers in a file, layers that tfjs-layers lacks, ops that TF.js lacks) before anything is
written; load the model; export a SavedModel and convert it to a graph model, and on request write
a layers model; load every artifact in Chromium on the WASM and CPU backends and compare its
outputs with Python's on inputs generated from the model's input signature; on request render the
app around the graph model and check it like ``webml test``; then swap the output folder in.
The output folder is replaced only after every check has passed.
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
from .errors import ConversionError, ModelFileError, ParityError, UsageError, VerificationError, WebmlError
from .graph_model import rewrite_graph_model, run_graph_model
from .model_check import CHECK_BACKENDS, Artifact, ParityCheck, check_artifacts, max_abs_difference
from .modelfile import SAVED_MODEL, LoadedModel, ModelSource, TensorSpec
from .native import captured_native_output, import_tensorflow
from .output import recover, replace_dir, staging_dir
from .progress import SILENT, Reporter

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "uint16", "uint8")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_SAMPLES = 8
DEFAULT_SHARD_BYTES = 4 * 1024 * 1024
# Generated inputs: a free dimension other than the batch (a sequence length) gets this size.
FREE_DIMENSION = 8
# Float inputs are drawn uniformly from this range unless the app schema gives one.
DEFAULT_RANGE = (-1.0, 1.0)
# NOTE: an integer input is drawn from [0, 2) unless the model feeds it to an Embedding, whose
# input_dim bounds it; a model that indexes something else with it may need other values.
INTEGER_HIGH = 2
RECURRENT_CLASSES = ("GRU", "LSTM", "SimpleRNN")
LOOP_OPS = frozenset({"Enter", "Exit", "LoopCond", "NextIteration", "While", "StatelessWhile"})
REPORT_FILE = "conversion.json"
REPORT_SCHEMA = 1
FRAMEWORK_NAMES = {"keras": "Keras 3", "tf_keras": "tf_keras (Keras 2)", SAVED_MODEL: "TensorFlow"}


@dataclass(frozen=True)
class ConvertOptions:
    """What ``webml convert`` writes and how strictly it checks it."""

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
    """What a finished conversion wrote and measured."""

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
        graph_model, unrolled = _graph_ready(loaded)
        if unrolled:
            reporter.detail(f"unrolled {', '.join(unrolled)}: TF.js 4.22 fails on the while loop of recurrent layers")
        saved = graph_model.export(work / "saved_model")
        signature = loaded.model if loaded.framework == SAVED_MODEL else modelfile.load_saved_model_signature(saved)
        specs, output_shapes = _signature_specs(signature, [spec.name for spec in loaded.inputs])
        _check_graph_ops(source.path, specs, _unsupported_ops(signature))
        plan = plan_app(schema, specs, [output_shapes[k] for k in sorted(output_shapes, key=modelfile.output_order)],
                        source.path) if schema else None

        inputs = generate_inputs(specs, options.samples, options.seed, ranges=plan.ranges if plan else None,
                                 integer_high=_embedding_limit(source))
        reporter.step(f"running the model in Python on {options.samples} generated inputs")
        reference = _python_reference(loaded, signature, inputs, options.tolerance)

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
    if output.exists():
        if not output.is_dir():
            raise UsageError(f"{output}: exists and is not a folder; pick another --output")
        if any(output.iterdir()) and not (output / REPORT_FILE).is_file():
            raise UsageError(f"{output}: a folder that `webml convert` did not write (no {REPORT_FILE}), which it "
                             "would replace; pick another --output or remove the folder")


# --- preparing the graph ----------------------------------------------------------------------


def _graph_ready(loaded: LoadedModel) -> tuple[LoadedModel, list[str]]:
    """Return the model to export for the graph model, with the loops of recurrent layers unrolled.

    TF.js 4.22 fails to run the while loop that a GRU or LSTM exports ("Cannot compute the
    outputs ... LoopExecuted"): always for Keras 3, and for tf_keras models with stacked
    recurrent layers. An unrolled layer computes the same function without the loop; the
    browser check compares the result with the original model, not with the clone.
    """
    if loaded.framework == SAVED_MODEL:
        return loaded, []
    if loaded.framework == "tf_keras":
        import tf_keras as keras
    else:
        import keras

    model = loaded.model
    looping = [layer for layer in _all_layers(model)
               if layer.__class__.__name__ in RECURRENT_CLASSES and not layer.get_config().get("unroll")]
    if not looping:
        return loaded, []
    for layer in looping:
        try:
            steps = layer.input.shape[1]
        except (AttributeError, ValueError, IndexError):
            steps = None
        if steps is None:
            raise ModelFileError(
                f"{loaded.source.path}: layer '{layer.name}' ({layer.__class__.__name__}) runs over a sequence of "
                "variable length; TF.js 4.22 fails on the while loop it exports and webml unrolls the loop only "
                "over a fixed length, so give the input a fixed number of steps, e.g. keras.Input(shape=(50, 8))"
            )

    def unroll(layer: Any) -> Any:
        config = layer.get_config()
        _set_unroll(config)
        return layer.__class__.from_config(config)

    with captured_native_output("cloning the model with unrolled loops"):
        clone = keras.models.clone_model(model, clone_function=unroll)
        clone.set_weights(model.get_weights())
        for layer in _all_layers(clone):
            # Normalization derives its mean and variance tensors from its weights here.
            if hasattr(layer, "finalize_state") and layer.__class__.__name__ == "Normalization":
                layer.finalize_state()
    return LoadedModel(loaded.source, loaded.framework, clone, loaded.inputs, loaded.outputs), [
        f"'{layer.name}' ({layer.__class__.__name__})" for layer in looping]


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        for key in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, key, None)
            if inner is not None and hasattr(inner, "get_config"):
                layers.append(inner)
    return layers


def _set_unroll(config: dict[str, Any]) -> None:
    if "unroll" in config:
        config["unroll"] = True
    for key in ("layer", "backward_layer"):
        inner = config.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            _set_unroll(inner["config"])


def _signature_specs(signature: Any, order: list[str]) -> tuple[list[TensorSpec], dict[str, tuple[int | None, ...]]]:
    """Return the serving signature's inputs, in ``order`` where it names them, and its output shapes."""
    function = signature.function
    specs = [TensorSpec(name=name, shape=tuple(None if d is None else int(d) for d in spec.shape), dtype=spec.dtype.name)
             for name, spec in function.structured_input_signature[1].items()]
    specs.sort(key=lambda spec: order.index(spec.name) if spec.name in order else len(order))
    outputs = {name: tuple(None if d is None else int(d) for d in spec.shape)
               for name, spec in function.structured_outputs.items()}
    return specs, outputs


def _unsupported_ops(signature: Any) -> list[str]:
    """Return the ops of the frozen serving graph that TF.js 4.22 does not implement, as the converter checks them."""
    from tensorflow.python.framework import convert_to_constants
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import validate

    try:
        with captured_native_output("freezing the graph"):
            frozen = convert_to_constants.convert_variables_to_constants_v2(signature.function)
            return sorted(validate(frozen.graph.as_graph_def(), False, False))
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        # The converter runs the same check and reports what this one missed.
        log.debug("freezing the graph for the op check failed: %s", exc)
        return []


def _check_graph_ops(path: Path, specs: list[TensorSpec], unsupported: list[str]) -> None:
    strings = [spec.name for spec in specs if spec.dtype == "string"]
    if strings:
        ops = (f"the graph uses ops that TF.js 4.22 does not implement: {', '.join(unsupported)}" if unsupported else
               "webml cannot generate or verify text inputs")
        raise ModelFileError(f"{path}: input '{strings[0]}' takes strings and {ops}; move the text preprocessing "
                             "(TextVectorization, StringLookup) out of the model, run it in the page, and convert a "
                             "model that takes the integer token ids")
    if unsupported:
        raise ModelFileError(f"{path}: the model uses ops that TF.js 4.22 does not implement: {', '.join(unsupported)}; "
                             "replace the layers that use them with built-in layers and convert again")


def _embedding_limit(source: ModelSource) -> int:
    limits = [int(layer.config["input_dim"]) for layer in modelfile.iter_layers(source.config or {})
              if layer.class_name == "Embedding" and isinstance(layer.config.get("input_dim"), int)]
    return min(limits) if limits else INTEGER_HIGH


def generate_inputs(specs: list[TensorSpec], samples: int, seed: int, *,
                    ranges: tuple[tuple[float, float], ...] | None = None,
                    integer_high: int = INTEGER_HIGH) -> dict[str, np.ndarray]:
    """Draw one batch per input from its signature: ``samples`` rows, free dimensions of ``FREE_DIMENSION``.

    ``ranges`` holds one (low, high) for every input value along the last axis, or a single
    (low, high) for all of them; it applies to float inputs only.
    """
    rng = np.random.default_rng(seed)
    batch: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = [samples if index == 0 and dim is None else FREE_DIMENSION if dim is None else dim
                 for index, dim in enumerate(spec.shape)]
        dtype = np.dtype(spec.dtype) if spec.dtype != "string" else None
        if dtype is not None and dtype.kind == "f":
            low, high = _bounds(ranges, shape)
            values = low + (high - low) * rng.random(shape)
            batch[spec.name] = values.astype(np.float32 if dtype.itemsize <= 4 else dtype)
        elif dtype is not None and dtype.kind in "iu":
            batch[spec.name] = rng.integers(0, integer_high, size=shape).astype(dtype)
        elif dtype is not None and dtype.kind == "b":
            batch[spec.name] = rng.random(shape) < 0.5
        else:
            raise ModelFileError(f"input '{spec.name}' has dtype {spec.dtype}, which webml cannot generate inputs for")
    return batch


def _bounds(ranges: tuple[tuple[float, float], ...] | None, shape: list[int]) -> tuple[Any, Any]:
    if not ranges:
        return DEFAULT_RANGE
    if len(ranges) == 1:
        return ranges[0]
    lows = np.asarray([r[0] for r in ranges], dtype=np.float64)
    highs = np.asarray([r[1] for r in ranges], dtype=np.float64)
    if not shape or shape[-1] != len(ranges):
        raise ConversionError(f"{len(ranges)} feature ranges do not fit an input of shape {shape}")
    return lows, highs


# --- Python reference -------------------------------------------------------------------------


@dataclass
class Reference:
    """Python's outputs on the generated inputs: the SavedModel's by signature key, the Keras model's by output name."""

    keys: list[str]
    saved: dict[str, np.ndarray]
    keras: dict[str, np.ndarray] | None
    export_difference: float


def _keras_inputs(loaded: LoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(loaded.inputs) == 1 and len(inputs) == 1:
        return {loaded.inputs[0].name: next(iter(inputs.values()))}
    missing = [spec.name for spec in loaded.inputs if spec.name not in inputs]
    if missing:
        raise ConversionError(f"the exported signature's inputs ({', '.join(inputs)}) do not match the model's inputs "
                              f"({', '.join(s.name for s in loaded.inputs)}); name every keras.Input and save again")
    return {spec.name: inputs[spec.name] for spec in loaded.inputs}


def _python_reference(loaded: LoadedModel, signature: Any, inputs: dict[str, np.ndarray], tolerance: float) -> Reference:
    saved = modelfile.saved_model_call(signature, inputs)
    keys = sorted(saved, key=modelfile.output_order)
    if loaded.keras_model is None:
        return Reference(keys=keys, saved=saved, keras=None, export_difference=0.0)
    keras_outputs = loaded.predict(_keras_inputs(loaded, inputs))
    if len(keras_outputs) != len(keys):
        raise ConversionError(f"the exported SavedModel has {len(keys)} outputs but the Keras model {len(keras_outputs)}; "
                              "report this with the model's summary")
    difference = max(max_abs_difference(saved[key], value) for key, value in zip(keys, keras_outputs))
    if difference > tolerance:
        raise ParityError(f"{loaded.source.path}: the exported SavedModel differs from the Keras model by up to "
                          f"{difference:.3g} (tolerance {tolerance:g}) before any TF.js conversion; check the model's "
                          "layers for behaviour that differs between calls (training-only code, random ops)", difference)
    names = loaded.outputs if len(set(loaded.outputs)) == len(loaded.outputs) else [f"#{i}" for i in range(len(keys))]
    return Reference(keys=keys, saved=saved, keras=dict(zip(names, keras_outputs)), export_difference=difference)


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
        graph_artifact.expected, quantization_errors["graph"] = _quantized_graph_reference(
            source, converted, work, graph, graph_artifact, options)
    layers = None
    if options.layers:
        reporter.step("writing the tfjs-layers model")
        layers = layers_format.write_layers_model(loaded, staging / "layers", quantization=quantization,
                                                  shard_bytes=options.shard_bytes)
        reporter.detail(f"layers model: {len(layers.files)} files, {_bytes(layers.directory, layers.files) / 1024:.0f} KiB, "
                        f"{len(layers.weight_names)} weights")
        layers_artifact = _layers_artifact(layers, loaded, inputs, reference.keras or {}, options.tolerance)
        if quantization:
            layers_artifact.expected, quantization_errors["layers"] = _quantized_layers_reference(
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


def _quantized_graph_reference(source: ModelSource, converted: Path, work: Path, graph: convert.GraphModel,
                               artifact: Artifact, options: ConvertOptions) -> tuple[list[np.ndarray], float]:
    """Return Python's outputs of the quantized graph model, and how far they are from the model's.

    The same graph with float32 weights, run in TensorFlow, must first match the model: that
    shows the converted graph computes the model, so the quantized graph (the same graph with
    rounded weights) run in TensorFlow is the exact reference for the browser.
    """
    feeds = dict(artifact.inputs)
    float_model = work / "float_model"
    rewrite_graph_model(converted, float_model, quantization=None, shard_bytes=options.shard_bytes)
    float_outputs = run_graph_model(float_model, feeds, artifact.outputs)
    difference = max(max_abs_difference(a, e) for a, e in zip(float_outputs, artifact.expected))
    if difference > options.tolerance:
        raise ParityError(f"{source.path}: the converted graph with float32 weights, run in TensorFlow, differs from "
                          f"the model by up to {difference:.3g} (tolerance {options.tolerance:g}); the quantized model "
                          "cannot be checked against it, so convert without --quantize", difference)
    quantized = [np.asarray(value) for value in run_graph_model(graph.directory, feeds, artifact.outputs)]
    error = max(max_abs_difference(q, e) for q, e in zip(quantized, artifact.expected))
    return quantized, error


def _layers_artifact(layers: layers_format.LayersModel, loaded: LoadedModel, inputs: dict[str, np.ndarray],
                     keras_outputs: dict[str, np.ndarray], tolerance: float) -> Artifact:
    by_name = _keras_inputs(loaded, inputs)
    if len(layers.input_names) == 1 and len(by_name) == 1:
        feeds = [(layers.input_names[0], next(iter(by_name.values())))]
    else:
        feeds = [(name, by_name[name]) for name in layers.input_names]
    return Artifact(kind="layers", directory=layers.directory, inputs=feeds, outputs=layers.output_names,
                    labels=layers.output_names, expected=_layers_order(keras_outputs, layers), tolerance=tolerance)


def _layers_order(keras_outputs: dict[str, np.ndarray], layers: layers_format.LayersModel) -> list[np.ndarray]:
    """Order the Keras model's outputs as the layers model's output layers."""
    if list(keras_outputs) == layers.output_names or len(keras_outputs) == len(layers.output_names) == 1:
        return list(keras_outputs.values())
    missing = [name for name in layers.output_names if name not in keras_outputs]
    if missing:
        raise ConversionError(f"the layers model's outputs ({', '.join(layers.output_names)}) do not match the "
                              f"Keras model's ({', '.join(keras_outputs)})")
    return [keras_outputs[name] for name in layers.output_names]


def _quantized_layers_reference(loaded: LoadedModel, layers: layers_format.LayersModel, artifact: Artifact,
                                inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Return the Keras model's outputs with the layers model's stored (dequantized) weights, and their change."""
    import json

    from tensorflowjs import read_weights

    manifest = json.loads((layers.directory / "model.json").read_text())
    stored = read_weights.read_weights(manifest["weightsManifest"], str(layers.directory), flatten=True)
    targets = []
    for entry in stored:
        layer_name, short = entry["name"].rsplit("/", 1)
        layer = loaded.model.get_layer(layer_name)
        variable = next(v for v in layer.weights if layers_format.weight_short_name(v) == short)
        targets.append((variable, entry["data"]))
    originals = [np.array(variable.numpy()) for variable, _ in targets]
    try:
        for variable, value in targets:
            variable.assign(value)
        outputs = loaded.predict(_keras_inputs(loaded, inputs))
    finally:
        for (variable, _), value in zip(targets, originals):
            variable.assign(value)
    names = loaded.outputs if len(set(loaded.outputs)) == len(loaded.outputs) else [f"#{i}" for i in range(len(outputs))]
    quantized = _layers_order(dict(zip(names, outputs)), layers)
    error = max(max_abs_difference(q, e) for q, e in zip(quantized, artifact.expected))
    return quantized, error


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
