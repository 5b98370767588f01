"""Converted TF.js graph models: a repair for TF.js 4.22 kernels, and running them in TensorFlow.

The converter's grappler pass fuses ``MatMul`` with a following ``BiasAdd`` or ``Add`` into
``_FusedMatMul`` even when the added tensor is not a 1-D bias; Keras 3's LSTM cell adds the
input and recurrent products that way. The CPU backend broadcasts such an addend, but the WASM
backend rejects it ("_FusedMatMul only supports rank-1 bias"). ``split_fused_matmuls`` turns each
such node back into ``MatMul`` followed by ``AddV2`` and the fused activation, under the original
node name, so its consumers are unchanged.

``run_graph_model`` runs a converted model.json in TensorFlow with the weights it stores,
dequantized the way TF.js dequantizes them, which gives the exact Python outputs of a quantized
model.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from .errors import ConversionError

log = logging.getLogger(__name__)

# Activations that the converter fuses into _FusedMatMul, by the op name TF.js runs separately.
FUSED_ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6", "Elu": "Elu", "Sigmoid": "Sigmoid", "Tanh": "Tanh",
                     "LeakyRelu": "LeakyRelu"}


def _fused_ops(node: dict[str, Any]) -> list[str]:
    encoded = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(item).decode("ascii") for item in encoded]


def split_fused_matmuls(model_json: Path) -> list[str]:
    """Split every ``_FusedMatMul`` whose addend is not a 1-D constant; return the names of the split nodes."""
    manifest = json.loads(model_json.read_text())
    graph = manifest["modelTopology"]
    nodes = graph.get("node", [])
    by_name = {node["name"]: node for node in nodes}
    shapes = {entry["name"]: entry["shape"] for group in manifest.get("weightsManifest", []) for entry in group["weights"]}
    result: list[dict[str, Any]] = []
    split: list[str] = []
    for node in nodes:
        if node["op"] != "_FusedMatMul" or len(node.get("input", [])) < 3:
            result.append(node)
            continue
        fused = _fused_ops(node)
        addend = node["input"][2].split(":")[0]
        constant = by_name.get(addend, {}).get("op") == "Const" and len(shapes.get(addend, [0, 0])) == 1
        activation = fused[1] if len(fused) == 2 else None
        if constant or not fused or fused[0] != "BiasAdd" or len(fused) > 2 or (activation and activation not in FUSED_ACTIVATIONS):
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
            result.append({"name": node["name"], "op": FUSED_ACTIVATIONS[activation], "input": [add_name],
                           "attr": activation_attr})
        split.append(node["name"])
    if split:
        graph["node"] = result
        model_json.write_text(json.dumps(manifest))
        log.debug("split %d _FusedMatMul node(s) with a non-constant addend: %s", len(split), ", ".join(split))
    return split


def run_graph_model(directory: Path, feeds: dict[str, Any], fetches: list[str]) -> list[Any]:
    """Run the graph model in ``directory`` in TensorFlow; ``feeds`` and ``fetches`` use tensor names ("x:0").

    Raises ``ConversionError`` when the graph uses ops that only TF.js implements (the converter
    fuses some, such as FusedDepthwiseConv2dNative and Prelu).
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
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run(fetches, feeds)
