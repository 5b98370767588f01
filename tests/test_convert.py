"""`webml convert` end to end: real Keras models in every file format, the real converter, real Chromium.

A session fixture builds small models of each kind the command must handle or reject, saves each
in every format it can be saved in, and every conversion below runs once and is checked many
times. Weights are random (no training): parity does not need a trained model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from builder.errors import ConversionError, ModelFileError
from conftest import run_webml

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


def _randomize_batch_normalization(model, rng) -> None:
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([1 + 0.3 * rng.standard_normal(gamma.shape), 0.3 * rng.standard_normal(beta.shape),
                               0.5 * rng.standard_normal(mean.shape), 0.5 + rng.random(variance.shape)])


def _save(model, folder: Path, name: str, formats=("keras", "h5", "savedmodel")) -> None:
    if "keras" in formats:
        model.save(folder / f"{name}.keras")
    if "h5" in formats:
        model.save(folder / f"{name}.h5")
    if "savedmodel" in formats:
        model.export(str(folder / f"{name}_savedmodel"), verbose=False)


def _unrolled(model, keras=None):
    """Clone a model with its recurrent loops unrolled, the fix that webml's message suggests."""
    if keras is None:
        import keras

    def clone(layer):
        config = layer.get_config()
        return layer.__class__.from_config({**config, "unroll": True} if "unroll" in config else config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _build_keras3_models(folder: Path) -> None:
    import keras

    rng = np.random.default_rng(7)

    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(image)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    cnn = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="probs")(x), name="cnn")
    _randomize_batch_normalization(cnn, rng)
    _save(cnn, folder, "cnn")

    features = keras.Input((5,), name="features")
    normalize = keras.layers.Normalization(name="normalize")
    normalize.adapt(rng.normal([0, 10, 100, -5, 1], [1, 2, 30, 1, 0.1], (64, 5)).astype("float32"))
    x = keras.layers.Dense(256, activation="relu", name="hidden")(normalize(features))
    tabular = keras.Model(features, keras.layers.Dense(1, activation="sigmoid", name="approved")(x), name="tabular")
    _save(tabular, folder, "tabular")

    series = keras.Input((6, 3), name="series")
    x = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv1d")(series)
    x = keras.layers.GRU(5, return_sequences=True, reset_after=False, name="gru")(x)
    x = keras.layers.LSTM(4, name="lstm")(x)
    sequence = keras.Model(series, keras.layers.Dense(2, name="out")(x), name="sequence")
    _save(sequence, folder, "sequence")
    _unrolled(sequence).export(str(folder / "sequence_unrolled_savedmodel"), verbose=False)

    numbers = keras.Input((4,), name="numbers")
    steps = keras.Input((5, 3), name="steps")
    merged = keras.layers.Concatenate(name="merge")([numbers, keras.layers.LSTM(3, name="lstm")(steps)])
    merged = keras.layers.BatchNormalization(name="bn")(merged)
    multi = keras.Model([numbers, steps], [keras.layers.Dense(2, activation="softmax", name="kind")(merged),
                                           keras.layers.Dense(1, name="size")(merged)], name="multi_io")
    _randomize_batch_normalization(multi, rng)
    _save(multi, folder, "multi_io", formats=("keras", "h5"))
    _unrolled(multi).export(str(folder / "multi_io_savedmodel"), verbose=False)

    features = keras.Input((4,), name="features")
    x = keras.layers.Lambda(lambda t: t * 3.0 + 1.0, name="affine")(features)
    _save(keras.Model(features, keras.layers.Dense(2, name="out")(x)), folder, "lambda")

    @keras.saving.register_keras_serializable(package="webml_test")
    class Scale(keras.layers.Layer):
        def __init__(self, factor: float = 2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, inputs):
            return inputs * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    features = keras.Input((4,), name="features")
    _save(keras.Model(features, keras.layers.Dense(2, name="out")(Scale(0.5, name="half")(features))), folder, "custom")

    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4, name="vectorize")
    vectorize.adapt(["a b c", "b c d", "hello world"])
    text = keras.Input((1,), dtype="string", name="text")
    x = keras.layers.GlobalAveragePooling1D(name="pool")(keras.layers.Embedding(20, 3, name="embed")(vectorize(text)))
    # Keras 3 writes this model to .h5 too, though without the vocabulary: the file fails to
    # predict after loading, but its graph still shows the string ops.
    _save(keras.Model(text, keras.layers.Dense(1, name="score")(x)), folder, "text")

    stack = keras.Sequential([
        keras.Input((3,), name="x"),
        keras.layers.Dense(4, activation="tanh", name="d1"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(2, activation="softmax", name="d2"),
    ], name="stack")
    _save(stack, folder, "sequential", formats=("keras",))

    series = keras.Input((6, 3), name="series")
    gru = keras.Model(series, keras.layers.Dense(2, name="out")(keras.layers.GRU(5, name="gru_default")(series)))
    _save(gru, folder, "gru_reset_after", formats=("keras",))
    series = keras.Input((None, 3), name="series")
    variable = keras.Model(series, keras.layers.Dense(2, name="out")(keras.layers.LSTM(4, name="lstm")(series)))
    _save(variable, folder, "variable_length", formats=("keras",))


def _build_keras2_model(folder: Path) -> None:
    import warnings

    import tf_keras

    series = tf_keras.Input((6, 3), name="series")
    x = tf_keras.layers.Conv1D(4, 3, padding="same", name="conv1d")(series)
    x = tf_keras.layers.GRU(5, return_sequences=True, reset_after=False, name="gru")(x)
    x = tf_keras.layers.LSTM(4, name="lstm")(x)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    model = tf_keras.Model(series, tf_keras.layers.Dense(2, activation="softmax", name="out")(x))
    _randomize_batch_normalization(model, np.random.default_rng(3))
    with warnings.catch_warnings():
        # tf_keras warns that HDF5 is a legacy format; writing one is the point here.
        warnings.simplefilter("ignore", UserWarning)
        model.save(folder / "keras2.h5")
    _unrolled(model, tf_keras).export(str(folder / "keras2_savedmodel"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Path:
    """Every model kind, saved in every format it can be saved in."""
    from builder.native import captured_native_output, import_tensorflow

    import_tensorflow()
    folder = tmp_path_factory.mktemp("zoo")
    with captured_native_output("building the test models"):
        _build_keras3_models(folder)
        _build_keras2_model(folder)
    return folder


class Conversions:
    """Runs each conversion once per session and keeps its result (or its error) and output folder."""

    def __init__(self, zoo: Path, root: Path, browser) -> None:
        self.zoo = zoo
        self.root = root
        self.browser = browser
        self.results: dict[tuple, object] = {}
        self.outputs: dict[tuple, Path] = {}

    def get(self, model: str, **options):
        from builder.convert_model import ConvertOptions, convert_model

        key = (model, tuple(sorted(options.items())))
        if key not in self.results:
            output = self.root / f"{model.replace('.', '_')}-{len(self.results)}"
            self.outputs[key] = output
            try:
                self.results[key] = convert_model(self.zoo / model, output, ConvertOptions(**options),
                                                  browser=self.browser)
            except (ModelFileError, ConversionError) as exc:
                self.results[key] = exc
        return self.results[key]

    def output(self, model: str, **options) -> Path:
        self.get(model, **options)
        return self.outputs[(model, tuple(sorted(options.items())))]

    def ok(self, model: str, **options):
        result = self.get(model, **options)
        if isinstance(result, Exception):
            pytest.fail(f"webml convert {model} failed: {result}")
        return result

    def error(self, model: str, **options) -> Exception:
        result = self.get(model, **options)
        assert isinstance(result, Exception), f"webml convert {model} succeeded but should fail"
        return result


@pytest.fixture(scope="session")
def conversions(zoo, tmp_path_factory, browser) -> Conversions:
    return Conversions(zoo, tmp_path_factory.mktemp("converted"), browser)


CASES = [
    ("cnn.keras", True), ("cnn.h5", True), ("cnn_savedmodel", False),
    ("tabular.keras", True), ("tabular.h5", True), ("tabular_savedmodel", False),
    ("sequence.keras", True), ("sequence.h5", True), ("sequence_unrolled_savedmodel", False),
    ("multi_io.keras", True), ("multi_io.h5", True), ("multi_io_savedmodel", False),
    ("sequential.keras", True), ("lambda_savedmodel", False), ("custom_savedmodel", False),
    ("keras2.h5", True), ("keras2_savedmodel", False),
]


@pytest.mark.parametrize("model, layers", CASES, ids=[case[0] for case in CASES])
def test_convert_matches_python_in_browser(conversions, model, layers):
    result = conversions.ok(model, layers=layers)
    artifacts = ["graph", "layers"] if layers else ["graph"]
    seen = {(check.artifact, check.backend) for check in result.checks}
    assert seen == {(artifact, backend) for artifact in artifacts for backend in ("wasm", "cpu")}
    for check in result.checks:
        assert check.status == "passed", check.detail
        assert check.max_abs_diff <= TOLERANCE
    report = json.loads((result.output / "conversion.json").read_text())
    assert report["verification"]["samples"] == 8
    assert report["verification"]["max_abs_diff"] <= TOLERANCE
    assert sorted(report["artifacts"]) == artifacts
    for artifact in artifacts:
        folder = "model" if artifact == "graph" else "layers"
        manifest = json.loads((result.output / folder / "model.json").read_text())
        assert manifest["format"] == ("graph-model" if artifact == "graph" else "layers-model")
        for group in manifest["weightsManifest"]:
            for path in group["paths"]:
                assert (result.output / folder / path).is_file()


def test_source_format_detected_from_content(conversions):
    assert conversions.ok("cnn.keras", layers=True).report["source"]["format"] == "keras"
    assert conversions.ok("cnn.h5", layers=True).report["source"]["format"] == "h5"
    assert conversions.ok("cnn_savedmodel").report["source"]["format"] == "saved_model"
    assert conversions.ok("keras2.h5", layers=True).report["source"]["framework"] == "tf_keras"
    assert conversions.ok("cnn.h5", layers=True).report["source"]["framework"] == "keras"


def _walk(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_layers_json_has_keras2_form(conversions):
    result = conversions.ok("cnn.keras", layers=True)
    manifest = json.loads((result.output / "layers" / "model.json").read_text())
    config = manifest["modelTopology"]["model_config"]
    assert config["class_name"] == "Model"
    first = config["config"]["layers"][0]
    assert first["class_name"] == "InputLayer"
    assert first["config"]["batch_input_shape"] == [None, 8, 8, 1]
    for entry in _walk(config):
        assert "batch_shape" not in entry
        assert "module" not in entry
        assert entry.get("class_name") not in ("DTypePolicy", "__keras_tensor__")
    conv = next(layer for layer in config["config"]["layers"] if layer["name"] == "conv")
    assert conv["inbound_nodes"] == [[["scale", 0, 0, {}]]]
    names = {weight["name"] for group in manifest["weightsManifest"] for weight in group["weights"]}
    assert names == {"conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance",
                     "probs/kernel", "probs/bias"}


def test_normalization_becomes_two_rescalings(conversions):
    result = conversions.ok("tabular.keras", layers=True)
    manifest = json.loads((result.output / "layers" / "model.json").read_text())
    layers = manifest["modelTopology"]["model_config"]["config"]["layers"]
    by_name = {layer["name"]: layer for layer in layers}
    assert by_name["normalize_center"]["class_name"] == "Rescaling"
    assert by_name["normalize"]["class_name"] == "Rescaling"
    assert by_name["normalize"]["inbound_nodes"] == [[["normalize_center", 0, 0, {}]]]
    assert len(by_name["normalize_center"]["config"]["offset"]) == 5
    assert by_name["hidden"]["inbound_nodes"] == [[["normalize", 0, 0, {}]]]


def test_recurrent_layers_unrolled_and_deduplicated(conversions):
    result = conversions.ok("sequence.keras", layers=True)
    assert result.warnings == ["the graph model runs 'gru' (GRU), 'lstm' (LSTM) unrolled, because TF.js 4.22 fails on "
                               "the while loop of recurrent layers; its graph holds their ops once per time step"]
    report = result.report
    assert report["rewrites"]["unrolled_layers"] == ["'gru' (GRU)", "'lstm' (LSTM)"]
    assert report["rewrites"]["removed_duplicate_constants"] > 0
    assert report["rewrites"]["split_fused_matmuls"], "the LSTM cell's fused MatMul + Add should be split for WASM"
    assert not {"Enter", "LoopCond", "While"} & set(report["artifacts"]["graph"]["ops"])


def test_keras2_recurrent_layers_unrolled(conversions):
    report = conversions.ok("keras2.h5", layers=True).report
    assert report["rewrites"]["unrolled_layers"] == ["'gru' (GRU)", "'lstm' (LSTM)"]
    assert not {"Enter", "LoopCond", "While"} & set(report["artifacts"]["graph"]["ops"])


def test_multiple_inputs_and_outputs_keep_names(conversions):
    report = conversions.ok("multi_io.keras", layers=True).report
    assert [spec["name"] for spec in report["inputs"]] == ["numbers", "steps"]
    assert report["outputs"] == ["output_0", "output_1"]
    labels = {check["output"] for check in report["verification"]["checks"] if check["artifact"] == "layers"}
    assert labels <= {"kind", "size"}


def test_uint8_quantization_and_shards(conversions):
    result = conversions.ok("tabular.h5", layers=True, quantization="uint8", shard_bytes=1024)
    plain = conversions.ok("tabular.h5", layers=True)
    for folder in ("model", "layers"):
        manifest = json.loads((result.output / folder / "model.json").read_text())
        weights = [weight for group in manifest["weightsManifest"] for weight in group["weights"]]
        assert {weight["quantization"]["dtype"] for weight in weights if weight["dtype"] == "float32"} == {"uint8"}
        paths = [path for group in manifest["weightsManifest"] for path in group["paths"]]
        assert len(paths) > 1
        assert all((result.output / folder / path).stat().st_size <= 1024 for path in paths)
    assert result.report["artifacts"]["graph"]["weight_bytes"] < plain.report["artifacts"]["graph"]["weight_bytes"] / 3
    errors = result.report["quantization"]["max_abs_error"]
    assert set(errors) == {"graph", "layers"}
    assert all(error > TOLERANCE for error in errors.values())
    assert all(check.passed and check.max_abs_diff <= TOLERANCE for check in result.checks)


def test_float16_quantization(conversions):
    result = conversions.ok("cnn.keras", quantization="float16")
    manifest = json.loads((result.output / "model" / "model.json").read_text())
    dtypes = {weight.get("quantization", {}).get("dtype") for group in manifest["weightsManifest"]
              for weight in group["weights"] if weight["dtype"] == "float32"}
    assert dtypes == {"float16"}
    assert all(check.passed for check in result.checks)
    assert 0 < result.report["quantization"]["max_abs_error"]["graph"] < 0.01


@pytest.mark.parametrize("model, options, message", [
    ("custom.keras", {}, "layer 'half' uses the custom class Scale (test_convert)"),
    ("custom.h5", {}, "layer 'half' uses the custom class webml_test>Scale"),
    ("lambda.keras", {}, "layer 'affine' is a Lambda layer"),
    ("lambda.h5", {}, "layer 'affine' is a Lambda layer"),
    ("text.keras", {}, "input 'text' takes strings and the graph uses ops that TF.js 4.22 does not implement: "
                       "StringLower, StringSplitV2"),
    ("text.h5", {}, "input 'text' takes strings and the graph uses ops that TF.js 4.22 does not implement: "
                    "StringLower, StringSplitV2"),
    ("text_savedmodel", {}, "input 'text' takes strings and the graph uses ops that TF.js 4.22 does not implement: "
                            "StringLower, StringSplitV2"),
    ("gru_reset_after.keras", {"layers": True}, "layer 'gru_default' (GRU) uses reset_after=True"),
    ("variable_length.keras", {}, "layer 'lstm' (LSTM) runs over a sequence of variable length"),
    ("cnn_savedmodel", {"layers": True}, "a SavedModel holds a TensorFlow graph, not Keras layers"),
], ids=["custom-keras", "custom-h5", "lambda-keras", "lambda-h5", "text-keras", "text-h5", "text-savedmodel", "gru-layers",
        "variable-length", "savedmodel-layers"])
def test_convert_rejects_before_writing(conversions, model, options, message):
    error = conversions.error(model, **options)
    assert isinstance(error, ModelFileError)
    assert message in error.message
    output = conversions.output(model, **options)
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}.staging-*"))


def test_gru_with_reset_after_converts_as_graph(conversions):
    assert all(check.passed for check in conversions.ok("gru_reset_after.keras").checks)


def test_keras3_loop_in_savedmodel_fails_with_fix(conversions):
    error = conversions.error("sequence_savedmodel")
    assert isinstance(error, ConversionError)
    assert "the graph runs a while loop" in error.message
    assert "unroll=True" in error.message
    assert "was not written" in error.message


def test_check_rejects_tfjs_keras3_layers_output(zoo, tmp_path, browser):
    # tensorflowjs.converters.save_keras_model reports success under Keras 3, but TF.js cannot load what it writes.
    import keras
    from tensorflowjs.converters import save_keras_model

    from builder.model_check import Artifact, check_artifacts

    model = keras.saving.load_model(zoo / "cnn.keras", compile=False)
    save_keras_model(model, str(tmp_path / "layers"))
    batch = np.zeros((2, 8, 8, 1), np.float32)
    artifact = Artifact(kind="layers", directory=tmp_path / "layers", inputs=[("image", batch)], outputs=["probs"],
                        labels=["probs"], expected=[np.asarray(model(batch))], tolerance=TOLERANCE)
    checks = check_artifacts([artifact], backends=("cpu",), browser=browser)
    assert checks[0].status == "failed"
    assert "An InputLayer should be passed either a `batchInputShape` or an `inputShape`" in checks[0].detail


# Runs the real command line after replacing the graph writer with one that adds 0.5 to every
# other value of the largest float32 weight of the written model, as a mismatched weight file
# would. (Adding to all of them would shift every logit of the softmax equally and change nothing.)
DAMAGING_CLI = """
import json
import sys

import numpy as np

from builder import cli, convert_model
from builder.graph_model import rewrite_graph_model

def damaging_rewrite(source, target, **options):
    rewrite = rewrite_graph_model(source, target, **options)
    group = json.loads((target / "model.json").read_text())["weightsManifest"][0]
    assert len(group["paths"]) == 1 and all(w["dtype"] in ("float32", "int32") for w in group["weights"])
    shard = target / group["paths"][0]
    data = bytearray(shard.read_bytes())
    offset, largest = 0, (0, 0)
    for weight in group["weights"]:
        size = 4 * int(np.prod(weight["shape"], dtype=np.int64))
        if weight["dtype"] == "float32" and size > largest[1]:
            largest = (offset, size)
        offset += size
    start, size = largest
    values = np.frombuffer(bytes(data[start:start + size]), np.float32).copy()
    values[::2] += 0.5
    data[start:start + size] = values.tobytes()
    shard.write_bytes(bytes(data))
    return rewrite

convert_model.rewrite_graph_model = damaging_rewrite
sys.exit(cli.main(sys.argv[1:]))
"""


def test_damaged_weights_fail_with_max_difference(zoo, tmp_path):
    import os
    import subprocess
    import sys

    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", DAMAGING_CLI, "convert", str(zoo / "cnn.keras"), "-o", str(output)],
                            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("webml: error: the converted graph model does not match the Python model: max |diff| ")
    assert f"{output} was not written" in error
    assert "FAILED" not in result.stdout
    assert not output.exists()


def test_app_passes_webml_test(zoo, tmp_path):
    schema = tmp_path / "app.toml"
    schema.write_text("""
title = "Loan approval"
task = "binary"
labels = ["rejected", "approved"]

[input]
kind = "tabular"
features = [{ name = "age", unit = "years", min = 18, max = 90 }, "income", "debt", "rate", "score"]
""")
    output = tmp_path / "loans"
    result = run_webml("convert", str(zoo / "tabular.keras"), "-o", str(output), "--app", str(schema))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"into {output}" in result.stdout
    assert "2 browser checks passed" in result.stdout
    metadata = json.loads((output / "metadata.json").read_text())
    assert [feature["name"] for feature in metadata["input"]["features"]] == ["age", "income", "debt", "rate", "score"]
    assert metadata["output"]["labels"] == ["rejected", "approved"]
    assert all(18 <= golden["input"]["age"] <= 90 for golden in metadata["golden"])
    test = run_webml("test", str(output), "--screenshot", str(tmp_path / "loans.png"))
    assert test.returncode == 0, test.stdout + test.stderr
    assert "PASSED   parity on wasm" in test.stdout
    assert "PASSED   works offline (server stopped)" in test.stdout


def test_image_app_renders_around_cnn(zoo, tmp_path, browser):
    from builder.convert_model import ConvertOptions, convert_model

    schema = tmp_path / "image.toml"
    schema.write_text('labels = ["a", "b", "c"]\n[input]\nkind = "image"\nrange = [0, 255]\n')
    result = convert_model(zoo / "cnn.keras", tmp_path / "shapes", ConvertOptions(app_schema=schema), browser=browser)
    app = result.report["app"]
    assert app["passed"], app
    names = {check["name"] for check in app["checks"]}
    assert names >= {"parity on wasm", "parity on cpu", "works offline (server stopped)"}
    metadata = json.loads((tmp_path / "shapes" / "metadata.json").read_text())
    assert metadata["input"]["image"] == {"height": 8, "width": 8, "channels": 1, "range": [0.0, 255.0], "ink": False}
    assert len(metadata["golden"][0]["input"]) == 64
    shutil.rmtree(tmp_path / "shapes")
