"""Python's outputs for the browser check: the SavedModel's and the Keras model's on the generated
inputs, and the exact outputs of quantized artifacts computed from the weights they store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import layers_format, modelfile
from .errors import ConversionError, ParityError
from .graph_model import rewrite_graph_model, run_graph_model
from .model_check import Artifact, max_abs_difference
from .modelfile import LoadedModel, ModelSource



@dataclass
class Reference:
    """Python's outputs on the generated inputs: the SavedModel's by signature key, the Keras model's by output name."""

    keys: list[str]
    saved: dict[str, np.ndarray]
    keras: dict[str, np.ndarray] | None
    export_difference: float


def keras_inputs(loaded: LoadedModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(loaded.inputs) == 1 and len(inputs) == 1:
        return {loaded.inputs[0].name: next(iter(inputs.values()))}
    missing = [spec.name for spec in loaded.inputs if spec.name not in inputs]
    if missing:
        raise ConversionError(f"the exported signature's inputs ({', '.join(inputs)}) do not match the model's inputs "
                              f"({', '.join(s.name for s in loaded.inputs)}); name every keras.Input and save again")
    return {spec.name: inputs[spec.name] for spec in loaded.inputs}


def python_reference(loaded: LoadedModel, signature: Any, inputs: dict[str, np.ndarray], tolerance: float) -> Reference:
    saved = modelfile.saved_model_call(signature, inputs)
    keys = sorted(saved, key=modelfile.output_order)
    if loaded.keras_model is None:
        return Reference(keys=keys, saved=saved, keras=None, export_difference=0.0)
    keras_outputs = loaded.predict(keras_inputs(loaded, inputs))
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


def quantized_graph_reference(source: ModelSource, converted: Path, written: Path, work: Path, artifact: Artifact, *,
                              tolerance: float, shard_bytes: int) -> tuple[list[np.ndarray], float]:
    """Return Python's outputs of the quantized graph model, and how far they are from the model's.

    The same graph with float32 weights, run in TensorFlow, must first match the model. That
    shows the converted graph computes the model. The quantized graph is the same graph with
    rounded weights, so running it in TensorFlow gives the exact reference for the browser.
    """
    feeds = dict(artifact.inputs)
    float_model = work / "float_model"
    rewrite_graph_model(converted, float_model, quantization=None, shard_bytes=shard_bytes)
    float_outputs = run_graph_model(float_model, feeds, artifact.outputs)
    difference = max(max_abs_difference(a, e) for a, e in zip(float_outputs, artifact.expected))
    if difference > tolerance:
        raise ParityError(f"{source.path}: the converted graph with float32 weights, run in TensorFlow, differs from "
                          f"the model by up to {difference:.3g} (tolerance {tolerance:g}); the quantized model "
                          "cannot be checked against it, so convert without --quantize", difference)
    quantized = [np.asarray(value) for value in run_graph_model(written, feeds, artifact.outputs)]
    error = max(max_abs_difference(q, e) for q, e in zip(quantized, artifact.expected))
    return quantized, error


def layers_order(keras_outputs: dict[str, np.ndarray], layers: layers_format.LayersModel) -> list[np.ndarray]:
    """Order the Keras model's outputs as the layers model's output layers."""
    if list(keras_outputs) == layers.output_names or len(keras_outputs) == len(layers.output_names) == 1:
        return list(keras_outputs.values())
    missing = [name for name in layers.output_names if name not in keras_outputs]
    if missing:
        raise ConversionError(f"the layers model's outputs ({', '.join(layers.output_names)}) do not match the "
                              f"Keras model's ({', '.join(keras_outputs)})")
    return [keras_outputs[name] for name in layers.output_names]


def quantized_layers_reference(loaded: LoadedModel, layers: layers_format.LayersModel, artifact: Artifact,
                                inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Return the Keras model's outputs with the layers model's stored (dequantized) weights, and their change."""
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
        outputs = loaded.predict(keras_inputs(loaded, inputs))
    finally:
        for (variable, _), value in zip(targets, originals):
            variable.assign(value)
    names = loaded.outputs if len(set(loaded.outputs)) == len(loaded.outputs) else [f"#{i}" for i in range(len(outputs))]
    quantized = layers_order(dict(zip(names, outputs)), layers)
    error = max(max_abs_difference(q, e) for q, e in zip(quantized, artifact.expected))
    return quantized, error
