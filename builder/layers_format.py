"""TF.js layers models (``model.json`` with ``format: layers-model``) written from Keras models.

tfjs-layers 4.22 reads the Keras 2 JSON format: an ``InputLayer`` with ``batch_input_shape``,
plain class names for initializers and regularizers, ``inbound_nodes`` as lists of
``[layer, node, tensor, kwargs]`` and weights named ``LAYER/WEIGHT``. Keras 3 writes another
format (``batch_shape``, ``DTypePolicy`` objects, ``__keras_tensor__`` call arguments), and
``tensorflowjs.converters.save_keras_model`` under Keras 3 copies it through unchanged, so the
result fails to load in the browser. This module rewrites the configuration layer by layer for the
classes listed in ``HANDLERS`` and rejects every other class before anything is written.

Keras' ``Normalization`` has no tfjs-layers counterpart; it becomes two ``Rescaling`` layers,
``x + (-mean)`` then ``x * (1 / max(sqrt(variance), 1e-7))``, the formula Keras uses.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError
from .modelfile import MODEL_CLASSES, LoadedModel, ModelSource

log = logging.getLogger(__name__)

# Keras' epsilon (keras.config.epsilon() and tf_keras.backend.epsilon()) that Normalization
# divides by when a variance is zero.
KERAS_EPSILON = 1e-7
# Activations whose tfjs-layers 4.22 implementation computes what Keras computes, by the name
# Keras writes. tfjs camel-cases names when it reads them (log_softmax becomes logSoftmax).
ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "log_softmax": "log_softmax", "elu": "elu", "selu": "selu", "softplus": "softplus",
    "softsign": "softsign", "swish": "swish", "silu": "swish", "gelu": "gelu", "mish": "mish",
}
# Keras 2 defines hard_sigmoid as clip(0.2 x + 0.5, 0, 1), as tfjs does; Keras 3 uses relu6(x + 3) / 6.
KERAS2_ONLY_ACTIVATIONS = {"hard_sigmoid": "hard_sigmoid"}
INITIALIZERS = {
    "Zeros": "Zeros", "Ones": "Ones", "Constant": "Constant", "RandomNormal": "RandomNormal",
    "RandomUniform": "RandomUniform", "TruncatedNormal": "TruncatedNormal", "VarianceScaling": "VarianceScaling",
    "GlorotUniform": "GlorotUniform", "GlorotNormal": "GlorotNormal", "HeNormal": "HeNormal", "HeUniform": "HeUniform",
    "LecunNormal": "LeCunNormal", "LecunUniform": "LeCunUniform", "LeCunNormal": "LeCunNormal",
    "LeCunUniform": "LeCunUniform", "Orthogonal": "Orthogonal", "OrthogonalInitializer": "Orthogonal",
    "Identity": "Identity", "IdentityInitializer": "Identity",
}
CONSTRAINTS = {"MaxNorm": "MaxNorm", "UnitNorm": "UnitNorm", "NonNeg": "NonNeg", "MinMaxNorm": "MinMaxNorm"}
# Keys that Keras 3 adds to layer configs and tfjs-layers has no use for.
DROPPED_KEYS = frozenset({"quantization_config", "lora_rank", "lora_alpha", "synchronized", "use_cudnn", "optional",
                          "ragged", "build_config", "compile_config", "module", "registered_name", "shared_object_id"})
FIX_GRAPH = "drop --format layers to get the graph model only"


class Unsupported(Exception):
    """A layer that tfjs-layers 4.22 cannot represent; ``reason`` names what and the fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Node:
    """One layer of the model graph in Keras 2 form: its calls list the tensors each call consumes."""

    name: str
    class_name: str
    config: dict[str, Any]
    calls: list[list[tuple[str, int, int]]] = field(default_factory=list)


@dataclass
class Topology:
    """A model graph: layers in order, the model's input and output tensors."""

    name: str
    nodes: list[Node]
    inputs: list[tuple[str, int, int]]
    outputs: list[tuple[str, int, int]]

    @property
    def input_names(self) -> list[str]:
        return [ref[0] for ref in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [ref[0] for ref in self.outputs]


@dataclass
class LayersModel:
    """A written layers model: its folder, files, and input and output layer names in tfjs order."""

    directory: Path
    files: list[str]
    input_names: list[str]
    output_names: list[str]
    weight_names: list[str]


# --- reading the Keras configuration ----------------------------------------------------------


def read_topology(config: dict[str, Any], path: Path) -> Topology:
    """Turn a Keras 2 or Keras 3 model configuration (Functional or Sequential) into a ``Topology``."""
    class_name = config.get("class_name", "")
    body = config.get("config", {}) or {}
    if class_name == "Sequential":
        return _sequential_topology(body, path)
    if class_name not in MODEL_CLASSES:
        raise ModelFileError(f"{path}: the model is a {class_name}, not a Functional or Sequential model; "
                             f"a layers model needs one of those, so {FIX_GRAPH}")
    nodes = []
    for entry in body.get("layers", []):
        layer_config = entry.get("config", {}) or {}
        name = entry.get("name") or layer_config.get("name")
        calls = [_read_call(call, name, path) for call in entry.get("inbound_nodes", [])]
        nodes.append(Node(name=name, class_name=entry.get("class_name", ""), config=layer_config, calls=calls))
    return Topology(name=body.get("name", "model"), nodes=nodes, inputs=_read_refs(body.get("input_layers"), "inputs", path),
                    outputs=_read_refs(body.get("output_layers"), "outputs", path))


def _sequential_topology(body: dict[str, Any], path: Path) -> Topology:
    entries = list(body.get("layers", []))
    nodes: list[Node] = []
    if not entries or entries[0].get("class_name") != "InputLayer":
        first = entries[0].get("config", {}) if entries else {}
        shape = first.get("batch_input_shape") or first.get("batch_shape") or body.get("build_input_shape")
        if not shape:
            raise ModelFileError(f"{path}: the Sequential model has no input shape; build it with keras.Input(shape=...) "
                                 "as its first layer and save it again")
        nodes.append(Node(name=_unique_name("input_layer", entries), class_name="InputLayer",
                          config={"batch_shape": list(shape), "dtype": "float32", "name": "input_layer"}))
    previous = None
    for entry in entries:
        layer_config = entry.get("config", {}) or {}
        name = layer_config.get("name") or entry.get("name")
        node = Node(name=name, class_name=entry.get("class_name", ""), config=layer_config)
        if nodes and previous is None:
            previous = nodes[0].name
        if previous is not None:
            node.calls = [[(previous, 0, 0)]]
        nodes.append(node)
        previous = name
    return Topology(name=body.get("name", "sequential"), nodes=nodes, inputs=[(nodes[0].name, 0, 0)],
                    outputs=[(nodes[-1].name, 0, 0)])


def _unique_name(base: str, entries: list[dict[str, Any]]) -> str:
    taken = {(e.get("config", {}) or {}).get("name") for e in entries}
    name, index = base, 1
    while name in taken:
        name, index = f"{base}_{index}", index + 1
    return name


def _read_refs(value: Any, what: str, path: Path) -> list[tuple[str, int, int]]:
    if isinstance(value, dict):
        raise ModelFileError(f"{path}: the model's {what} are a dict; a layers model takes them as a list, so "
                             f"{FIX_GRAPH}, or rebuild the model with a list of {what}")
    if not value:
        return []
    if isinstance(value[0], str):
        value = [value]
    return [(str(ref[0]), int(ref[1]), int(ref[2])) for ref in value]


def _read_call(call: Any, layer: str, path: Path) -> list[tuple[str, int, int]]:
    if isinstance(call, dict):
        refs: list[tuple[str, int, int]] = []
        _collect_tensors(call.get("args", []), refs)
        for key, value in (call.get("kwargs") or {}).items():
            found: list[tuple[str, int, int]] = []
            _collect_tensors(value, found)
            if found or value not in (None, False):
                raise Unsupported(f"layer '{layer}' is called with the argument {key}={_short(value)}, which a "
                                  f"tfjs-layers model cannot pass; {FIX_GRAPH}")
        return refs
    refs = []
    for item in call:
        if len(item) > 3 and item[3]:
            raise Unsupported(f"layer '{layer}' is called with the arguments {_short(item[3])}, which a tfjs-layers "
                              f"model cannot pass; {FIX_GRAPH}")
        refs.append((str(item[0]), int(item[1]), int(item[2])))
    return refs


def _collect_tensors(value: Any, found: list[tuple[str, int, int]]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"]["keras_history"]
            found.append((str(history[0]), int(history[1]), int(history[2])))
            return
        for item in value.values():
            _collect_tensors(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_tensors(item, found)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- layer configurations ---------------------------------------------------------------------


@dataclass
class Context:
    """The Keras major version of the source and, when writing, the loaded model."""

    keras_major: int
    loaded: LoadedModel | None = None


def _activation(name: Any, layer: str, key: str, context: Context) -> str:
    if isinstance(name, dict):
        name = name.get("config") if isinstance(name.get("config"), str) else name.get("class_name")
    name = "linear" if name is None else str(name)
    table = dict(ACTIVATIONS)
    if context.keras_major == 2:
        table.update(KERAS2_ONLY_ACTIVATIONS)
    if name not in table:
        raise Unsupported(f"layer '{layer}' uses {key}='{name}', which tfjs-layers 4.22 lacks or computes differently "
                          f"from Keras {context.keras_major}; use one of {', '.join(sorted(table))}, or {FIX_GRAPH}")
    return table[name]


def _serialized(value: Any, table: dict[str, str], kind: str, layer: str, key: str) -> Any:
    """Map a serialized Keras object (initializer, constraint) to tfjs' class names."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"class_name": "".join(part.capitalize() for part in value.split("_")), "config": {}}
    class_name = value.get("class_name")
    if class_name not in table:
        raise Unsupported(f"layer '{layer}' uses the {kind} {class_name} for {key}, which tfjs-layers 4.22 lacks; "
                          f"use one of {', '.join(sorted(set(table.values())))}, or {FIX_GRAPH}")
    config = {k: v for k, v in (value.get("config") or {}).items() if k not in DROPPED_KEYS}
    return {"class_name": table[class_name], "config": config}


def _regularizer(value: Any, layer: str, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"class_name": value.upper(), "config": {value: 0.01}}
    class_name = value.get("class_name")
    config = value.get("config") or {}
    if class_name not in ("L1", "L2", "L1L2"):
        raise Unsupported(f"layer '{layer}' uses the regularizer {class_name} for {key}, which tfjs-layers 4.22 lacks; "
                          f"use L1, L2 or L1L2, or {FIX_GRAPH}")
    return {"class_name": "L1L2", "config": {"l1": float(config.get("l1", 0.0)), "l2": float(config.get("l2", 0.0))}}


def _dtype(value: Any, layer: str) -> str:
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name", "float32")
    value = value or "float32"
    if value not in ("float32", "int32", "bool", "string"):
        raise Unsupported(f"layer '{layer}' computes in {value}, which tfjs-layers 4.22 does not support; "
                          f"save the model with the float32 dtype policy, or {FIX_GRAPH}")
    return value


def _base_config(node: Node, context: Context) -> dict[str, Any]:
    """Copy a layer config into Keras 2 form: plain dtype, mapped activations and initializers."""
    config = {key: copy.deepcopy(value) for key, value in node.config.items() if key not in DROPPED_KEYS}
    config["name"] = node.name
    if "dtype" in config:
        config["dtype"] = _dtype(config["dtype"], node.name)
    for key in list(config):
        value = config[key]
        if key in ("activation", "recurrent_activation"):
            config[key] = _activation(value, node.name, key, context)
        elif key.endswith("_initializer"):
            config[key] = _serialized(value, INITIALIZERS, "initializer", node.name, key)
        elif key.endswith("_constraint"):
            config[key] = _serialized(value, CONSTRAINTS, "constraint", node.name, key)
        elif key.endswith("_regularizer"):
            config[key] = _regularizer(value, node.name, key)
    return config


def _input_layer(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    config = {key: value for key, value in node.config.items() if key not in DROPPED_KEYS}
    if node.config.get("ragged") or node.config.get("sparse"):
        raise Unsupported(f"input '{node.name}' is ragged or sparse, which tfjs-layers 4.22 does not support; {FIX_GRAPH}")
    shape = config.pop("batch_shape", None) or config.pop("batch_input_shape", None)
    if shape is None:
        raise Unsupported(f"input '{node.name}' has no shape in the saved configuration; rebuild the model with "
                          "keras.Input(shape=...) and save it again")
    config.pop("input_shape", None)
    config.pop("batch_size", None)
    config["batch_input_shape"] = list(shape)
    config["dtype"] = _dtype(config.get("dtype"), node.name)
    config["sparse"] = False
    config["name"] = node.name
    return [("InputLayer", config)]


def _plain(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    return [(node.class_name, _base_config(node, context))]


def _convolution(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if int(node.config.get("groups", 1) or 1) != 1:
        raise Unsupported(f"layer '{node.name}' ({node.class_name}) uses groups={node.config['groups']}, which "
                          f"tfjs-layers 4.22 does not support; use groups=1, or {FIX_GRAPH}")
    return _plain(node, context)


def _batch_normalization(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if node.config.get("renorm"):
        raise Unsupported(f"layer '{node.name}' (BatchNormalization) uses renorm=True, which tfjs-layers 4.22 does "
                          f"not support; {FIX_GRAPH}")
    config = _base_config(node, context)
    axis = config.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise Unsupported(f"layer '{node.name}' (BatchNormalization) normalizes over the axes {axis}; tfjs-layers "
                              f"4.22 takes one axis, so {FIX_GRAPH}")
        config["axis"] = axis[0]
    for key in ("renorm", "renorm_clipping", "renorm_momentum", "fused", "virtual_batch_size", "adjustment"):
        config.pop(key, None)
    return [("BatchNormalization", config)]


def _layer_normalization(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if node.config.get("rms_scaling"):
        raise Unsupported(f"layer '{node.name}' (LayerNormalization) uses rms_scaling=True, which tfjs-layers 4.22 "
                          f"does not support; {FIX_GRAPH}")
    config = _base_config(node, context)
    config.pop("rms_scaling", None)
    return [("LayerNormalization", config)]


def _recurrent(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if node.class_name == "GRU" and node.config.get("reset_after", context.keras_major >= 3):
        raise Unsupported(f"layer '{node.name}' (GRU) uses reset_after=True (the default since TensorFlow 2), which "
                          "tfjs-layers 4.22 does not implement; build the GRU with reset_after=False and retrain it, "
                          f"or {FIX_GRAPH}")
    if node.config.get("stateful"):
        raise Unsupported(f"layer '{node.name}' ({node.class_name}) is stateful; webml converts stateless recurrent "
                          f"layers only, so set stateful=False or {FIX_GRAPH}")
    config = _base_config(node, context)
    config.pop("seed", None)
    config.pop("time_major", None)
    return [(node.class_name, config)]


def _global_pooling(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if node.config.get("keepdims"):
        raise Unsupported(f"layer '{node.name}' ({node.class_name}) uses keepdims=True, which tfjs-layers 4.22 does "
                          f"not support; add a Reshape layer after it instead, or {FIX_GRAPH}")
    config = _base_config(node, context)
    config.pop("keepdims", None)
    return [(node.class_name, config)]


def _rescaling(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    config = _base_config(node, context)
    for key in ("scale", "offset"):
        value = config.get(key, 0.0 if key == "offset" else 1.0)
        if isinstance(value, dict):
            raise Unsupported(f"layer '{node.name}' (Rescaling) has a tensor {key}; tfjs-layers 4.22 takes numbers "
                              f"or lists, so {FIX_GRAPH}")
        config[key] = value
    return [("Rescaling", config)]


def _normalization(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    if node.config.get("invert"):
        raise Unsupported(f"layer '{node.name}' (Normalization) uses invert=True; webml rewrites only the forward "
                          f"normalization into tfjs-layers, so {FIX_GRAPH}")
    if context.loaded is None:
        return [("Rescaling", {"name": node.name}), ("Rescaling", {"name": node.name + "_scale"})]
    mean, variance = normalization_statistics(context.loaded.model.get_layer(node.name))
    scale = 1.0 / np.maximum(np.sqrt(variance.astype(np.float64)), KERAS_EPSILON)
    base = {"trainable": False, "dtype": "float32"}
    center = {**base, "name": node.name + "_center", "scale": 1.0, "offset": (-mean.astype(np.float64)).tolist()}
    divide = {**base, "name": node.name, "scale": scale.tolist(), "offset": 0.0}
    return [("Rescaling", center), ("Rescaling", divide)]


def normalization_statistics(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return a Normalization layer's mean and variance, shaped to broadcast over one sample."""
    mean = np.asarray(layer.mean, dtype=np.float32)
    variance = np.asarray(layer.variance, dtype=np.float32)
    # Keras keeps both in the broadcast shape of a batch, (1, ..., features); drop the batch axis.
    if mean.ndim > 1 and mean.shape[0] == 1:
        mean, variance = mean[0], variance[0]
    return mean, variance


HANDLERS: dict[str, Callable[[Node, Context], list[tuple[str, dict[str, Any]]]]] = {
    "InputLayer": _input_layer,
    "Dense": _plain,
    "Conv1D": _convolution,
    "Conv2D": _convolution,
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "GRU": _recurrent,
    "LSTM": _recurrent,
    "SimpleRNN": _recurrent,
    "Embedding": _plain,
    "Dropout": _plain,
    "Flatten": _plain,
    "Reshape": _plain,
    "Permute": _plain,
    "RepeatVector": _plain,
    "Activation": _plain,
    "MaxPooling1D": _plain,
    "MaxPooling2D": _plain,
    "AveragePooling1D": _plain,
    "AveragePooling2D": _plain,
    "GlobalAveragePooling1D": _global_pooling,
    "GlobalAveragePooling2D": _global_pooling,
    "GlobalMaxPooling1D": _global_pooling,
    "GlobalMaxPooling2D": _global_pooling,
    "Concatenate": _plain,
    "Add": _plain,
    "Subtract": _plain,
    "Multiply": _plain,
    "Average": _plain,
    "Maximum": _plain,
    "Minimum": _plain,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
}


def _convert_node(node: Node, context: Context) -> list[tuple[str, dict[str, Any]]]:
    handler = HANDLERS.get(node.class_name)
    if handler is None:
        if node.class_name in MODEL_CLASSES:
            raise Unsupported(f"layer '{node.name}' is a nested {node.class_name} model; webml writes flat layers "
                              f"models only, so build the model as one functional graph, or {FIX_GRAPH}")
        raise Unsupported(f"layer '{node.name}' ({node.class_name}) has no tfjs-layers 4.22 counterpart that webml "
                          f"maps; {FIX_GRAPH}")
    return handler(node, context)


def check_support(source: ModelSource) -> None:
    """Reject, from the saved configuration alone, a model that cannot become a tfjs-layers model."""
    context = Context(keras_major=source.keras_major)
    problems: list[str] = []
    try:
        topology = read_topology(source.config or {}, source.path)
        for node in topology.nodes:
            try:
                _convert_node(node, context)
            except Unsupported as exc:
                problems.append(exc.reason)
    except Unsupported as exc:
        problems.append(exc.reason)
    if problems:
        more = f" ({len(problems) - 1} more layer problem(s) after this one)" if len(problems) > 1 else ""
        raise ModelFileError(f"{source.path}: cannot write a tfjs-layers model: {problems[0]}{more}")


# --- writing ----------------------------------------------------------------------------------


def build_model_json(loaded: LoadedModel) -> tuple[dict[str, Any], list[dict[str, Any]], Topology]:
    """Return (modelTopology, weight entries, topology) for a loaded Keras 2 or Keras 3 model."""
    source = loaded.source
    context = Context(keras_major=source.keras_major, loaded=loaded)
    layers = []
    weights: list[dict[str, Any]] = []
    try:
        topology = read_topology(source.config or {}, source.path)
        for node in topology.nodes:
            converted = _convert_node(node, context)
            calls = [[[ref[0], ref[1], ref[2], {}] for ref in call] for call in node.calls]
            for index, (class_name, config) in enumerate(converted):
                name = config["name"]
                inbound = calls if index == 0 else [[[converted[index - 1][1]["name"], i, 0, {}]] for i in range(len(calls))]
                layers.append({"class_name": class_name, "config": config, "name": name, "inbound_nodes": inbound})
            if node.class_name not in ("InputLayer", "Normalization"):
                weights.extend(_layer_weights(loaded, node.name))
    except Unsupported as exc:
        raise ModelFileError(f"{source.path}: cannot write a tfjs-layers model: {exc.reason}") from exc
    model_config = {
        "class_name": "Model",
        "config": {
            "name": topology.name,
            "layers": layers,
            "input_layers": [[name, node, tensor] for name, node, tensor in topology.inputs],
            "output_layers": [[name, node, tensor] for name, node, tensor in topology.outputs],
        },
    }
    model_topology = {"keras_version": source.keras_version or "unknown", "backend": "tensorflow",
                      "model_config": model_config}
    return model_topology, weights, topology


def weight_short_name(variable: Any) -> str:
    """Return a weight's name within its layer: "kernel" for Keras 3's "kernel" and tf_keras' "dense/kernel:0"."""
    return str(variable.name).split("/")[-1].split(":")[0]


def _layer_weights(loaded: LoadedModel, name: str) -> list[dict[str, Any]]:
    layer = loaded.model.get_layer(name)
    entries = []
    seen: set[str] = set()
    for variable in layer.weights:
        short = weight_short_name(variable)
        if short in seen:
            raise Unsupported(f"layer '{name}' has two weights named {short}; tfjs-layers matches weights by "
                              f"name, so {FIX_GRAPH}")
        seen.add(short)
        entries.append({"name": f"{name}/{short}", "data": np.asarray(variable.numpy())})
    return entries


def write_layers_model(loaded: LoadedModel, directory: Path, *, quantization: str | None = None,
                       shard_bytes: int = 4 * 1024 * 1024) -> LayersModel:
    """Write ``loaded`` as a tfjs-layers model into ``directory`` (model.json and weight shards)."""
    import json

    from tensorflowjs.converters import keras_h5_conversion

    model_topology, weights, topology = build_model_json(loaded)
    quantization_map = {quantization: ["*"]} if quantization else None
    directory.mkdir(parents=True, exist_ok=True)
    keras_h5_conversion.write_artifacts(model_topology, [weights], str(directory),
                                        quantization_dtype_map=quantization_map, weight_shard_size_bytes=shard_bytes)
    manifest = json.loads((directory / "model.json").read_text())
    files = ["model.json"] + [path for group in manifest["weightsManifest"] for path in group["paths"]]
    return LayersModel(directory=directory, files=files, input_names=topology.input_names,
                       output_names=topology.output_names, weight_names=[entry["name"] for entry in weights])
