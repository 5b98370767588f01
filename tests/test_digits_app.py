"""End to end: models/digits.toml becomes a tested, offline web app."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import run_webml

pytestmark = pytest.mark.slow


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_reaches_accuracy(digits_app):
    report = json.loads((digits_app / "report.json").read_text())
    assert report["metrics"]["primary_metric"] == "accuracy"
    assert report["metrics"]["test_primary"] >= 0.95
    assert report["metrics"]["test_primary"] > report["metrics"]["baseline_test"]["accuracy"]
    assert report["seed"] == 42
    assert report["versions"]["tensorflowjs"] == "4.22.0"
    assert report["versions"]["tfjs"] == "4.22.0"


def test_report_artifacts_have_true_hashes(digits_app):
    report = json.loads((digits_app / "report.json").read_text())
    paths = {a["path"] for a in report["artifacts"]}
    for required in ("index.html", "app.js", "sw.js", "metadata.json", "model/model.json", "manifest.webmanifest"):
        assert required in paths
    for artifact in report["artifacts"]:
        file = digits_app / artifact["path"]
        assert file.stat().st_size == artifact["bytes"], artifact["path"]
        assert sha256(file) == artifact["sha256"], artifact["path"]


def test_metadata_describes_model(digits_app):
    metadata = json.loads((digits_app / "metadata.json").read_text())
    assert metadata["output"]["labels"] == [str(i) for i in range(10)]
    assert metadata["input"]["image"] == {"height": 8, "width": 8, "channels": 1, "range": [0.0, 16.0], "ink": True}
    model_files = ["model/model.json"] + [f"model/{p}" for g in json.loads(
        (digits_app / "model/model.json").read_text())["weightsManifest"] for p in g["paths"]]
    digest = hashlib.sha256()
    for name in sorted(f.removeprefix("model/") for f in model_files):
        digest.update(name.encode() + b"\0" + bytes.fromhex(sha256(digits_app / "model" / name)))
    assert metadata["model"]["sha256"] == digest.hexdigest()
    assert len(metadata["golden"]) == 8
    for golden in metadata["golden"]:
        assert len(golden["input"]) == 64
        assert math.isclose(sum(golden["output"]), 1.0, abs_tol=1e-4)


def test_model_is_graph_model(digits_app):
    manifest = json.loads((digits_app / "model/model.json").read_text())
    assert manifest["format"] == "graph-model"
    assert manifest["convertedBy"].startswith("TensorFlow.js Converter v4.22.0")


def test_precache_lists_every_served_file(digits_app):
    from builder.render import NOT_PRECACHED, NOT_PRECACHED_DIRS
    from builder.verify import load_site

    site = load_site(digits_app)
    listed = {entry["url"]: entry for entry in site.precache["files"]}
    written = {p.relative_to(digits_app).as_posix() for p in digits_app.rglob("*") if p.is_file()}
    assert set(listed) == {p for p in written if p not in NOT_PRECACHED and not p.startswith(NOT_PRECACHED_DIRS)}
    for url, entry in listed.items():
        assert sha256(digits_app / url).startswith(entry["revision"]), url
    for runtime_file in ("runtime/tfjs-backend-wasm-simd.wasm", "app.js", "model/model.json", "metadata.json"):
        assert runtime_file in listed


def test_page_has_no_inline_script_and_a_csp(digits_app):
    html = (digits_app / "index.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    assert "<script>" not in html
    assert "https://" not in html and "http://" not in html


def test_webml_test_passes(digits_app, tmp_path):
    result = run_webml("test", str(digits_app), "--json", str(tmp_path / "result.json"),
                       "--screenshot", str(tmp_path / "digits.png"))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "result.json").read_text())
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["page loads"]["status"] == "passed"
    assert checks["no request to another origin"]["status"] == "passed"
    assert checks["service worker controls the page"]["status"] == "passed"
    for backend in ("wasm", "cpu"):
        assert checks[f"parity on {backend}"]["status"] == "passed"
        assert checks[f"parity on {backend}"]["data"]["max_abs_diff"] <= 1e-4
    assert checks["works offline (server stopped)"]["status"] == "passed"
    assert (tmp_path / "digits.png").stat().st_size > 10_000
    assert "PASSED" in result.stdout and "parity on wasm" in result.stdout


def _stroke(page, box, points):
    page.mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=5)
    page.mouse.up()


DRAWINGS = {
    "0": [[(0.5 + 0.22 * math.sin(t / 20 * 2 * math.pi), 0.5 - 0.33 * math.cos(t / 20 * 2 * math.pi)) for t in range(21)]],
    "1": [[(0.5, 0.15), (0.5, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
    "4": [[(0.6, 0.15), (0.25, 0.6), (0.75, 0.6)], [(0.6, 0.35), (0.6, 0.85)]],
}


@pytest.mark.parametrize("digit", sorted(DRAWINGS))
def test_drawn_digit_is_recognized(digits_app, browser, served, digit):
    server = served(digits_app)
    page = browser.new_page()
    try:
        page.goto(server.url)
        page.wait_for_function("() => window.webml && window.webml.state === 'ready'")
        box = page.locator("#draw-pad").bounding_box()
        for points in DRAWINGS[digit]:
            _stroke(page, box, points)
        label = page.locator("#predicted-label")
        label.wait_for()
        assert label.get_attribute("data-label") == digit
        assert label.text_content() == f"Predicted: {digit}"
        assert page.locator(".bar").count() == 10
        assert page.locator("#backend-status").get_attribute("data-backend") in ("wasm", "webgl", "cpu")
    finally:
        page.close()


def _tampered_copy(digits_app: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "digits"
    shutil.copytree(digits_app, copy)
    return copy


def test_webml_test_fails_on_wrong_golden_outputs(digits_app, tmp_path):
    from builder.render import write_service_worker

    copy = _tampered_copy(digits_app, tmp_path)
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["golden"][0]["output"] = list(reversed(metadata["golden"][0]["output"]))
    (copy / "metadata.json").write_text(json.dumps(metadata))
    write_service_worker(copy, metadata["name"])
    result = run_webml("test", str(copy), "--no-offline", "--backend", "cpu", "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1
    assert "FAILED   parity on cpu" in result.stdout
    assert "max |diff|" in result.stdout


def test_webml_test_fails_on_damaged_weights(digits_app, tmp_path):
    from builder.render import write_service_worker

    copy = _tampered_copy(digits_app, tmp_path)
    shard = next((copy / "model").glob("*.bin"))
    data = bytearray(shard.read_bytes())
    data[:64] = bytes(64)
    shard.write_bytes(bytes(data))
    write_service_worker(copy, "digits")
    result = run_webml("test", str(copy), "--no-offline", "--backend", "wasm", "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1
    assert "FAILED   parity on wasm" in result.stdout


def test_service_worker_rejects_files_of_another_build(digits_app, tmp_path):
    # A file whose bytes do not match the precache revision (a half-replaced site) must fail the
    # service worker's install instead of being cached beside the other version's files.
    copy = _tampered_copy(digits_app, tmp_path)
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["title"] = "changed after the service worker was written"
    (copy / "metadata.json").write_text(json.dumps(metadata))
    result = run_webml("test", str(copy), "--no-offline", "--backend", "cpu", "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1
    assert "FAILED   service worker controls the page" in result.stdout


def test_named_backend_missing_fails(digits_app, tmp_path):
    # digits ships wasm and cpu only. A backend requested by name must run, so its
    # absence is a failure, not a skip that leaves the command passing.
    result = run_webml("test", str(digits_app), "--no-offline", "--backend", "webgl",
                       "--screenshot", str(tmp_path / "s.png"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED   parity on webgl" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("FAILED: ")


def test_webml_test_rejects_folder_that_is_not_a_build(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    result = run_webml("test", str(tmp_path))
    assert result.returncode == 2
    assert "not a webml build" in result.stderr
    assert "Traceback" not in result.stderr
