"""`webml convert` on files it must reject, and the pure parts of the conversion (no TensorFlow model built)."""

from __future__ import annotations

import base64
import json
import math
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from builder import convert_app, graph_model, layers_format, modelfile
from builder.convert_prepare import generate_inputs
from builder.errors import ModelFileError, UsageError
from builder.model_check import max_abs_difference
from builder.modelfile import ModelSource, TensorSpec
from conftest import run_webml


def keras_archive(path: Path, config: dict, version: str = "3.15.1") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": version}))
        archive.writestr("config.json", json.dumps(config))
    return path


def functional(*layers: dict, inputs=("x", 0, 0), outputs=("out", 0, 0)) -> dict:
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": "model", "layers": list(layers), "input_layers": list(inputs),
                       "output_layers": list(outputs)}}


def input_layer(name: str = "x", shape=(None, 4)) -> dict:
    return {"module": "keras.layers", "class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"batch_shape": list(shape), "dtype": "float32", "name": name}}


def layer(class_name: str, name: str, source: str = "x", module: str = "keras.layers", **config) -> dict:
    call = {"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": [source, 0, 0]}}], "kwargs": {}}
    return {"module": module, "class_name": class_name, "name": name, "inbound_nodes": [call],
            "config": {"name": name, "trainable": True, **config}}


# --- format detection -------------------------------------------------------------------------


def test_detect_keras_archive_by_content(tmp_path):
    path = keras_archive(tmp_path / "model.bin", functional(input_layer(), layer("Dense", "out", units=2)))
    source = modelfile.detect_format(path)
    assert source.format == modelfile.KERAS
    assert source.keras_version == "3.15.1"
    assert source.keras_major == 3


def test_detect_hdf5_by_content(tmp_path):
    path = tmp_path / "model.keras"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(functional(input_layer(), layer("Dense", "out", units=2)))
        handle.attrs["keras_version"] = "2.19.0"
    source = modelfile.detect_format(path)
    assert source.format == modelfile.H5
    assert source.keras_major == 2


def test_detect_saved_model_folder(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    assert modelfile.detect_format(tmp_path).format == modelfile.SAVED_MODEL


@pytest.mark.parametrize("name, content, expected", [
    ("missing.keras", None, "file or folder not found"),
    ("empty.keras", b"", "the file is empty"),
    ("text.h5", b"hello", "starts with 68 65 6c 6c 6f"),
    ("model.json", b"{}", "a JSON file, not a model"),
    ("", None, "a folder without saved_model.pb"),
], ids=["missing", "empty", "text", "json", "plain-folder"])
def test_detect_rejects_non_models(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        modelfile.detect_format(path)
    assert expected in caught.value.message


def test_detect_rejects_zip_without_config(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ModelFileError, match="a zip archive but not a Keras model .no config.json; it contains notes.txt"):
        modelfile.detect_format(path)


def test_detect_rejects_zipped_saved_model(tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("export/saved_model.pb", b"\x08\x01")
    with pytest.raises(ModelFileError, match="a zip archive of a SavedModel; unzip it"):
        modelfile.detect_format(path)


def test_detect_rejects_weights_only_hdf5(tmp_path):
    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"dense"]
        handle.create_dataset("dense/kernel", data=np.zeros((2, 2)))
    with pytest.raises(ModelFileError, match="an HDF5 file with weights only"):
        modelfile.detect_format(path)


def test_detect_rejects_tfjs_model_folder(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ModelFileError, match="a TF.js model .model.json., which is already converted"):
        modelfile.detect_format(tmp_path)


def test_detect_points_from_graph_file_to_folder(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(ModelFileError, match="pass its folder"):
        modelfile.detect_format(tmp_path / "saved_model.pb")


# --- layer checks from the configuration ------------------------------------------------------


def test_lambda_layer_rejected_by_name(tmp_path):
    source = modelfile.detect_format(keras_archive(tmp_path / "m.keras", functional(
        input_layer(), layer("Lambda", "affine"), layer("Dense", "out", source="affine", units=2))))
    with pytest.raises(ModelFileError) as caught:
        modelfile.check_lambda_layers(source)
    assert "layer 'affine' is a Lambda layer" in caught.value.message
    assert "model.export(DIR)" in caught.value.message


def test_custom_class_rejected_by_module(tmp_path):
    source = modelfile.detect_format(keras_archive(tmp_path / "m.keras", functional(
        input_layer(), layer("Scale", "half", module="__main__"), layer("Dense", "out", source="half", units=2))))
    with pytest.raises(ModelFileError, match=r"layer 'half' uses the custom class Scale \(__main__\)"):
        modelfile.check_custom_layers(source, frozenset({"Dense", "InputLayer"}))


def test_custom_class_rejected_by_name_without_module(tmp_path):
    config = functional(input_layer(), layer("Scale", "half", module=""), layer("Dense", "out", source="half", units=2))
    source = ModelSource(path=tmp_path / "m.h5", format=modelfile.H5, keras_version="3.15.1", config=config)
    with pytest.raises(ModelFileError, match="layer 'half' uses the custom class Scale"):
        modelfile.check_custom_layers(source, frozenset({"Dense", "InputLayer", "Functional"}))


def layers_source(tmp_path: Path, *layers: dict, version: str = "3.15.1") -> ModelSource:
    return ModelSource(path=tmp_path / "m.keras", format=modelfile.KERAS, keras_version=version,
                       config=functional(input_layer(shape=(None, 6, 3)), *layers))


@pytest.mark.parametrize("layers, message", [
    ([layer("GRU", "out", units=2, reset_after=True)],
     "layer 'out' (GRU) uses reset_after=True (the default since TensorFlow 2), which tfjs-layers 4.22 does not implement"),
    ([layer("LSTM", "out", units=2, stateful=True)], "layer 'out' (LSTM) is stateful"),
    ([layer("Dense", "out", units=2, activation="hard_sigmoid")],
     "layer 'out' uses activation='hard_sigmoid', which tfjs-layers 4.22 lacks or computes differently from Keras 3"),
    ([layer("Conv1D", "out", filters=2, kernel_size=[3], groups=3)], "layer 'out' (Conv1D) uses groups=3"),
    ([layer("MultiHeadAttention", "out", num_heads=2)],
     "layer 'out' (MultiHeadAttention) has no tfjs-layers 4.22 counterpart that webml maps"),
    ([layer("Sequential", "out", module="keras", layers=[])], "layer 'out' is a nested Sequential model"),
    ([layer("Normalization", "out", invert=True)], "layer 'out' (Normalization) uses invert=True"),
    ([layer("GlobalAveragePooling1D", "out", keepdims=True)], "layer 'out' (GlobalAveragePooling1D) uses keepdims=True"),
], ids=["gru-reset-after", "stateful", "keras3-hard-sigmoid", "groups", "attention", "nested", "inverted", "keepdims"])
def test_layers_format_rejects_unsupported_layer(tmp_path, layers, message):
    with pytest.raises(ModelFileError) as caught:
        layers_format.check_support(layers_source(tmp_path, *layers))
    assert message in caught.value.message
    assert "drop --format layers" in caught.value.message or "reset_after=False" in caught.value.message


def test_layers_format_counts_further_problems(tmp_path):
    source = layers_source(tmp_path, layer("GRU", "a", units=2, reset_after=True),
                           layer("MultiHeadAttention", "b", source="a"))
    with pytest.raises(ModelFileError, match=r"\(1 more layer problem\(s\) after this one\)"):
        layers_format.check_support(source)


def test_layers_format_accepts_keras2_hard_sigmoid(tmp_path):
    source = layers_source(tmp_path, layer("GRU", "out", units=2, reset_after=False,
                                           recurrent_activation="hard_sigmoid"), version="2.19.0")
    layers_format.check_support(source)


def test_layers_format_rejects_tensor_call_argument(tmp_path):
    call = {"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}],
            "kwargs": {"training": True}}
    dropout = layer("Dropout", "out", rate=0.5)
    dropout["inbound_nodes"] = [call]
    with pytest.raises(ModelFileError, match="layer 'out' is called with the argument training=True"):
        layers_format.check_support(layers_source(tmp_path, dropout))


def test_sequential_topology_is_chained(tmp_path):
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 3], "name": "x"}},
        {"class_name": "Dense", "config": {"name": "a", "units": 2}},
        {"class_name": "Dense", "config": {"name": "b", "units": 1}},
    ]}}
    topology = layers_format.read_topology(config, tmp_path / "m.keras")
    assert topology.input_names == ["x"]
    assert topology.output_names == ["b"]
    assert [node.calls for node in topology.nodes] == [[], [[("x", 0, 0)]], [[("a", 0, 0)]]]


# --- generated inputs and comparison ----------------------------------------------------------


def test_generated_inputs_follow_signature():
    specs = [TensorSpec("image", (None, 4, 4, 3), "float32"), TensorSpec("steps", (None, None, 2), "float32"),
             TensorSpec("ids", (None, 5), "int32"), TensorSpec("fixed", (2, 3), "float32")]
    batch = generate_inputs(specs, 6, seed=1, integer_high=7)
    assert batch["image"].shape == (6, 4, 4, 3)
    assert batch["steps"].shape == (6, 8, 2)
    assert batch["fixed"].shape == (2, 3)
    assert batch["image"].dtype == np.float32
    assert batch["ids"].dtype == np.int32
    assert batch["ids"].min() >= 0 and batch["ids"].max() < 7
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0


def test_generated_inputs_use_feature_ranges():
    batch = generate_inputs([TensorSpec("x", (None, 2), "float32")], 50, seed=0, ranges=((0.0, 1.0), (100.0, 200.0)))
    assert 0.0 <= batch["x"][:, 0].min() and batch["x"][:, 0].max() <= 1.0
    assert 100.0 <= batch["x"][:, 1].min() and batch["x"][:, 1].max() <= 200.0


def test_generated_inputs_repeat_with_seed():
    specs = [TensorSpec("x", (None, 3), "float32")]
    assert np.array_equal(generate_inputs(specs, 4, seed=3)["x"], generate_inputs(specs, 4, seed=3)["x"])


def test_max_abs_difference_handles_nan_and_shape():
    assert max_abs_difference(np.array([1.0, np.nan]), np.array([1.0, np.nan])) == 0.0
    assert max_abs_difference(np.array([1.0, np.nan]), np.array([1.0, 2.0])) == math.inf
    assert max_abs_difference(np.array([np.inf]), np.array([np.inf])) == 0.0
    assert max_abs_difference(np.zeros(3), np.zeros(4)) == math.inf
    assert max_abs_difference(np.array([1.0, 2.0]), np.array([1.5, 2.0])) == 0.5


# --- graph model rewrites ---------------------------------------------------------------------


def fused(name: str, inputs: list[str], *ops: str) -> dict:
    encoded = [base64.b64encode(op.encode()).decode() for op in ops]
    return {"name": name, "op": "_FusedMatMul", "input": inputs,
            "attr": {"fused_ops": {"list": {"s": encoded}}, "T": {"type": "DT_FLOAT"}}}


def test_split_fused_matmul_with_tensor_addend():
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "k", "op": "Const"}, {"name": "h", "op": "MatMul"},
             fused("cell/add", ["x", "k", "h"], "BiasAdd", "Relu")]
    result, split = graph_model.split_fused_matmuls(nodes, {"k": [3, 4]})
    assert split == ["cell/add"]
    by_name = {node["name"]: node for node in result}
    assert by_name["cell/add/webml_matmul"]["op"] == "MatMul"
    assert by_name["cell/add/webml_add"]["input"] == ["cell/add/webml_matmul", "h"]
    assert by_name["cell/add"]["op"] == "Relu"


def test_split_keeps_fused_matmul_with_bias_vector():
    nodes = [{"name": "x", "op": "Placeholder"}, {"name": "k", "op": "Const"}, {"name": "b", "op": "Const"},
             fused("dense", ["x", "k", "b"], "BiasAdd")]
    result, split = graph_model.split_fused_matmuls(nodes, {"k": [3, 4], "b": [4]})
    assert split == []
    assert result == nodes


def test_deduplicate_constants_rewires_readers():
    nodes = [{"name": "a", "op": "Const"}, {"name": "b", "op": "Const"}, {"name": "c", "op": "Const"},
             {"name": "use", "op": "AddV2", "input": ["b:0", "^b", "c"]}]
    weights = [{"name": "a", "data": np.ones((2, 2), np.float32)}, {"name": "b", "data": np.ones((2, 2), np.float32)},
               {"name": "c", "data": np.zeros((2, 2), np.float32)}]
    result, kept, removed = graph_model.deduplicate_constants(nodes, weights)
    assert removed == 1
    assert [entry["name"] for entry in kept] == ["a", "c"]
    assert result[-1]["input"] == ["a:0", "^a", "c"]


# --- app schema -------------------------------------------------------------------------------


def write_schema(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(text)
    return path


def test_schema_reads_features_and_labels(tmp_path):
    schema = convert_app.load_schema(write_schema(tmp_path, """
title = "Loans"
labels = ["no", "yes"]
[input]
features = ["age", { name = "income", unit = "kEUR", min = 0, max = 200 }]
range = [0, 1]
"""))
    assert schema.title == "Loans"
    assert [f.name for f in schema.features] == ["age", "income"]
    assert (schema.features[0].minimum, schema.features[0].maximum) == (0.0, 1.0)
    assert schema.features[1].unit == "kEUR"


@pytest.mark.parametrize("text, message", [
    ("titel = 'x'\n[input]\nfeatures = ['a']", "unknown key 'titel' (did you mean 'title'?)"),
    ("task = 'classify'\n[input]\nfeatures = ['a']", "key 'task' = 'classify' is invalid"),
    ("labels = 'a'\n[input]\nfeatures = ['a']", "key 'labels' must be a list of strings"),
    ("title = 'x'", "missing table [input]"),
    ("[input]\nkind = 'image'\nfeatures = ['a']", "key 'input.features' applies to tabular inputs"),
    ("[input]\nfeatures = ['a', 'a']", "names 'a' twice"),
    ("[input]\nfeatures = [{ name = 'a', min = 3, max = 1 }]", "min 3 >= max 1"),
    ("[input]\nfeatures = ['a']\nrange = [1]", "key 'input.range' must be [low, high]"),
    ("[input\n", "invalid TOML"),
], ids=["typo", "task", "labels", "no-input", "image-features", "duplicate", "min-max", "range", "toml"])
def test_schema_rejects_bad_keys(tmp_path, text, message):
    with pytest.raises(UsageError) as caught:
        convert_app.load_schema(write_schema(tmp_path, text))
    assert message in caught.value.message


def test_schema_must_fit_model(tmp_path):
    schema = convert_app.load_schema(write_schema(tmp_path, "labels = ['a', 'b', 'c']\n[input]\nfeatures = ['x', 'y']"))
    spec = [TensorSpec("features", (None, 3), "float32")]
    with pytest.raises(UsageError, match="lists 2 features but the model's input 'features' has shape"):
        convert_app.plan_app(schema, spec, [(None, 3)], tmp_path / "m.keras")
    spec = [TensorSpec("features", (None, 2), "float32")]
    with pytest.raises(UsageError, match="key 'labels' has 3 names but the model outputs 4 values"):
        convert_app.plan_app(schema, spec, [(None, 4)], tmp_path / "m.keras")
    plan = convert_app.plan_app(schema, spec, [(None, 3)], tmp_path / "m.keras")
    assert plan.task == "multiclass"


def test_schema_app_takes_one_input(tmp_path):
    schema = convert_app.load_schema(write_schema(tmp_path, "[input]\nfeatures = ['x']"))
    specs = [TensorSpec("a", (None, 1), "float32"), TensorSpec("b", (None, 1), "float32")]
    with pytest.raises(UsageError, match="the model has 2 input.s. and 1 output.s.; the app takes one of each"):
        convert_app.plan_app(schema, specs, [(None, 1)], tmp_path / "m.keras")


# --- the command line, before TensorFlow is imported ------------------------------------------


def test_cli_rejects_non_model_with_one_line(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("not a model")
    result = run_webml("convert", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"webml: error: {path}: not a model file webml can read (the file starts with 6e 6f 74 20 61 20 6d 6f); "
        "expected a Keras 3 .keras zip archive, a Keras HDF5 .h5 file or a SavedModel folder"]
    assert not (tmp_path / "out").exists()


def test_cli_rejects_lambda_before_writing(tmp_path):
    path = keras_archive(tmp_path / "lambda.keras", functional(input_layer(), layer("Lambda", "affine"),
                                                                layer("Dense", "out", source="affine", units=2)))
    result = run_webml("convert", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "layer 'affine' is a Lambda layer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [path]


def test_cli_refuses_to_replace_foreign_folder(tmp_path):
    path = keras_archive(tmp_path / "m.keras", functional(input_layer(), layer("Dense", "out", units=2)))
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    result = run_webml("convert", str(path), "-o", str(output))
    assert result.returncode == 2
    assert "a folder that `webml convert` did not write" in result.stderr
    assert (output / "notes.txt").read_text() == "keep me"


def test_cli_refuses_output_inside_model(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    result = run_webml("convert", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "must neither contain nor lie inside the model" in result.stderr
