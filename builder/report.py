"""The build report: ``report.json`` (versioned data) and ``report.html`` rendered from it.

The HTML page and its PNG figures (learning curves, scale-up and tuning charts, written under the
output's ``report/`` folder with matplotlib's Agg backend) are drawn only from report.json's data.
``render_report`` re-renders them from the JSON alone.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import figures, render, tasks
from .bundle import TFJS_VERSION
from .data import Dataset
from .features import dataset_summary

# Schema 2 adds the baseline comparison, the search record (start, scale_up, tuning), per-fold
# learning curves, seeds and the list of figures.
REPORT_SCHEMA = 2
PYTHON_PACKAGES = ("tensorflow", "keras", "tensorflowjs", "numpy", "pandas", "scikit-learn", "keras-tuner",
                   "matplotlib", "playwright")
# Files that describe the build rather than make up the app; they are left out of the artifact list.
REPORT_FILES = ("report.json", "report.html")
REPORT_DIR = "report"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "tfjs": TFJS_VERSION}
    for name in PYTHON_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        versions["webml"] = importlib.metadata.version("webml")
    except importlib.metadata.PackageNotFoundError:
        versions["webml"] = "source checkout"
    return versions


def artifacts(root: Path) -> list[dict[str, Any]]:
    """List every file of the app with its size and SHA-256."""
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative in REPORT_FILES or relative.startswith("report/"):
            continue
        rows.append({"path": relative, "bytes": path.stat().st_size, "sha256": render.file_sha256(path)})
    return rows


def build_report(spec: Any, dataset: Dataset, training: Any, metadata: dict[str, Any], precache: dict[str, Any],
                 bundle: Any, verification: Any, timings: dict[str, float], root: Path,
                 optimization: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble report.json's content."""
    split = training.split
    head = split.head
    confusion = None
    if dataset.task in ("binary", "multiclass"):
        predicted = tasks.predicted_labels(dataset.task, training.test_outputs, spec.task.threshold)
        confusion = {"labels": dataset.class_names,
                     "matrix": tasks.confusion_matrix(split.y_test, predicted, split.classes)}
    warnings = list(training.warnings) + bundle.warnings()
    dataset_record = dataset_summary(dataset)
    if split.preprocessing.encoder is not None:
        dataset_record["encoded_features"] = split.preprocessing.encoder.width
    return {
        "schema": REPORT_SCHEMA,
        "name": spec.name,
        "title": metadata["title"],
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "seeds": {
            "spec": spec.seed,
            "test_split": spec.seed,
            "validation_folds": f"{spec.seed} + repeat",
            "fold_training": f"{spec.seed} + 1000 × repeat + fold",
            "final_training": spec.seed,
            "tuning_oracle": spec.seed,
        },
        "dataset": dataset_record,
        "split": {"train_rows": int(len(split.train_index)), "test_rows": int(len(split.test_index)),
                  "test_size": spec.data.test_size, "stratified": dataset.task in ("binary", "multiclass")},
        "task": head.to_json(),
        "protocol": {"name": training.protocol.name, "folds": training.protocol.folds,
                     "repeats": training.protocol.repeats, "description": training.protocol.describe(),
                     "reason": training.protocol.reason},
        "baseline": training.baseline,
        "comparison": training.comparison,
        "validation": training.validation.summary(),
        "search": training.stages,
        "model": {"hyperparameters": training.hyperparameters.to_json(), "epochs": training.epochs,
                  "parameters": training.parameters, "history": training.final_history,
                  "graph": metadata["model"]},
        "metrics": {"test": training.test_scores, "primary_metric": head.primary_metric,
                    "test_primary": training.test_scores[head.primary_metric],
                    "baseline_test": training.baseline["test"]},
        "confusion_matrix": confusion,
        "optimization": optimization,
        "runtime": {"backends": metadata["app"]["backends"], "packages_bytes": bundle.packages,
                    "missing_kernels": bundle.missing_kernels, "graph_ops": bundle.graph_ops,
                    "converter_ops": bundle.converter_ops, "kernels": bundle.kernels, "sizes": bundle.sizes},
        "precache": {"version": precache["version"], "files": len(precache["files"]),
                     "bytes": sum(f["bytes"] for f in precache["files"])},
        "verification": verification.to_json() if verification is not None else None,
        "artifacts": artifacts(root),
        "timings_seconds": timings,
        "versions": package_versions(),
        "warnings": warnings,
    }


def write_report(root: Path, report: dict[str, Any]) -> None:
    """Write the figures, report.json (atomically) and report.html rendered from its data."""
    data = _finite(json.loads(json.dumps(report, default=_json_default)))
    data["figures"] = figures.draw(data, root)
    temporary = root / ".report.json.tmp"
    temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, root / "report.json")
    _write_html(root, data)


def render_report(root: Path) -> None:
    """Redraw the figures and report.html of a built folder from its report.json."""
    data = json.loads((root / "report.json").read_text(encoding="utf-8"))
    data["figures"] = figures.draw(data, root)
    _write_html(root, data)


def _write_html(root: Path, data: dict[str, Any]) -> None:
    folder = root / REPORT_DIR
    folder.mkdir(exist_ok=True)
    shutil.copyfile(render.TEMPLATES_DIR / "report.css", folder / "report.css")
    html = render.render_template("report.html.j2", {"report": data})
    (root / "report.html").write_text(html, encoding="utf-8")


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (an AUC on a one-class fold, say) with None, which JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to report.json")
