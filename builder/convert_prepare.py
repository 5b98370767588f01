"""Preparing a loaded model for the graph conversion and its browser check.

Recurrent loops are unrolled (TF.js 4.22 fails on them), the serving signature is read, ops that
TF.js lacks are rejected by name before anything is written, and check inputs are generated from
the input signature.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import modelfile
from .errors import ConversionError, ModelFileError
from .modelfile import SAVED_MODEL, LoadedModel, ModelSource, TensorSpec
from .native import captured_native_output

log = logging.getLogger(__name__)

# Generated inputs: a free dimension other than the batch (a sequence length) gets this size.
FREE_DIMENSION = 8
# Float inputs are drawn uniformly from this range unless the app schema gives one.
DEFAULT_RANGE = (-1.0, 1.0)
# NOTE: an integer input is drawn from [0, 2) unless the model has an Embedding, whose input_dim
# bounds it. A model that indexes something else with an integer input may need other values.
INTEGER_HIGH = 2
RECURRENT_CLASSES = ("GRU", "LSTM", "SimpleRNN")



def graph_ready(loaded: LoadedModel) -> tuple[LoadedModel, list[str]]:
    """Return the model to export for the graph model, with the loops of recurrent layers unrolled.

    TF.js 4.22 fails to run the while loop that a GRU or LSTM exports ("Cannot compute the
    outputs ... LoopExecuted"). It failed for every Keras 3 model tried and for a tf_keras GRU
    followed by an LSTM. An unrolled layer computes the same function without the loop, and the
    browser check compares the result with the original model, not with the clone.
    """
    if loaded.framework == SAVED_MODEL:
        return loaded, []
    if loaded.framework == "tf_keras":
        import tf_keras as keras
    else:
        import keras

    model = loaded.model
    looping = [layer for layer in model.layers if any(
        inner.__class__.__name__ in RECURRENT_CLASSES and not inner.get_config().get("unroll")
        for inner in _with_wrapped(layer))]
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
        for layer in clone.layers:
            # Normalization derives its mean and variance tensors from its weights here.
            if hasattr(layer, "finalize_state") and layer.__class__.__name__ == "Normalization":
                layer.finalize_state()
    return LoadedModel(loaded.source, loaded.framework, clone, loaded.inputs, loaded.outputs), [
        f"'{layer.name}' ({layer.__class__.__name__})" for layer in looping]


def _with_wrapped(layer: Any) -> list[Any]:
    """Return the layer and the layers a wrapper such as Bidirectional holds."""
    layers = [layer]
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


def signature_specs(signature: Any, order: list[str]) -> tuple[list[TensorSpec], dict[str, tuple[int | None, ...]]]:
    """Return the serving signature's inputs, in ``order`` where it names them, and its output shapes."""
    function = signature.function
    specs = [TensorSpec(name=name, shape=tuple(None if d is None else int(d) for d in spec.shape), dtype=spec.dtype.name)
             for name, spec in function.structured_input_signature[1].items()]
    specs.sort(key=lambda spec: order.index(spec.name) if spec.name in order else len(order))
    outputs = {name: tuple(None if d is None else int(d) for d in spec.shape)
               for name, spec in function.structured_outputs.items()}
    return specs, outputs


def unsupported_ops(signature: Any) -> list[str]:
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


def check_graph_ops(path: Path, specs: list[TensorSpec], unsupported: list[str]) -> None:
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


def embedding_limit(source: ModelSource) -> int:
    limits = [int(layer.config["input_dim"]) for layer in modelfile.iter_layers(source.config or {})
              if layer.class_name == "Embedding" and isinstance(layer.config.get("input_dim"), int)]
    return min(limits) if limits else INTEGER_HIGH


def generate_inputs(specs: list[TensorSpec], samples: int, seed: int, *,
                    ranges: tuple[tuple[float, float], ...] | None = None,
                    integer_high: int = INTEGER_HIGH) -> dict[str, np.ndarray]:
    """Draw one batch per input from its signature: ``samples`` rows, free dimensions of ``FREE_DIMENSION``.

    ``ranges`` contains one (low, high) for every input value along the last axis, or a single
    (low, high) for all of them. It applies to float inputs only.
    """
    rng = np.random.default_rng(seed)
    batch: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = []
        for index, dim in enumerate(spec.shape):
            if dim is not None:
                shape.append(dim)
            else:
                shape.append(samples if index == 0 else FREE_DIMENSION)
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
