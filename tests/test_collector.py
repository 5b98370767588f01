"""Monitoring collection and drift measures: validation, storage on 127.0.0.1, PSI and KS with
their limits, and the spec keys of monitoring and A/B builds."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from builder import stats
from builder.collector import REPORT_PATH, Collector, ReportError, validate_report
from builder.errors import SpecError
from builder.spec import load_spec
from conftest import MODELS, ROOT, run_webml

THRESHOLDS = {"psi": 0.2, "ks": 0.3, "prediction_shift": 0.2, "min_samples": 30}


def report(**changes):
    data = {
        "schema": 1, "id": uuid.uuid4().hex, "app": "digits", "model": "ab" * 32, "variant": "a",
        "client": "client-" + uuid.uuid4().hex[:12], "count": 40,
        "features": {"mean intensity": {"bins": [4] * 10, "missing": 0}},
        "predictions": {"counts": [4] * 10}, "latency_ms": {"sum": 52.0, "count": 40},
        "feedback": {"total": 3, "wrong": 1},
    }
    data.update(changes)
    return data


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except json.JSONDecodeError:
            return error.code, {"error": text.decode(errors="replace")}


@pytest.mark.parametrize("change, message", [
    ({"schema": 2}, "schema"),
    ({"inputs": [[0.0] * 64]}, "unknown key 'inputs'"),
    ({"count": -1}, "count"),
    ({"model": "not-hex"}, "model"),
    ({"features": {"age": {"bins": [1, float("inf")]}}}, "finite"),
    ({"features": {"age": {"bins": [1, 2], "values": [31, 45]}}}, "unknown key 'values'"),
    ({"predictions": {"counts": list(range(300))}}, "at most"),
], ids=["schema", "raw-inputs", "negative-count", "model-hash", "infinite-bin", "raw-values", "too-many-bins"])
def test_validate_rejects_bad_reports(change, message):
    with pytest.raises(ReportError, match=message):
        validate_report(report(**change))


def test_validate_accepts_report():
    data = report()
    assert validate_report(data) is data


def test_collector_round_trip_on_loopback(tmp_path, served):
    (tmp_path / "site").mkdir()
    collector = Collector(tmp_path / "monitor.db")
    server = served(tmp_path / "site", post_handlers=collector.handlers(), max_body_bytes=64 * 1024)
    url = server.url.rstrip("/") + REPORT_PATH
    good = report()
    assert post(url, json.dumps(good).encode()) == (200, {"stored": good["id"], "duplicate": False})
    assert post(url, json.dumps(good).encode()) == (200, {"stored": good["id"], "duplicate": True})
    status, answer = post(url, b"{not json")
    assert status == 400 and "invalid JSON" in answer["error"]
    status, answer = post(url, json.dumps(report(inputs=[1, 2])).encode())
    assert status == 400 and "unknown key 'inputs'" in answer["error"]
    status, _ = post(url, b"x" * (65 * 1024))
    assert status == 413
    status, _ = post(server.url.rstrip("/") + "/elsewhere", json.dumps(good).encode())
    assert status == 405
    rows = sqlite3.connect(tmp_path / "monitor.db").execute("SELECT id, variant FROM reports").fetchall()
    assert rows == [(good["id"], "a")]


def test_psi_and_ks_detect_shift():
    expected = [0.1] * 10
    assert stats.psi(expected, [10] * 10) < 1e-9
    assert stats.binned_ks(expected, [10] * 10) < 1e-9
    shifted = [0, 0, 0, 0, 0, 10, 20, 30, 20, 20]
    assert stats.psi(expected, shifted) > 0.5
    assert stats.binned_ks(expected, shifted) == pytest.approx(0.5)


def test_numeric_bins_follow_training_deciles():
    values = np.arange(1000, dtype=np.float64)
    edges = stats.numeric_edges(values)
    assert len(edges) == 9
    counts = stats.bin_numeric(values, edges)
    assert counts.sum() == 1000
    assert abs(counts - 100).max() <= 1


def small_metadata(model: str = "cd" * 32) -> dict:
    """metadata.json of a made-up build: one numeric feature with 3 bins and two classes."""
    return {"name": "toy", "model": {"sha256": model}, "monitor": {
        "thresholds": THRESHOLDS, "collect_url": "",
        "features": [{"name": "age", "kind": "numeric", "edges": [30.0, 50.0], "expected": [0.3, 0.4, 0.3],
                      "missing_rate": 0.0, "train_samples": 200}],
        "predictions": {"kind": "classes", "labels": ["no", "yes"], "expected": [0.5, 0.5], "samples": 50}}}


def test_collector_checks_registered_bins(tmp_path):
    collector = Collector(tmp_path / "monitor.db")
    collector.register_app(small_metadata())

    def toy(**changes):
        return report(**{"app": "toy", "model": "cd" * 32, "features": {"age": {"bins": [1, 2, 3], "missing": 0}},
                         "predictions": {"counts": [3, 3]}, **changes})

    try:
        assert collector.store(json.dumps(toy()).encode())[0] == 200
        status, answer = collector.store(json.dumps(toy(features={"age": {"bins": [1, 2], "missing": 0}})).encode())
        assert status == 400
        assert answer["error"] == "report.features['age'].bins has 2 bins; model cdcdcdcdcdcd has 3"
        status, answer = collector.store(json.dumps(toy(features={"height": {"bins": [1], "missing": 0}})).encode())
        assert (status, answer["error"]) == (400, "report.features has unknown feature 'height' for model cdcdcdcdcdcd")
        status, answer = collector.store(json.dumps(toy(predictions={"counts": [1, 2, 3]})).encode())
        assert (status, answer["error"]) == (400, "report.predictions.counts has 3 entries; model cdcdcdcdcdcd has 2")
        # A model no served build registered (an older version still open somewhere) is accepted.
        assert collector.store(json.dumps(toy(model="ef" * 32, features={"x": {"bins": [1]}})).encode())[0] == 200
    finally:
        collector.close()
    # The registration lasts: a new collector on the same file checks the same way.
    reopened = Collector(tmp_path / "monitor.db")
    try:
        assert reopened.store(json.dumps(toy(features={"age": {"bins": [1], "missing": 0}})).encode())[0] == 400
    finally:
        reopened.close()


def test_feature_drift_counts_missing_values():
    feature = small_metadata()["monitor"]["features"][0]
    blank = stats.feature_drift(feature, [0, 0, 0], 100, THRESHOLDS, 1)
    assert blank["samples"] == 100
    assert blank["missing_rate"] == 1.0
    assert blank["ks"] == 0.0
    assert blank["psi"] > 5
    assert blank["drifted"] is True
    steady = stats.feature_drift(feature, [30, 40, 30], 0, THRESHOLDS, 1)
    # Only the pseudo-counts of the smoothing keep it above 0.
    assert steady["psi"] < 1e-3
    assert steady["drifted"] is False


def test_drift_limits_follow_sample_size():
    feature = {"name": "x", "kind": "numeric", "edges": [float(i) for i in range(1, 10)], "expected": [0.1] * 10,
               "missing_rate": 0.0, "train_samples": 120}
    small = stats.feature_drift(feature, [3] * 10, 0, THRESHOLDS, 4)
    large = stats.feature_drift(feature, [10_000] * 10, 0, THRESHOLDS, 4)
    assert small["psi_limit"] > 0.5
    assert large["psi_limit"] == pytest.approx(
        max(0.2, stats.chi2_upper_quantile(9, 0.0025) * (1 / 100_000 + 1 / 120)))
    assert large["ks_limit"] == 0.3
    # The closed-form quantiles the app repeats stay close to exact ones.
    from scipy.stats import chi2, norm

    assert stats.normal_upper_quantile(0.0025) == pytest.approx(norm.isf(0.0025), abs=5e-4)
    for df in (1, 2, 9, 30):
        assert stats.chi2_upper_quantile(df, 0.0025) == pytest.approx(chi2.isf(0.0025, df), rel=0.03)


def test_no_warning_by_chance_on_training_distribution():
    # Training and live samples drawn from one distribution: the rule warns in at most a few
    # percent of trials, where a bare PSI threshold of 0.2 warns in most of them at n = 40.
    rng = np.random.default_rng(11)
    warned = bare = 0
    trials = 400
    for _ in range(trials):
        training = rng.normal(size=120)
        edges = stats.numeric_edges(training)
        feature = {"name": "x", "kind": "numeric", "edges": edges, "missing_rate": 0.0, "train_samples": 120,
                   "expected": stats.proportions(stats.bin_numeric(training, edges)).tolist()}
        live = stats.bin_numeric(rng.normal(size=40), edges).tolist()
        drift = stats.feature_drift(feature, live, 0, THRESHOLDS, 1)
        warned += drift["drifted"]
        bare += drift["psi"] > THRESHOLDS["psi"]
    assert warned / trials <= 0.03
    assert bare / trials > 0.5


def test_prediction_shift_needs_enough_predictions():
    predictions = small_metadata()["monitor"]["predictions"]
    assert stats.prediction_shift(predictions, [20, 20], THRESHOLDS)["shifted"] is False
    assert stats.prediction_shift(predictions, [2, 38], THRESHOLDS)["shifted"] is True
    few = stats.prediction_shift(predictions, [0, 10], THRESHOLDS)
    assert few["psi"] > THRESHOLDS["prediction_shift"]
    assert few["shifted"] is False
    labels = {"kind": "labels", "labels": ["a", "b"], "positive_rate": [0.5, 0.1], "samples": 100}
    assert stats.prediction_shift(labels, [50, 10, 100], THRESHOLDS)["psi"] < 1e-3
    assert stats.prediction_shift(labels, [50, 60, 100], THRESHOLDS)["shifted"] is True


@pytest.mark.parametrize(("override", "message"), [
    ({"app.ab_variants": ["float32"]}, "must name two different model variants"),
    ({"app.ab_variants": ["float32", "float32"]}, "must name two different model variants"),
    ({"app.ab_variants": ["float32", "uint9"]}, "names 'uint9', which this build does not make (did you mean 'uint8'?)"),
    ({"app.ab_variants": ["float32", "pruned-uint8"]}, "which this build does not make"),
    ({"monitor.collect_url": "https://collector.example/api"}, "use a path on the app's own origin"),
    ({"monitor.collect_url": "//collector.example/api"}, "use a path on the app's own origin"),
    ({"app.ab_split": 1.5}, "is out of range"),
], ids=["one-variant", "same-twice", "unknown", "pruned-without-pruning", "other-origin", "scheme-relative", "split"])
def test_spec_rejects_bad_monitoring_keys(override, message):
    with pytest.raises(SpecError) as error:
        load_spec(MODELS / "wine.toml", override)
    assert message in str(error.value)


def test_spec_accepts_ab_and_collect_path():
    spec = load_spec(MODELS / "wine.toml", {"app.ab_variants": ["float32", "pruned-uint8"],
                                            "optimize.pruning_sparsity": 0.5, "monitor.collect_url": "/api/monitor"})
    assert spec.app.ab_variants == ("float32", "pruned-uint8")
    assert spec.monitor.collect_url == "/api/monitor"


@pytest.mark.slow
def test_acknowledged_report_survives_kill(digits_app, tmp_path):
    database = tmp_path / "monitor.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "builder", "serve", str(digits_app), "--port", str(port),
                                "--collect", str(database)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        url = f"http://127.0.0.1:{port}{REPORT_PATH}"
        for _ in range(100):
            try:
                status, _ = post(url, b"{}")
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        metadata = json.loads((digits_app / "metadata.json").read_text())
        # Bins as many as the build's own, which `serve --collect` registered.
        bins = {f["name"]: {"bins": [4] * len(f["expected"]), "missing": 0} for f in metadata["monitor"]["features"]}
        good = report(model=metadata["model"]["sha256"], features=bins)
        assert post(url, json.dumps(good).encode())[0] == 200
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    rows = sqlite3.connect(database).execute("SELECT id FROM reports").fetchall()
    assert rows == [(good["id"],)]
    summary = run_webml("monitor", str(database))
    assert summary.returncode == 0, summary.stderr
    assert "variant a" in summary.stdout
    assert "mean intensity" in summary.stdout


def test_serve_collect_warns_without_collect_url(digits_app, tmp_path):
    # digits is built without monitor.collect_url, so its pages never post to the collector.
    process = subprocess.Popen([sys.executable, "-m", "builder", "serve", str(digits_app), "--port", "0",
                                "--collect", str(tmp_path / "monitor.db")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("collecting monitoring reports at /api/monitor")
        assert process.stdout.readline().startswith(f"serving {digits_app} at http://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert (f"warning: {digits_app} was built without monitor.collect_url, so its pages send no reports; "
            'rebuild with --set monitor.collect_url="/api/monitor"') in stderr.splitlines()


def test_monitor_hides_limits_below_min_samples(tmp_path):
    collector = Collector(tmp_path / "monitor.db")
    collector.register_app(small_metadata())
    try:
        few = report(app="toy", model="cd" * 32, count=6, features={"age": {"bins": [0, 0, 6], "missing": 0}},
                     predictions={"counts": [0, 6]})
        assert collector.store(json.dumps(few).encode())[0] == 200
    finally:
        collector.close()
    result = run_webml("monitor", str(tmp_path / "monitor.db"))
    assert result.returncode == 0, result.stderr
    age = next(line for line in result.stdout.splitlines() if line.startswith("  age"))
    assert age.split()[1] == "6"
    assert age.split()[3] == "-"
    assert age.endswith("(fewer than 30 inputs)")
