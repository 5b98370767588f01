"""webml benchmarks: build time, browser latency against native TensorFlow, first-visit bytes,
start-up time, model variants, JS heap and tensor leaks.

Run after `make demo` (or `make setup`):

    .venv/bin/python bench/run.py            # full run, writes docs/benchmarks.md
    .venv/bin/python bench/run.py --quick    # fewer repetitions, for a smoke test

Every figure is measured in this run on this machine; comparisons are ratios of medians measured
in the same run. Raw results go to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import builder  # noqa: E402,F401  (sets environment variables that TensorFlow imports read)
import browser as browser_bench  # noqa: E402
import native  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FULL_BUNDLE = ROOT / "web" / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
BUILD_SPECS = {"digits": "models/digits.toml", "breast_cancer": "models/breast_cancer.toml"}
LATENCY_MODELS = {"digits MLP": "models/digits.toml", "digits CNN": "models/digits_cnn.toml"}
LATENCY_BACKENDS = ["wasm", "webgl", "cpu"]
TARGETS = {
    "build_seconds": 90.0,
    "mlp_ratio": 1.0,
    "cnn_ratio": 2.0,
    "transfer_share": 0.35,
    "offline_start_ms": 500.0,
}


def run_build(spec: str, output: Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Run `webml build` in a fresh cache folder so that no stage is reused; return its report."""
    with tempfile.TemporaryDirectory(prefix="webml-bench-cache-") as cache:
        command = [sys.executable, "-m", "builder", "-q", "build", spec, "--output", str(output)]
        for item in overrides:
            command += ["--set", item]
        environment = {**os.environ, "WEBML_CACHE_DIR": cache, "NO_COLOR": "1"}
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"webml build {spec} failed:\n{completed.stderr[-3000:]}")
    return json.loads((output / "report.json").read_text())


def measure_builds(repeats: int) -> dict[str, Any]:
    results = {}
    for name, spec in BUILD_SPECS.items():
        if not (ROOT / spec).is_file():
            results[name] = {"skipped": f"{spec} not found"}
            continue
        reports = [run_build(spec, RESULTS / "dist" / name) for _ in range(repeats)]
        stages = sorted({stage for r in reports for stage in r["timings_seconds"]})
        results[name] = {
            "runs": repeats,
            "stages": {s: statistics.median(r["timings_seconds"].get(s, 0.0) for r in reports) for s in stages},
            "optimization": reports[-1].get("optimization"),
            "packages_bytes": reports[-1]["runtime"]["packages_bytes"],
            "test_metric": reports[-1]["metrics"]["test_primary"],
            "metric": reports[-1]["metrics"]["primary_metric"],
        }
    return results


def measure_latency(runs: int) -> dict[str, Any]:
    results = {}
    for name, spec in LATENCY_MODELS.items():
        # Built with every backend the table times, whatever the spec ships.
        dist = RESULTS / "dist" / f"{Path(spec).stem}-latency"
        if not (dist / "metadata.json").is_file():
            run_build(spec, dist, [f"app.backends={json.dumps(LATENCY_BACKENDS)}"])
        metadata = browser_bench.load_metadata(dist)
        golden = metadata["golden"][0]["input"]
        batch = [metadata["golden"][i % len(metadata["golden"])]["input"] for i in range(32)]
        image = metadata["input"]["image"]
        shape = (image["height"], image["width"], image["channels"])
        rows = {}
        for label, inputs in (("1", [golden]), ("32", batch)):
            array = np.asarray(inputs, dtype=np.float32).reshape((len(inputs),) + shape)
            native_ms = native.latency(dist / "model", array, runs)
            entries = [("wasm (threads, isolated)", "wasm", True), ("wasm (not isolated)", "wasm", False),
                       ("webgl", "webgl", True), ("cpu", "cpu", True)]
            measured = []
            for title, backend, isolate in entries:
                result = browser_bench.latency(dist, backend, inputs, runs, isolate=isolate)
                result["title"] = title
                if "median_ms" in result:
                    result["ratio"] = result["median_ms"] / native_ms
                measured.append(result)
            rows[label] = {"native_ms": native_ms, "browser": measured}
        results[name] = rows
    return results


def measure_transfer() -> dict[str, Any]:
    dist = RESULTS / "dist" / "digits"
    float32 = RESULTS / "dist" / "digits-float32"
    if not (float32 / "metadata.json").is_file():
        run_build("models/digits.toml", float32, ['optimize.variants=["float32"]', "optimize.pruning_sparsity=0.0"])
    # The same app with only the JavaScript CPU backend: no WASM binary to fetch, at the cost of the
    # latency the cpu rows of the latency table show.
    cpu_only = RESULTS / "dist" / "digits-cpu"
    if not (cpu_only / "metadata.json").is_file():
        run_build("models/digits.toml", cpu_only, ['app.backends=["cpu"]', 'verify.backends=["cpu"]'])
    app = browser_bench.first_visit(dist)
    cpu_app = browser_bench.first_visit(cpu_only)
    baseline = browser_bench.baseline_visit(float32 / "model", FULL_BUNDLE)

    def visit(measured: Any) -> dict[str, Any]:
        return {"raw": measured.raw, "gzip": measured.gzip, "files": measured.files,
                "total_raw": measured.total_raw, "total_gzip": measured.total_gzip}

    return {
        "app": visit(app),
        "cpu_only": visit(cpu_app),
        "baseline": visit(baseline),
        "share_raw": app.total_raw / baseline.total_raw,
        "share_gzip": app.total_gzip / baseline.total_gzip,
        "cpu_only_share_raw": cpu_app.total_raw / baseline.total_raw,
        "cpu_only_share_gzip": cpu_app.total_gzip / baseline.total_gzip,
    }


def measure_start(runs: int) -> dict[str, Any]:
    dist = RESULTS / "dist" / "digits"
    golden = browser_bench.load_metadata(dist)["golden"][0]["input"]
    return browser_bench.start_times(dist, golden, runs)


def measure_memory(predictions: int) -> dict[str, Any]:
    results = {}
    for name, spec in LATENCY_MODELS.items():
        dist = RESULTS / "dist" / f"{Path(spec).stem}-latency"
        golden = browser_bench.load_metadata(dist)["golden"][0]["input"]
        results[name] = browser_bench.memory_and_leaks(dist, golden, predictions)
    return results


def environment() -> dict[str, Any]:
    import importlib.metadata

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": importlib.metadata.version("tensorflow"),
        "tensorflowjs": importlib.metadata.version("tensorflowjs"),
        "chromium": browser_bench.chromium_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one build per spec and fewer timing runs")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the Markdown table to write")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    build_repeats = 1 if args.quick else 3
    runs = 30 if args.quick else 200
    start_runs = 3 if args.quick else 7
    predictions = 200 if args.quick else 1000

    results: dict[str, Any] = {"environment": environment(), "quick": args.quick}
    sections = (("builds", lambda: measure_builds(build_repeats)), ("latency", lambda: measure_latency(runs)),
                ("transfer", measure_transfer), ("start", lambda: measure_start(start_runs)),
                ("memory", lambda: measure_memory(predictions)))
    for name, measure in sections:
        print(f"measuring {name}", flush=True)
        results[name] = measure()
        # Saved after every section, so a failure late in the run keeps what was measured.
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=1) + "\n")

    from report import render_markdown

    args.output.write_text(render_markdown(results, TARGETS))
    print(f"wrote {args.output} and {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
