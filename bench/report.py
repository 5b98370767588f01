"""Markdown for docs/benchmarks.md, made only from the measurements of one run."""

from __future__ import annotations

from typing import Any


def kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


def ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def status(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _best_ratio(rows: dict[str, Any], title: str) -> float | None:
    for entry in rows["1"]["browser"]:
        if entry["title"] == title and "ratio" in entry:
            return entry["ratio"]
    return None


def _targets(results: dict[str, Any], targets: dict[str, float]) -> list[str]:
    lines = ["| target | measured | status | note |", "| --- | --- | --- | --- |"]
    build = results["builds"].get("digits", {})
    if "stages" in build:
        total = build["stages"].get("total", 0.0)
        stages = {k: v for k, v in build["stages"].items() if k != "total"}
        slowest = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:3])
        lines.append(f"| `webml build models/digits.toml` ≤ {targets['build_seconds']:.0f} s, browser checks included "
                     f"| {total:.1f} s (median of {build['runs']}) | {status(total <= targets['build_seconds'])} "
                     f"| slowest stages: {slowest} |")
    for name, key in (("digits MLP", "mlp_ratio"), ("digits CNN", "cnn_ratio")):
        rows = results["latency"].get(name)
        if not rows:
            continue
        ratio = _best_ratio(rows, "wasm (threads, isolated)")
        native_ms = rows["1"]["native_ms"]
        wasm = next(e for e in rows["1"]["browser"] if e["title"] == "wasm (threads, isolated)")
        if ratio is None:
            lines.append(f"| {name}: wasm ≤ {targets[key]:g}× native | not measured | **not met** | {wasm.get('skipped')} |")
            continue
        batch = next((e for e in rows["32"]["browser"] if e["title"] == "wasm (threads, isolated)" and "ratio" in e), None)
        note = (f"single input: browser {ms(wasm['median_ms'])} against native {ms(native_ms)}; "
                + (f"batch of 32: {batch['ratio']:.2f}× native ({ms(batch['median_ms'])} against "
                   f"{ms(rows['32']['native_ms'])})" if batch else ""))
        lines.append(f"| {name}: wasm ≤ {targets[key]:g}× native TensorFlow (single input) | {ratio:.2f}× "
                     f"| {status(ratio <= targets[key])} | {note} |")
    transfer = results["transfer"]
    share = transfer["share_gzip"]
    baseline_gzip = transfer["baseline"]["total_gzip"]
    parts = "; ".join(f"{name} {kib(size)} ({size / baseline_gzip:.0%} of the baseline)"
                      for name, size in sorted(transfer["app"]["gzip"].items(), key=lambda kv: -kv[1]))
    lines.append(f"| first-visit transfer ≤ {targets['transfer_share']:.0%} of the full-bundle baseline | "
                 f"{share:.0%} gzip ({transfer['share_raw']:.0%} raw) | {status(share <= targets['transfer_share'])} | "
                 f"the app's first visit, gzip: {parts}. The full bundle has no WASM backend, so its binary has no "
                 "counterpart in the baseline. digits keeps WASM, its fastest backend here, and `webml test` checks "
                 "parity on it; the next row shows what leaving it out saves and costs |")
    if "cpu_only" in transfer:
        cpu_share = transfer["cpu_only_share_gzip"]
        mlp = results["latency"].get("digits MLP")
        cpu_ratio = _best_ratio(mlp, "cpu") if mlp else None
        cost = f"; its single-input latency is {cpu_ratio:.2f}× native on the cpu backend" if cpu_ratio else ""
        lines.append(f"| the same, digits built with `app.backends = [\"cpu\"]` | {cpu_share:.0%} gzip "
                     f"({transfer['cpu_only_share_raw']:.0%} raw) | {status(cpu_share <= targets['transfer_share'])} | "
                     f"no WASM binary: {kib(transfer['cpu_only']['total_gzip'])} gzip in all{cost} |")
    start = results["start"]
    lines.append(f"| offline start to first prediction ≤ {targets['offline_start_ms']:.0f} ms | {ms(start['offline_ms'])} "
                 f"| {status(start['offline_ms'] <= targets['offline_start_ms'])} | cold online start: "
                 f"{ms(start['cold_online_ms'])} (includes the timed warm-up of every backend) |")
    leaks = {name: m["leaked_tensors"] for name, m in results["memory"].items()}
    lines.append(f"| no tensor leaked after {next(iter(results['memory'].values()))['predictions']} predictions | "
                 + ", ".join(f"{n}: {v}" for n, v in leaks.items()) + f" | {status(all(v == 0 for v in leaks.values()))} | |")
    return lines


def render_markdown(results: dict[str, Any], targets: dict[str, float]) -> str:
    env = results["environment"]
    out = [
        "# Benchmarks",
        "",
        f"Measured on {env['date']} by `bench/run.py`{' --quick' if results['quick'] else ''} on {env['cpu']} "
        f"({env['cores']} cores), Python {env['python']}, TensorFlow {env['tensorflow']}, tensorflowjs "
        f"{env['tensorflowjs']}, headless Chromium {env['chromium']} (WebGL through SwiftShader, no GPU). "
        "Each figure is the median of repeated runs; ratios compare medians measured in the same run. "
        "Rerun with `.venv/bin/python bench/run.py` after `make demo`; raw numbers are in "
        "`bench/results/latest.json`.",
        "",
        "## Targets",
        "",
        *_targets(results, targets),
        "",
        "## Build time by stage",
        "",
    ]
    for name, build in results["builds"].items():
        if "stages" not in build:
            out += [f"{name}: {build.get('skipped')}", ""]
            continue
        out += [f"`{name}` (median of {build['runs']} builds, test {build['metric']} {build['test_metric']:.4f}):", "",
                "| stage | seconds |", "| --- | --- |"]
        out += [f"| {stage} | {seconds:.1f} |" for stage, seconds in build["stages"].items()]
        out.append("")
    out += ["## Browser latency against native TensorFlow", "",
            "Browser: `webml.predict` in the app's page (encoding, inference and reading the result back). "
            "Native: the same converted graph as a TensorFlow concrete function, called directly "
            "(`builder/graph_model.py`), reading the result back.", ""]
    for name, rows in results["latency"].items():
        out += [f"### {name}", "", "| backend | batch | browser | native | browser / native | threads |",
                "| --- | --- | --- | --- | --- | --- |"]
        for batch, row in rows.items():
            for entry in row["browser"]:
                if "median_ms" in entry:
                    out.append(f"| {entry['title']} | {batch} | {ms(entry['median_ms'])} | {ms(row['native_ms'])} | "
                               f"{entry['ratio']:.2f}× | {entry['threads']} |")
                else:
                    out.append(f"| {entry['title']} | {batch} | skipped: {entry['skipped']} | {ms(row['native_ms'])} | | |")
        out.append("")
    transfer = results["transfer"]
    out += ["## First-visit transfer", "",
            "Every response body of a first visit, the service worker's precaching included, against a page "
            "that loads the full `tf.min.js` bundle and the float32 model. Gzip is level 9 per file.", "",
            "`cpu only` is the digits app built with `app.backends = [\"cpu\"]`.", "",
            "| part | app raw | app gzip | cpu only raw | cpu only gzip | baseline raw | baseline gzip |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    visits = [transfer[key] for key in ("app", "cpu_only", "baseline") if key in transfer]
    for part in sorted(set().union(*(visit["raw"] for visit in visits))):
        out.append("| " + part + " | " + " | ".join(f"{kib(visit['raw'].get(part, 0))} | {kib(visit['gzip'].get(part, 0))}"
                                                   for visit in visits) + " |")
    out.append("| total | " + " | ".join(f"{kib(visit['total_raw'])} | {kib(visit['total_gzip'])}" for visit in visits) + " |")
    out += ["", f"App / baseline: {transfer['share_raw']:.0%} raw, {transfer['share_gzip']:.0%} gzip."]
    if "cpu_only" in transfer:
        out[-1] += (f" CPU-only app / baseline: {transfer['cpu_only_share_raw']:.0%} raw, "
                    f"{transfer['cpu_only_share_gzip']:.0%} gzip.")
    out.append("")
    packages = results["builds"].get("digits", {}).get("packages_bytes")
    if packages:
        out += ["JavaScript bundled per source package (minified, before compression):", "",
                "| package | bytes |", "| --- | --- |"]
        out += [f"| {name} | {kib(size)} |" for name, size in sorted(packages.items(), key=lambda kv: -kv[1])]
        out.append("")
    start = results["start"]
    out += ["## Start-up", "",
            f"From navigation start to the first prediction's result, median of {start['runs']} loads:", "",
            "| case | time |", "| --- | --- |",
            f"| online, cold (new profile: no cache, no service worker) | {ms(start['cold_online_ms'])} |",
            f"| offline (server stopped, served by the service worker) | {ms(start['offline_ms'])} |", ""]
    out += ["## Model variants", "", "Sizes are model.json plus weight shards; the metric is measured in Chromium "
            "on the test set.", ""]
    for name, build in results["builds"].items():
        optimization = build.get("optimization")
        if not optimization:
            continue
        out += [f"`{name}` ({optimization['metric']}):", "",
                "| variant | raw | gzip | brotli | weights | metric | max abs diff vs float32 | shipped |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for v in optimization["variants"]:
            out.append(f"| {v['name']} | {kib(v['bytes']['raw'])} | {kib(v['bytes']['gzip'])} | {kib(v['bytes']['brotli'])} | "
                       f"{kib(v['bytes']['weights'])} | {v['browser_metric']:.4f} | {v['max_abs_diff_vs_float32']:.2e} | "
                       f"{'yes' if v['selected'] else ''} |")
        out.append("")
    out += ["## Memory and tensors", "", "| model | peak JS heap | predictions | tensors before | after | leaked |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, m in results["memory"].items():
        out.append(f"| {name} | {kib(m['peak_js_heap_bytes'])} | {m['predictions']} | {m['tensors_before']} | "
                   f"{m['tensors_after']} | {m['leaked_tensors']} |")
    out.append("")
    out.append("The peak JS heap is the largest `JSHeapUsedSize` that the DevTools protocol reported while sampling "
               "during load and between chunks of predictions; WASM memory is not part of the JS heap.")
    return "\n".join(out) + "\n"
