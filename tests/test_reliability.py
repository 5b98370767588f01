"""Atomic, incremental and reproducible builds, and an app that keeps raw inputs on the device.

One small CSV project (a binary task with a categorical input, a float32 and a uint8 variant and
a pruned copy) is built once per module. The tests build it again with a fresh cache, which must
give identical file hashes, and with a changed [app] section, which must reuse training and
conversion from the cache. Further builds are stopped: a changed data file by SIGINT, one by
SIGTERM while bundling and one by SIGKILL during browser verification. The first build must
stay byte for byte intact and pass `webml test`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, build_or_fail, run_webml

pytestmark = pytest.mark.slow

SPEC = """\
name = "fields"
title = "Field trial"
seed = 11

[data]
source = "fields.csv"
target = ["healthy"]

[validation]
protocol = "holdout"

[model]
units = [8]
epochs = 12
patience = 4
learning_rate = 0.01

[scale_up]
enabled = false

[tuning]
enabled = false

[optimize]
variants = ["float32", "uint8"]
pruning_sparsity = 0.5
pruning_epochs = 2

[app]
backends = ["wasm", "cpu"]
examples = 2

[monitor]
collect_url = "/api/monitor"

[verify]
offline = false
"""
# Raw inputs typed into the page; no request may carry them.
SECRET_HEIGHT = "83.71942"
SECRET_RAIN = "4.52817"
REPORT_FILES = ("report.json", "report.html")
# AppServer logs each request as '127.0.0.1 "GET /model/model.json HTTP/1.1" 200 -'.
REQUEST_LINE = re.compile(r'"(\w+) (\S+) HTTP/[\d.]+"')


def write_fields_csv(path: Path, rows: int = 160, seed: int = 2) -> None:
    """A learnable binary task: healthy when height and rain are high, on loam more often."""
    rng = np.random.default_rng(seed)
    soils = ["clay", "loam", "sand"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["height (cm)", "rain (mm)", "soil", "healthy"])
        for _ in range(rows):
            height = rng.uniform(20, 120)
            rain = rng.uniform(0, 10)
            soil = soils[rng.integers(3)]
            score = 0.03 * height + 0.4 * rain + (1.0 if soil == "loam" else 0.0) - 3.5 + rng.normal(0, 0.4)
            writer.writerow([f"{height:.1f}", f"{rain:.2f}", soil, "yes" if score > 0 else "no"])


def file_hashes(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def leftovers(output: Path) -> list[str]:
    """Staging and scratch folders of builds next to ``output``."""
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}."))


def build_env(cache: Path) -> dict[str, str]:
    return {"WEBML_CACHE_DIR": str(cache)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fields")
    write_fields_csv(folder / "fields.csv")
    (folder / "fields.toml").write_text(SPEC)
    return folder


@pytest.fixture(scope="module")
def first(project: Path) -> dict:
    """The first build, with its own cache: the output every later test must leave intact."""
    output = project / "dist" / "fields"
    result = run_webml("build", str(project / "fields.toml"), "-o", str(output), env=build_env(project / "cache"))
    if result.returncode != 0:
        pytest.fail(f"first build failed:\n{result.stderr[-4000:]}")
    report = json.loads((output / "report.json").read_text())
    return {"output": output, "report": report, "hashes": file_hashes(output), "stderr": result.stderr}


def start_build(project: Path, output: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "builder", "build", str(project / "fields.toml"), "-o", str(output), *extra]
    # A session of its own, so a signal can go to the build's whole process group the way a
    # terminal sends Ctrl-C.
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", **build_env(project / "cache")},
                            start_new_session=True)


def read_until(process: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    """Read stderr lines until one starts with ``marker``; fail if the build ends first."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if line.startswith(marker):
            return lines
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail(f"the build never printed {marker!r}:\n" + "\n".join(lines[-30:]))


def descendants(pid: int) -> set[int]:
    """Process ids below ``pid`` (the browser and Playwright's driver), read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# Reproducibility ----------------------------------------------------------------------------------


def test_report_records_seeds_and_cache(first):
    report = first["report"]
    assert report["seeds"]["spec"] == 11
    assert report["versions"]["tensorflow"] != "not installed"
    assert len(report["model"]["weights_sha256"]) == 64
    assert {name: stage["status"] for name, stage in report["cache"]["stages"].items()} == {
        "train": "miss", "convert": "miss"}
    variants = {v["name"] for v in report["optimization"]["variants"]}
    assert variants == {"float32", "uint8", "pruned-float32", "pruned-uint8"}


def test_two_builds_have_identical_hashes(first, project):
    # A second cache folder, so this build trains and converts from scratch.
    output = project / "again" / "fields"
    result = run_webml("build", str(project / "fields.toml"), "-o", str(output), env=build_env(project / "cache-2"))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "report.json").read_text())
    assert report["cache"]["stages"]["train"]["status"] == "miss"
    assert report["model"]["weights_sha256"] == first["report"]["model"]["weights_sha256"]
    hashes = file_hashes(output)
    assert sorted(hashes) == sorted(first["hashes"])
    differing = sorted(name for name in hashes if hashes[name] != first["hashes"][name])
    # Only the report differs: it records timings and the verification server's port.
    assert set(differing) <= set(REPORT_FILES)
    assert report["artifacts"] == first["report"]["artifacts"]


# Incremental builds -----------------------------------------------------------------------------


def test_app_change_reuses_cached_stages(first, project):
    output = project / "retitled" / "fields"
    result = run_webml("build", str(project / "fields.toml"), "-o", str(output), "--set", 'app.title="Trial plots"',
                       env=build_env(project / "cache"))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "report.json").read_text())
    assert report["cache"]["stages"]["train"]["status"] == "hit"
    assert report["cache"]["stages"]["convert"]["status"] == "hit"
    assert "reused the trained model from the cache" in result.stderr
    assert "training the final model" not in result.stderr
    assert "cache:  train and convert reused from" in result.stdout
    assert report["model"]["weights_sha256"] == first["report"]["model"]["weights_sha256"]
    hashes = file_hashes(output)
    model_files = [name for name in hashes if name.startswith("model/")]
    assert model_files
    assert all(hashes[name] == first["hashes"][name] for name in model_files)
    assert hashes["index.html"] != first["hashes"]["index.html"]
    assert "Trial plots" in (output / "index.html").read_text()
    assert "reused from the cache" in (output / "report.html").read_text()


def test_no_cache_flag_trains_again(first, project):
    from builder.stage_cache import digest_json, training_inputs
    from builder.spec import load_spec

    output = project / "uncached" / "fields"
    result = run_webml("build", str(project / "fields.toml"), "-o", str(output), "--no-cache",
                       "--set", "verify.backends=[\"cpu\"]", env=build_env(project / "cache"))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "report.json").read_text())
    assert report["cache"] == {"enabled": False, "directory": "", "stages": {}}
    assert "training the final model" in result.stderr
    assert report["model"]["weights_sha256"] == first["report"]["model"]["weights_sha256"]
    key = digest_json(training_inputs(load_spec(project / "fields.toml")))
    assert first["report"]["cache"]["stages"]["train"]["key"] == key


# Interrupted builds ------------------------------------------------------------------------------


def test_sigint_keeps_previous_output(first, project):
    # A changed data file must train again; Ctrl-C during the browser checks must then leave the
    # first build as it was and remove the staging folder.
    data = project / "fields.csv"
    original = data.read_text()
    rows = original.splitlines()
    rows[5] = rows[5].replace("yes", "no") if "yes" in rows[5] else rows[5].replace("no", "yes")
    data.write_text("\n".join(rows) + "\n")
    try:
        process = start_build(project, first["output"])
        lines = read_until(process, "* verifying the app in Chromium")
        lines += read_until(process, "* checking ")
        # Ctrl-C reaches the build, Playwright's driver and Chromium at once.
        os.killpg(process.pid, signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        data.write_text(original)
    stderr = "\n".join(lines) + "\n" + rest
    assert "reused the trained model" not in stderr
    assert "starting model: validation" in stderr
    assert process.returncode == 130
    # The line may add that cli's watchdog cut a stuck cleanup short; the output is unchanged either way.
    assert stderr.rstrip().splitlines()[-1].startswith("webml: interrupted; the previous output is unchanged")
    assert file_hashes(first["output"]) == first["hashes"]
    assert leftovers(first["output"]) == []


STUCK_CLEANUP = """
import sys, time
from pathlib import Path
from builder import cli, output

cli.SIGNAL_GRACE_SECONDS = 1


def stuck(args, reporter):
    output.staging_dir(Path(sys.argv[1]) / "app")
    print("staged", flush=True)
    try:
        time.sleep(60)
    finally:
        time.sleep(60)  # a cleanup that never returns


cli.COMMANDS["build"] = stuck
sys.exit(cli.main(["build", "spec.toml"]))
"""


def test_stuck_cleanup_is_cut_short(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", STUCK_CLEANUP, str(tmp_path)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == "staged"
    assert (tmp_path / f".app.staging-{process.pid}").is_dir()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.rstrip().splitlines()[-1] == (
        "webml: interrupted; the previous output is unchanged (cleanup took over 1 s and was cut short)")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_keeps_previous_output(first, project):
    # SIGTERM becomes an exception, so the staging and scratch folders are removed on the way out.
    process = start_build(project, first["output"], "--set", 'app.title="Terminated"')
    read_until(process, "* bundling the TF.js runtime")
    process.terminate()
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert rest.rstrip().splitlines()[-1] == "webml: terminated; the previous output is unchanged"
    assert file_hashes(first["output"]) == first["hashes"]
    assert leftovers(first["output"]) == []


def test_sigkill_keeps_previous_output(first, project):
    from builder.output import recover

    process = start_build(project, first["output"], "--set", 'app.title="Killed"')
    read_until(process, "* checking ")  # the browser is up and checking the staged app
    children = descendants(process.pid)
    assert children, "verification runs Playwright's driver and Chromium as child processes"
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert file_hashes(first["output"]) == first["hashes"]
    stale = leftovers(first["output"])
    assert [name.split("-")[0] for name in stale] == [".fields.staging"]

    # The browser dies with the build: Playwright's driver exits when its pipe to the build closes.
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []

    # The next build starts with recover(), which removes folders of processes that are gone.
    recover(first["output"])
    assert leftovers(first["output"]) == []
    assert file_hashes(first["output"]) == first["hashes"]


def test_previous_output_passes_webml_test(first, tmp_path):
    result = run_webml("test", str(first["output"]), "--screenshot", str(tmp_path / "shot.png"))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "passed:" in result.stdout
    assert file_hashes(first["output"]) == first["hashes"]


# Privacy: what the page sends ------------------------------------------------------------------


class RequestLog(logging.Handler):
    """Collects the request lines AppServer logs at DEBUG level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_raw_inputs_stay_on_device(first, browser, served, tmp_path):
    from builder.collector import REPORT_PATH, Collector, validate_report

    output = first["output"]
    metadata = json.loads((output / "metadata.json").read_text())
    collector = Collector(tmp_path / "monitor.db")
    collector.register_app(metadata)
    bodies: list[bytes] = []

    def record(handler, body):
        bodies.append(body)
        return collector.store(body)

    log = RequestLog()
    server_log = logging.getLogger("builder.serve")
    previous_level = server_log.level
    server_log.setLevel(logging.DEBUG)
    server_log.addHandler(log)
    context = browser.new_context(locale="en-US")
    page_requests: list[tuple[str, str, str | None]] = []
    context.on("request", lambda request: page_requests.append((request.method, request.url, request.post_data)))
    try:
        server = served(output, post_handlers={REPORT_PATH: record})
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_function("() => window.webml && window.webml.state !== 'loading'", timeout=90_000)
        names = [feature["name"] for feature in metadata["input"]["features"]]
        page.fill(f"#feature-{names.index('height (cm)')}", SECRET_HEIGHT)
        page.fill(f"#feature-{names.index('rain (mm)')}", SECRET_RAIN)
        for _ in range(3):
            before = page.evaluate("() => webml.predictionCount")
            page.click("#predict-button")
            page.wait_for_function("count => webml.predictionCount > count", arg=before)
        # Leaving the page is when an app would flush what it gathered.
        page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
        page.close(run_before_unload=True)
    finally:
        context.close()
        server_log.removeHandler(log)
        server_log.setLevel(previous_level)
        collector.close()

    built_files = {path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file()}
    assert page_requests, "the page made no request at all"
    for method, url, body in page_requests:
        # blob: URLs (the WASM backend's workers) name memory of this page, not the network.
        assert url.startswith((server.url, "blob:" + server.url)), url
        assert SECRET_HEIGHT not in url
        assert SECRET_RAIN not in url
        if method == "POST":
            assert url == server.url.rstrip("/") + REPORT_PATH
            assert SECRET_HEIGHT not in (body or "")
            assert SECRET_RAIN not in (body or "")
        else:
            assert method == "GET"
    served_requests = [REQUEST_LINE.search(line) for line in log.lines]
    served_requests = [match.groups() for match in served_requests if match]
    assert served_requests, "the server logged no request"
    for method, path in served_requests:
        line = f"{method} {path}"
        assert method in ("GET", "POST"), line
        assert SECRET_HEIGHT not in path
        assert SECRET_RAIN not in path
        if method == "GET":
            assert path.split("?")[0].lstrip("/") in built_files | {""}, line
    for body in bodies:
        # Reports carry counts only: validate_report rejects any key that is not a count.
        validate_report(json.loads(body))
        assert SECRET_HEIGHT.encode() not in body
        assert SECRET_RAIN.encode() not in body
