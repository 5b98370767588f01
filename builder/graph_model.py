"""Converted TF.js graph models: repairs for TF.js 4.22, weight writing, and running them in TensorFlow.

``rewrite_graph_model`` takes the converter's float32 output and writes the model that ships:

* The converter's grappler pass fuses ``MatMul`` with a following ``BiasAdd`` or ``Add`` into
  ``_FusedMatMul`` even when the added tensor is not a 1-D bias; Keras 3's LSTM cell adds its
  input and recurrent products that way. The CPU backend broadcasts such an addend, but the WASM
  backend rejects it ("_FusedMatMul only supports rank-1 bias"). Each such node becomes
  ``MatMul`` followed by ``AddV2`` and the fused activation, under the original node name.
* Identical constants are stored once. An unrolled recurrent layer reads its kernels once per
  time step, and the frozen graph contains one copy per step.
* The weights are then quantized and sharded by ``tensorflowjs.write_weights``, the function the
  converter's own --quantize_* and --weight_shard_size_bytes flags use.

``run_graph_model`` runs a converted model.json in TensorFlow with the weights it stores,
dequantized as TF.js dequantizes them, which gives the exact Python outputs of a quantized model.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConversionError
from .native import captured_native_output

log = logging.getLogger(__name__)

# Activations that the converter fuses into _FusedMatMul, by the op name TF.js runs separately.
FUSED_ACTIVATIONS = ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu")
# A GraphDef's node list as model.json stores it: one dict per node, protobuf JSON field names.
Nodes = list[dict[str, Any]]


@dataclass
class GraphRewrite:
    """The changes ``rewrite_graph_model`` made: the split nodes and the number of removed constants."""

    split_nodes: list[str]
    removed_constants: int


def _fused_ops(node: dict[str, Any]) -> list[str]:
    encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(item).decode("ascii") for item in encoded]


def split_fused_matmuls(nodes: Nodes, shapes: dict[str, list[int]]) -> tuple[Nodes, list[str]]:
    """Split every ``_FusedMatMul`` whose addend is not a 1-D constant; return the new node list and the split names."""
    by_name = {node["name"]: node for node in nodes}
    result: list[dict[str, Any]] = []
    split: list[str] = []
    for node in nodes:
        fused = _fused_ops(node) if node["op"] == "_FusedMatMul" else []
        if not fused or len(node.get("input", [])) < 3:
            result.append(node)
            continue
        addend = node["input"][2].split(":")[0]
        constant = by_name.get(addend, {}).get("op") == "Const" and len(shapes.get(addend, [0, 0])) == 1
        activation = fused[1] if len(fused) == 2 else None
        if constant or fused[0] != "BiasAdd" or len(fused) > 2 or (activation and activation not in FUSED_ACTIVATIONS):
            result.append(node)
            continue
        attr = node.get("attr", {})
        dtype = attr.get("T", {"type": "DT_FLOAT"})
        matmul_name = node["name"] + "/webml_matmul"
        add_name = node["name"] + "/webml_add" if activation else node["name"]
        result.append({"name": matmul_name, "op": "MatMul", "input": node["input"][:2],
                       "attr": {"T": dtype, "transpose_a": attr.get("transpose_a", {"b": False}),
                                "transpose_b": attr.get("transpose_b", {"b": False})}})
        result.append({"name": add_name, "op": "AddV2", "input": [matmul_name, node["input"][2]], "attr": {"T": dtype}})
        if activation:
            activation_attr: dict[str, Any] = {"T": dtype}
            if activation == "LeakyRelu" and "leakyrelu_alpha" in attr:
                activation_attr["alpha"] = attr["leakyrelu_alpha"]
            result.append({"name": node["name"], "op": activation, "input": [add_name], "attr": activation_attr})
        split.append(node["name"])
    return result, split


def deduplicate_constants(nodes: Nodes, weights: list[dict[str, Any]]) -> tuple[Nodes, list[dict[str, Any]], int]:
    """Keep one of each set of identical top-level constants and point the other readers at it."""
    data = {entry["name"]: entry["data"] for entry in weights}
    keep: dict[tuple[str, tuple[int, ...], str], str] = {}
    replaced: dict[str, str] = {}
    for node in nodes:
        value = data.get(node["name"])
        if node["op"] != "Const" or value is None or node.get("input") or value.dtype.kind not in "fiub":
            continue
        key = (value.dtype.str, value.shape, hashlib.sha256(value.tobytes()).hexdigest())
        if key in keep:
            replaced[node["name"]] = keep[key]
        else:
            keep[key] = node["name"]
    if not replaced:
        return nodes, weights, 0
    result = []
    for node in nodes:
        if node["name"] in replaced:
            continue
        if node.get("input"):
            node = {**node, "input": [_renamed(item, replaced) for item in node["input"]]}
        result.append(node)
    return result, [entry for entry in weights if entry["name"] not in replaced], len(replaced)


def _renamed(reference: str, replaced: dict[str, str]) -> str:
    control = reference.startswith("^")
    name, colon, port = reference.lstrip("^").partition(":")
    if name not in replaced:
        return reference
    return ("^" if control else "") + replaced[name] + colon + port


def rewrite_graph_model(source: Path, target: Path, *, quantization: str | None, shard_bytes: int) -> GraphRewrite:
    """Write the converter's float32 graph model in ``source`` to ``target``: repaired, deduplicated, quantized, sharded."""
    from tensorflowjs import read_weights, write_weights

    manifest = json.loads((source / "model.json").read_text())
    weights = read_weights.read_weights(manifest["weightsManifest"], str(source), flatten=True)
    graph = manifest["modelTopology"]
    shapes = {entry["name"]: list(entry["data"].shape) for entry in weights}
    nodes, split = split_fused_matmuls(graph.get("node", []), shapes)
    nodes, weights, removed = deduplicate_constants(nodes, weights)
    graph["node"] = nodes
    target.mkdir(parents=True, exist_ok=True)
    manifest["weightsManifest"] = write_weights.write_weights(
        [weights], str(target), shard_size_bytes=shard_bytes, write_manifest=False,
        quantization_dtype_map={quantization: ["*"]} if quantization else None)
    (target / "model.json").write_text(json.dumps(manifest))
    if split or removed:
        log.debug("graph model: split %d _FusedMatMul node(s), removed %d duplicate constant(s)", len(split), removed)
    return GraphRewrite(split_nodes=split, removed_constants=removed)


def restored_graph_def(directory: Path) -> tuple[Any, dict[str, Any]]:
    """Return (GraphDef, model.json) of the graph model in ``directory``, with every constant's
    stored weight put back, dequantized as TF.js dequantizes it.

    Raises ``ConversionError`` when the graph uses ops that only TF.js implements (the converter
    fuses some, such as FusedDepthwiseConv2dNative and Prelu), or a constant has no weight.
    """
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry
    from tensorflowjs import read_weights

    manifest = json.loads((directory / "model.json").read_text())
    graph_def = json_format.ParseDict(manifest["modelTopology"], tf.compat.v1.GraphDef())
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    foreign = sorted({node.op for node in nodes if op_def_registry.get(node.op) is None})
    if foreign:
        raise ConversionError(f"{directory}: the graph uses ops that only TF.js implements ({', '.join(foreign)}), so "
                              "webml cannot run it in TensorFlow to check quantized weights; convert without --quantize")
    values = {entry["name"]: entry["data"] for entry in read_weights.read_weights(
        manifest["weightsManifest"], str(directory), flatten=True)}
    for node in nodes:
        if node.op != "Const":
            continue
        if node.name not in values:
            raise ConversionError(f"{directory}: the constant {node.name} has no stored weight; the model.json is damaged")
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
    return graph_def, manifest


def run_graph_model(directory: Path, feeds: dict[str, Any], fetches: list[str]) -> list[Any]:
    """Run the graph model in ``directory`` in TensorFlow; ``feeds`` and ``fetches`` use tensor names ("x:0")."""
    import tensorflow as tf

    graph_def, _ = restored_graph_def(directory)
    with captured_native_output("running the graph model in TensorFlow"), tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(fetches, feeds)


@dataclass
class GraphRunner:
    """A single-input graph model as a TensorFlow concrete function: ``runner(x)`` returns its first output.

    This is the Python reference of a build: the shipped files, run by TensorFlow.
    """

    directory: Path
    function: Any
    input_shape: list[int]

    def __call__(self, x: Any, batch_size: int = 1024) -> Any:
        import numpy as np
        import tensorflow as tf

        parts = [self.function(tf.constant(x[i:i + batch_size], dtype=tf.float32)).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def load_graph_model(directory: Path) -> GraphRunner:
    """Rebuild a single-input graph model as a TensorFlow function; ``ConversionError`` if impossible."""
    import tensorflow as tf

    graph_def, manifest = restored_graph_def(directory)
    signature = manifest.get("signature", {})
    if len(signature.get("inputs", {})) != 1 or not signature.get("outputs"):
        raise ConversionError(f"{directory / 'model.json'}: only single-input graph models can be run back this way")
    input_info = next(iter(signature["inputs"].values()))
    output_info = next(iter(signature["outputs"].values()))
    try:
        wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
        function = wrapped.prune(wrapped.graph.get_tensor_by_name(input_info["name"]),
                                 wrapped.graph.get_tensor_by_name(output_info["name"]))
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ConversionError(f"{directory / 'model.json'}: TensorFlow cannot run the converted graph ({exc})") from exc
    shape = [int(d.get("size", -1)) for d in input_info.get("tensorShape", {}).get("dim", [])]
    return GraphRunner(directory=directory, function=function, input_shape=shape)


def read_graph_weights(directory: Path) -> dict[str, Any]:
    """Return {weight name: dequantized array} of a converted graph model."""
    import numpy as np
    from tensorflowjs import read_weights

    manifest = json.loads((directory / "model.json").read_text())
    return {entry["name"]: np.asarray(entry["data"]) for entry in read_weights.read_weights(
        manifest["weightsManifest"], str(directory), flatten=True)}
