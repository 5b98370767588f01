"""Conversion from Keras 3 to a TF.js graph model, through a SavedModel.

Under Keras 3, ``tensorflowjs.converters.save_keras_model`` writes a layers-model JSON that
tfjs 4.22 cannot load ("An InputLayer should be passed either a `batchInputShape` or an
`inputShape`") while reporting success. A SavedModel from ``model.export`` converted to a graph
model loads, so that is the only path used here, and every converted model is checked in the
browser before it ships.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError, ParityError
from .native import captured_native_output

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
QUANTIZATION_FLAGS = {"float16": "--quantize_float16", "uint16": "--quantize_uint16", "uint8": "--quantize_uint8"}


@dataclass
class GraphModel:
    """A converted graph model on disk."""

    directory: Path
    files: list[str]
    input_name: str
    output_name: str
    ops: list[str]

    @property
    def weight_bytes(self) -> int:
        return sum((self.directory / f).stat().st_size for f in self.files if f.endswith(".bin"))


def export_saved_model(model: Any, directory: Path) -> None:
    """Write the Keras model as a TensorFlow SavedModel with a ``serving_default`` signature."""
    with captured_native_output("SavedModel export"):
        model.export(str(directory), format="tf_saved_model", verbose=False)


def saved_model_outputs(directory: Path, inputs: np.ndarray) -> np.ndarray:
    """Run the SavedModel's serving signature on ``inputs``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    function = loaded.signatures[SIGNATURE]
    name = next(iter(function.structured_input_signature[1]))
    result = function(**{name: tf.constant(inputs, dtype=tf.float32)})
    return next(iter(result.values())).numpy()


def check_saved_model(model: Any, directory: Path, inputs: np.ndarray, tolerance: float) -> float:
    """Compare the exported SavedModel with the Keras model; raise ``ParityError`` past ``tolerance``."""
    expected = np.asarray(model(inputs, training=False))
    actual = saved_model_outputs(directory, inputs)
    diff = float(np.abs(expected - actual).max())
    if diff > tolerance:
        raise ParityError(
            f"{directory}: the exported SavedModel differs from the Keras model by up to {diff:.3g} "
            f"(tolerance {tolerance:g}); the export is broken, report it with the model's layers",
            diff,
        )
    return diff


def convert_saved_model(saved_model: Path, output: Path, *, quantization: dict[str, list[str]] | None = None,
                        shard_bytes: int = 4 * 1024 * 1024) -> GraphModel:
    """Convert a SavedModel to a TF.js graph model in ``output``.

    ``quantization`` maps a dtype (float16, uint16, uint8) to weight-name patterns, as the
    converter's --quantize_* flags take them; None keeps float32 weights.
    """
    from tensorflowjs.converters import converter

    output.mkdir(parents=True, exist_ok=True)
    args = [
        "--input_format=tf_saved_model",
        "--output_format=tfjs_graph_model",
        f"--signature_name={SIGNATURE}",
        "--saved_model_tags=serve",
        f"--weight_shard_size_bytes={shard_bytes}",
    ]
    for dtype, patterns in (quantization or {}).items():
        if patterns:
            args.append(f"{QUANTIZATION_FLAGS[dtype]}={','.join(patterns)}")
    args += [str(saved_model), str(output)]
    log.debug("tensorflowjs_converter %s", " ".join(args))
    try:
        with captured_native_output("tensorflowjs_converter"):
            converter.convert(args)
    except (ValueError, RuntimeError, OSError, SystemExit) as exc:
        raise ConversionError(f"{saved_model}: the TF.js converter failed: {exc}; rerun with -v for the converter log") from exc
    canonicalize_model_json(output / "model.json")
    return describe_graph_model(output)


def canonicalize_model_json(path: Path) -> None:
    """Rewrite model.json with sorted keys.

    The converter serializes protobuf maps (node attributes) in an order that changes from run
    to run, so two conversions of the same weights would differ byte for byte without this.
    """
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def describe_graph_model(directory: Path) -> GraphModel:
    """Read a converted graph model's model.json: files, input and output names, ops."""
    manifest_path = directory / "model.json"
    if not manifest_path.is_file():
        raise ConversionError(f"{directory}: the converter wrote no model.json")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != "graph-model":
        raise ConversionError(f"{manifest_path}: expected a graph model, found format {manifest.get('format')!r}")
    files = ["model.json"]
    for group in manifest.get("weightsManifest", []):
        files.extend(group["paths"])
    for name in files:
        if not (directory / name).is_file():
            raise ConversionError(f"{directory}: model.json lists {name} but the file is missing")
    signature = manifest.get("signature", {})
    inputs = list(signature.get("inputs", {}))
    outputs = list(signature.get("outputs", {}))
    ops = sorted({node["op"] for node in manifest["modelTopology"].get("node", [])})
    for function in manifest["modelTopology"].get("library", {}).get("function", []):
        ops = sorted(set(ops) | {node["op"] for node in function.get("nodeDef", [])})
    return GraphModel(directory=directory, files=files, input_name=inputs[0] if inputs else "",
                      output_name=outputs[0] if outputs else "", ops=ops)
