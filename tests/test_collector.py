"""Monitoring collection: validation, storage on 127.0.0.1, and drift summaries."""

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
from conftest import ROOT, run_webml


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
        good = report(model=metadata["model"]["sha256"])
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
