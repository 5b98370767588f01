"""Quantization and pruning: per-tensor precision, browser-measured variants, selection."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from builder import optimize, sensitivity
from conftest import MODELS


def test_quantization_error_small_for_normal_weights():
    weights = np.random.default_rng(0).normal(0, 0.1, size=(64, 64)).astype(np.float32)
    assert optimize.quantization_error(weights, "uint8") < 0.01
    assert optimize.quantization_error(weights, "uint16") < 1e-4
    assert optimize.quantization_error(weights, "float16") < 1e-3
    assert optimize.quantization_error(weights, "float32") == 0.0


def test_outlier_pushes_tensor_up_the_ladder():
    weights = np.random.default_rng(0).normal(0, 0.1, size=(64, 64)).astype(np.float32)
    weights[3, 5] = 50.0
    plans = {p.name: p for p in optimize.plan_tensors({"kernel": weights, "bias": np.zeros(64, np.float32)}, "uint8", 0.05)}
    assert plans["kernel"].dtype == "uint16"
    assert "uint8 weight error" in plans["kernel"].reason
    assert plans["bias"].dtype == "uint8"


def test_float16_range_keeps_float32():
    weights = np.ones((8, 8), dtype=np.float32)
    weights[0, 0] = 1e6
    (plan,) = optimize.plan_tensors({"kernel": weights}, "float16", 0.05)
    assert plan.dtype == "float32"
    assert "outside the float16 range" in plan.reason


def test_int_tensors_are_never_quantized():
    (plan,) = optimize.plan_tensors({"shape": np.array([1, 64], dtype=np.int32)}, "uint8", 0.05)
    assert plan.dtype == "float32"
    assert plan.reason == ""


def test_deviation_of_probabilities_is_absolute():
    reference = [np.array([[0.9, 0.1], [0.5, 0.5]], dtype=np.float32)]
    moved = [np.array([[0.8, 0.2], [0.5, 0.5]], dtype=np.float32)]
    assert sensitivity.output_deviation(reference, moved, probabilities=True) == pytest.approx(0.1, abs=1e-6)


def test_deviation_of_regression_uses_spread():
    # Predictions 100 ± 10: a shift of 1 is 1/10 of their standard deviation, whatever the offset.
    reference = [np.array([[90.0], [110.0]])]
    moved = [np.array([[91.0], [110.0]])]
    assert sensitivity.output_deviation(reference, moved, probabilities=False) == pytest.approx(0.1)


def test_deviation_of_constant_column_uses_rms():
    reference = [np.array([[4.0], [4.0]])]
    moved = [np.array([[4.0], [5.0]])]
    assert sensitivity.output_deviation(reference, moved, probabilities=False) == pytest.approx(0.25)


def test_deviation_of_nan_output_is_infinite():
    reference = [np.array([[0.5, 0.5]])]
    moved = [np.array([[np.nan, 0.5]])]
    assert sensitivity.output_deviation(reference, moved, probabilities=True) == float("inf")


def test_sample_rows_are_evenly_spaced():
    rows = np.arange(1000).reshape(-1, 1)
    chosen = sensitivity.sample_rows(rows, 5)
    assert chosen[:, 0].tolist() == [0, 250, 500, 749, 999]
    assert sensitivity.sample_rows(rows[:3], 5).shape == (3, 1)


@pytest.fixture(scope="module")
def wide_scale_model():
    """A converted model whose in-model Normalization is adapted to features from ~0.3 to ~750, like wine's.

    Returns (work folder, SavedModel, float32 graph model folder, training rows, held-out rows,
    normalization mean). The Dense weights are Keras' seeded random initialization: every
    normalized feature moves the outputs, so the small features' means matter.
    """
    import keras

    from builder import convert

    rng = np.random.default_rng(0)
    scales = np.geomspace(0.3, 750.0, num=13).astype(np.float32)
    rows = (rng.normal(1.0, 0.1, size=(400, 13)) * scales).astype(np.float32)
    keras.utils.set_random_seed(0)
    normalization = keras.layers.Normalization()
    normalization.adapt(rows[:300])
    inputs = keras.Input(shape=(13,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(normalization(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        convert.export_saved_model(model, work / "saved_model")
        convert.convert_saved_model(work / "saved_model", work / "float32")
        mean = np.asarray(normalization.mean).reshape(-1)
        yield work, work / "saved_model", work / "float32", rows[:300], rows[300:], mean


def test_wide_scale_normalization_is_protected(wide_scale_model):
    from builder.graph_model import load_graph_model, read_graph_weights

    work, saved_model, float32_dir, train_rows, held_out, mean = wide_scale_model
    weights = read_graph_weights(float32_dir)
    (mean_name,) = [name for name, values in weights.items()
                    if values.size == mean.size and np.allclose(values.reshape(-1), mean)]
    # The weight statistic alone passes the mean: its relative RMS error at uint8 is small.
    assert optimize.quantization_error(weights[mean_name], "uint8") < 0.05

    variants = optimize.make_variants(saved_model, float32_dir, work / "variants", ["float32", "uint8"], 0.05,
                                      4 * 1024 * 1024, samples=sensitivity.sample_rows(train_rows),
                                      probabilities=True)
    uint8 = next(v for v in variants if v.name == "uint8")
    protected = {t.name: t for t in uint8.protected}
    assert mean_name in protected
    assert protected[mean_name].dtype in ("uint16", "float16")
    assert "uint8 moves outputs by" in protected[mean_name].reason
    assert protected[mean_name].deviation <= 0.05

    float32_outputs = load_graph_model(float32_dir)(held_out)
    planned = np.abs(load_graph_model(uint8.directory)(held_out) - float32_outputs).max()
    assert planned < 0.05

    # Every tensor at uint8, the mean included, moves the outputs far: that is what the plan avoids.
    from builder import convert

    blind = convert.convert_saved_model(saved_model, work / "blind", quantization={"uint8": ["*"]})
    blind_diff = np.abs(load_graph_model(blind.directory)(held_out) - float32_outputs).max()
    assert blind_diff > 0.3


def test_weights_only_plan_misses_wide_scale_mean(wide_scale_model):
    from builder.graph_model import read_graph_weights

    _, _, float32_dir, _, _, mean = wide_scale_model
    weights = read_graph_weights(float32_dir)
    plans = {p.name: p for p in optimize.plan_tensors(weights, "uint8", 0.05)}
    (mean_name,) = [name for name, values in weights.items()
                    if values.size == mean.size and np.allclose(values.reshape(-1), mean)]
    # Without sample inputs only the weight error is checked, and it passes the damaging uint8 mean.
    assert plans[mean_name].dtype == "uint8"
    assert plans[mean_name].deviation is None


@pytest.mark.slow
def test_digits_report_lists_every_variant(digits_app):
    report = json.loads((digits_app / "report.json").read_text())
    optimization = report["optimization"]
    variants = {v["name"]: v for v in optimization["variants"]}
    expected = {"float32", "float16", "uint16", "uint8"}
    assert expected | {f"pruned-{n}" for n in expected} == set(variants)
    for variant in variants.values():
        assert variant["bytes"]["raw"] > variant["bytes"]["gzip"] > 0
        assert variant["bytes"]["brotli"] > 0
        assert 0.0 <= variant["browser_metric"] <= 1.0
        assert variant["max_abs_diff_vs_float32"] >= 0.0
    ratio = variants["float32"]["bytes"]["weights"] / variants["uint8"]["bytes"]["weights"]
    assert 3.5 < ratio <= 4.0
    assert variants["float32"]["max_abs_diff_vs_float32"] == 0.0
    assert variants["uint8"]["max_abs_diff_vs_float32"] > 0.0


@pytest.mark.slow
def test_digits_ships_variant_within_budget(digits_app):
    report = json.loads((digits_app / "report.json").read_text())
    optimization = report["optimization"]
    variants = {v["name"]: v for v in optimization["variants"]}
    shipped = variants[optimization["selected"]]
    assert shipped["selected"] and shipped["within_budget"]
    assert shipped["browser_metric"] >= variants["float32"]["browser_metric"] - 0.01
    smaller_in_budget = [v for v in variants.values() if v["within_budget"] and v["bytes"]["gzip"] < shipped["bytes"]["gzip"]]
    assert smaller_in_budget == []
    metadata = json.loads((digits_app / "metadata.json").read_text())
    assert metadata["model"]["variant"] == shipped["name"]
    manifest = json.loads((digits_app / "model" / "model.json").read_text())
    dtypes = {w["quantization"]["dtype"] if "quantization" in w else w["dtype"]
              for group in manifest["weightsManifest"] for w in group["weights"]}
    if shipped["quantization"] != "float32":
        assert shipped["quantization"] in dtypes


@pytest.mark.slow
def test_digits_pruning_reaches_target(digits_app):
    report = json.loads((digits_app / "report.json").read_text())
    pruning = report["optimization"]["pruning"]
    assert pruning["target"] == 0.5
    assert abs(pruning["reached"] - 0.5) < 0.01
    variants = {v["name"]: v for v in report["optimization"]["variants"]}
    assert variants["pruned-float32"]["sparsity"] > 0.45
    # Zeros pay off only compressed: same raw size, smaller gzip.
    assert variants["pruned-float32"]["bytes"]["raw"] == variants["float32"]["bytes"]["raw"]
    assert variants["pruned-float32"]["bytes"]["gzip"] < variants["float32"]["bytes"]["gzip"]


@pytest.fixture(scope="module")
def fragile_digits():
    """A digits model trained briefly, with one first-layer weight turned into a large outlier."""
    from builder import train
    from builder.data import load_dataset
    from builder.spec import load_spec

    spec = load_spec(MODELS / "digits.toml", {"model.epochs": 40, "optimize.pruning_sparsity": 0.0,
                                              "optimize.variants": ["float32", "uint8"]})
    training = train.run(spec, load_dataset(spec))
    kernel = training.model.get_layer("dense1").kernel
    values = kernel.numpy()
    values[10, 3] = 1.0e5
    kernel.assign(values)
    return spec, training


@pytest.mark.slow
def test_fragile_model_does_not_get_blind_uint8(fragile_digits, browser):
    from builder import build, convert, tasks
    from builder.graph_model import load_graph_model

    spec, training = fragile_digits
    split = training.split
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        candidates = build.convert_candidates(spec, training, work / "work")
        uint8 = next(v for v in candidates if v.name == "uint8")
        protected = {t.name: t for t in uint8.protected}
        assert len(protected) == 1
        (tensor,) = protected.values()
        assert tensor.dtype == "float32"
        assert "outside the float16 range" in tensor.reason

        from builder.bundle import bundle_app

        (work / "site").mkdir()
        float32 = next(v for v in candidates if v.name == "float32")
        bundle_app(work / "site", ["wasm", "cpu"], float32.directory)
        result = build.measure_and_select(spec, training, candidates, work / "site", ["wasm", "cpu"], browser=browser)
        record = result["record"]
        variants = {v["name"]: v for v in record["variants"]}
        assert variants["uint8"]["protected_tensors"][0]["name"] == tensor.name
        assert variants["uint8"]["within_budget"]

        # The blind alternative, every tensor at uint8, loses the model: that is what the plan avoids.
        blind = convert.convert_saved_model(work / "work" / "saved_model-trained", work / "blind",
                                            quantization={"uint8": ["*"]})
        outputs = load_graph_model(blind.directory)(split.x_test)
        blind_accuracy = tasks.score("multiclass", split.y_test, outputs)["accuracy"]
        assert blind_accuracy < variants["float32"]["browser_metric"] - 0.1
