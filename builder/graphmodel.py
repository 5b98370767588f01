"""Running a converted TF.js graph model in Python, exactly as shipped.

A graph model's ``modelTopology`` is a TensorFlow GraphDef in JSON form with the weight values
moved to binary shards. Rebuilding the GraphDef and putting the shard values back (dequantized the
way TF.js dequantizes them at load) gives a TensorFlow function that computes what the browser
computes, up to floating-point differences between runtimes. Its outputs are the Python side of
every parity check, so a quantized or pruned variant is compared with itself, not with the
float32 Keras model it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError


@dataclass
class GraphRunner:
    """A callable over one converted graph model: ``runner(x)`` returns the first output."""

    directory: Path
    function: Any
    input_shape: list[int]
    weights: dict[str, np.ndarray]

    def __call__(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        import tensorflow as tf

        parts = [self.function(tf.constant(x[i:i + batch_size], dtype=tf.float32)).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def read_graph_weights(directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return (model.json, {weight name: dequantized float array}) for a converted graph model."""
    from tensorflowjs import read_weights

    manifest = json.loads((directory / "model.json").read_text())
    groups = read_weights.read_weights(manifest["weightsManifest"], str(directory))
    values = {entry["name"]: np.asarray(entry["data"]) for group in groups for entry in group}
    return manifest, values


def load_graph_model(directory: Path) -> GraphRunner:
    """Rebuild a converted graph model as a TensorFlow function; ``ConversionError`` if impossible."""
    import tensorflow as tf
    from google.protobuf import json_format

    manifest, values = read_graph_weights(directory)
    try:
        graph_def = json_format.ParseDict(manifest["modelTopology"], tf.compat.v1.GraphDef())
    except json_format.ParseError as exc:
        raise ConversionError(f"{directory / 'model.json'}: the graph topology cannot be read back ({exc})") from exc
    for node in graph_def.node:
        if node.op == "Const" and node.name in values:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
    signature = manifest.get("signature", {})
    if len(signature.get("inputs", {})) != 1 or not signature.get("outputs"):
        raise ConversionError(f"{directory / 'model.json'}: only single-input graph models can be run back in Python")
    input_info = next(iter(signature["inputs"].values()))
    output_info = next(iter(signature["outputs"].values()))
    try:
        wrapped = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
        function = wrapped.prune(wrapped.graph.get_tensor_by_name(input_info["name"]),
                                 wrapped.graph.get_tensor_by_name(output_info["name"]))
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ConversionError(f"{directory / 'model.json'}: TensorFlow cannot run the converted graph ({exc})") from exc
    shape = [int(d.get("size", -1)) for d in input_info.get("tensorShape", {}).get("dim", [])]
    return GraphRunner(directory=directory, function=function, input_shape=shape, weights=values)
