"""PNG figures for report.html, drawn from report.json's data with matplotlib's Agg renderer.

Figures are drawn on ``matplotlib.figure.Figure`` objects with an explicit Agg canvas instead of
through pyplot, so drawing needs no display and changes no global matplotlib state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURE_DIR = "report"
DPI = 100
# Matplotlib's default colour cycle ("tab10"), named here so scale-up steps and folds keep
# the same colour for their training and validation curves.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")


def draw(report: dict[str, Any], root: Path) -> list[dict[str, str]]:
    """Draw every figure the report's data supports into root/report/; return their paths and titles."""
    folder = root / FIGURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, title, painter in _figures(report):
        figure = painter(report)
        if figure is None:
            continue
        path = folder / f"{name}.png"
        _save(figure, path)
        drawn.append({"path": f"{FIGURE_DIR}/{name}.png", "title": title})
    return drawn


def _figures(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        ("learning-curves", "Learning curves of the chosen model", _learning_curves),
        ("scale-up", "Scale-up: validation loss by capacity", _scale_up),
        ("tuning", "Tuning trials against the baseline", _tuning),
    ]


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    # No "Software" or date metadata, so the same report.json gives byte-identical PNGs.
    figure.savefig(path, format="png", metadata={"Software": None})


def _loss_label(report: dict[str, Any]) -> str:
    task = report["task"]
    if task["task"] == "regression":
        return "loss (MSE in target standard deviations)"
    return f"loss ({task['loss'].replace('_', ' ')})"


def _learning_curves(report: dict[str, Any]) -> Any:
    folds = report["validation"]["folds"]
    if not folds or "history" not in folds[0]:
        return None
    metric_key = next((key for key in folds[0]["history"] if key.startswith("val_") and key != "val_loss"), None)

    figure = _new_figure(10, 4)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for index, fold in enumerate(folds):
        history = fold["history"]
        color = COLORS[index % len(COLORS)]
        epochs = range(1, len(history["loss"]) + 1)
        label = f"repeat {fold['repeat'] + 1}, fold {fold['fold'] + 1}" if len(folds) > 1 else "holdout"
        loss_axes.plot(epochs, history["loss"], color=color, linestyle="--", linewidth=1)
        loss_axes.plot(epochs, history["val_loss"], color=color, linewidth=1.5, label=label)
        best = fold["best_epoch"]
        loss_axes.plot([best], [history["val_loss"][best - 1]], marker="o", color=color)
        if metric_key is not None:
            metric_axes.plot(epochs, history[metric_key], color=color, linewidth=1.5, label=label)

    final = report["model"]["history"].get("loss", [])
    if final:
        loss_axes.plot(range(1, len(final) + 1), final, color="black", linewidth=2, label="final model (training)")

    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel(_loss_label(report))
    loss_axes.set_title("training (dashed) and validation (solid) loss; dots: lowest validation loss", fontsize=9)
    if len(folds) <= 10:
        loss_axes.legend(fontsize=7)
    if metric_key is not None:
        metric_axes.set_xlabel("epoch")
        metric_axes.set_ylabel(metric_key.replace("_", " "))
        metric_axes.set_title("validation metric per epoch (Keras)", fontsize=9)
    else:
        metric_axes.set_visible(False)
    return figure


def _scale_up(report: dict[str, Any]) -> Any:
    record = report["search"].get("scale_up") or {}
    if not record.get("enabled") or not record.get("steps"):
        return None
    figure = _new_figure(10, 4)
    curves, summary = figure.subplots(1, 2)
    for index, step in enumerate(record["steps"]):
        color = COLORS[index % len(COLORS)]
        history = step["history"]
        epochs = range(1, len(history["loss"]) + 1)
        label = f"{_stack(step['units'])} ({step['parameters']:,} parameters)"
        curves.plot(epochs, history["loss"], color=color, linestyle="--", linewidth=1)
        curves.plot(epochs, history["val_loss"], color=color, linewidth=1.5, label=label)
        curves.plot([step["best_epoch"]], [step["best_val_loss"]], marker="o", color=color)
    curves.set_xlabel("epoch")
    curves.set_ylabel(_loss_label(report))
    curves.set_title("training (dashed) and validation (solid) loss; dots: where overfitting starts", fontsize=9)
    curves.legend(fontsize=7)
    names = [_stack(step["units"]) for step in record["steps"]]
    values = [step["best_val_loss"] for step in record["steps"]]
    bars = summary.bar(range(len(values)), values, color=[COLORS[i % len(COLORS)] for i in range(len(values))])
    bars[record["best_step"]].set_edgecolor("black")
    bars[record["best_step"]].set_linewidth(2)
    summary.set_xticks(range(len(values)), names)
    summary.set_xlabel("capacity step, in the order trained (units × layers)")
    summary.set_ylabel("lowest validation loss")
    summary.set_title("lowest validation loss of each step; outlined: chosen", fontsize=9)
    return figure


def _tuning(report: dict[str, Any]) -> Any:
    record = report["search"].get("tuning") or {}
    trials = [t for t in record.get("trials", []) if t.get("score") is not None]
    if not record.get("enabled") or not trials:
        return None
    figure = _new_figure(8, 3.5)
    axes = figure.subplots()
    positions = range(len(trials))
    scores = [t["score"] for t in trials]
    errors = [t.get("std") or 0.0 for t in trials]
    colors = ["#d62728" if t["trial_id"] == record["best_trial"] else "#1f77b4" for t in trials]
    axes.bar(positions, scores, yerr=errors, color=colors, capsize=3)
    baseline = report["baseline"]["mean"]
    axes.axhline(baseline, color="black", linestyle=":", label=f"baseline {baseline:.4f}")
    axes.set_xticks(list(positions), [t["trial_id"] for t in trials])
    axes.set_xlabel("trial (red: chosen)")
    axes.set_ylabel(f"validation {report['metrics']['primary_metric']} (mean ± std over folds)")
    low = min(min(s - e for s, e in zip(scores, errors)), baseline)
    high = max(max(s + e for s, e in zip(scores, errors)), baseline)
    margin = (high - low) * 0.1 or 0.01
    axes.set_ylim(low - margin, high + margin)
    axes.legend(fontsize=8)
    return figure


def _stack(units: list[int]) -> str:
    return f"{units[0]}×{len(units)}" if len(set(units)) == 1 else "-".join(map(str, units))
