"""``webml monitor DB``: drift summaries from collected monitoring reports.

Reports are summed per app, model and variant; each feature's summed bin counts are compared with
the training histogram that ``webml serve --collect`` stored for that model, with the same rule
as the app's monitoring panel (see builder/stats.py for PSI, the binned KS distance and when a
feature counts as drifted).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .errors import UsageError


@dataclass
class FeatureDrift:
    """One feature's drift summed over a variant's reports (see ``stats.feature_drift``)."""

    name: str
    samples: int
    missing_rate: float
    psi: float
    ks: float
    psi_limit: float
    ks_limit: float
    drifted: bool
    # Below this many inputs the limits do not apply and no drift is flagged.
    min_samples: int = 0


@dataclass
class VariantSummary:
    app: str
    model: str
    variant: str
    reports: int
    clients: int
    predictions: int
    mean_latency_ms: float | None
    feedback_total: int
    feedback_wrong: int
    prediction_psi: float | None
    prediction_limit: float | None = None
    prediction_shift: bool = False
    features: list[FeatureDrift] = field(default_factory=list)
    known_model: bool = True

    @property
    def feedback_accuracy(self) -> float | None:
        return 1 - self.feedback_wrong / self.feedback_total if self.feedback_total else None

    def to_json(self) -> dict[str, Any]:
        data = _finite(dict(self.__dict__))
        data["features"] = [_finite(dict(f.__dict__)) for f in self.features]
        data["feedback_accuracy"] = self.feedback_accuracy
        return data


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    """Replace infinite limits (nothing counted, or KS of a categorical feature) with None for JSON."""
    return {key: None if isinstance(value, float) and math.isinf(value) else value for key, value in data.items()}


def summarize(path: Path) -> list[VariantSummary]:
    """Sum the reports in ``path`` per (app, model, variant) and measure drift against training."""
    if Path(path).is_dir():
        raise UsageError(f"{path}: is a folder; pass the SQLite file given to `webml serve DIST --collect FILE`")
    if not Path(path).is_file():
        raise UsageError(f"{path}: database not found; collect reports with `webml serve DIST --collect {path}`")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = connection.execute("SELECT app, model, variant, client, body FROM reports ORDER BY received").fetchall()
        apps = {(app, model): json.loads(monitor)
                for app, model, monitor in connection.execute("SELECT app, model, monitor FROM apps")}
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a webml monitoring database ({exc}); pass the file given to "
                         "`webml serve DIST --collect FILE`") from exc
    groups: dict[tuple[str, str, str], list[tuple[str, dict[str, Any]]]] = {}
    for app, model, variant, client, body in rows:
        groups.setdefault((app, model, variant), []).append((client, json.loads(body)))
    return [_summarize_group(key, reports, apps.get(key[:2])) for key, reports in sorted(groups.items())]


def _summarize_group(key: tuple[str, str, str], reports: list[tuple[str, dict[str, Any]]],
                     monitor: dict[str, Any] | None) -> VariantSummary:
    app, model, variant = key
    count = sum(r["count"] for _, r in reports)
    latency_sum = sum(r.get("latency_ms", {}).get("sum", 0) for _, r in reports)
    latency_count = sum(r.get("latency_ms", {}).get("count", 0) for _, r in reports)
    summary = VariantSummary(
        app=app, model=model, variant=variant, reports=len(reports), clients=len({c for c, _ in reports}),
        predictions=count, mean_latency_ms=latency_sum / latency_count if latency_count else None,
        feedback_total=int(sum(r.get("feedback", {}).get("total", 0) for _, r in reports)),
        feedback_wrong=int(sum(r.get("feedback", {}).get("wrong", 0) for _, r in reports)),
        prediction_psi=None, known_model=monitor is not None,
    )
    if monitor is None:
        return summary
    thresholds = monitor["thresholds"]
    prediction_counts = _sum_lists(r.get("predictions", {}).get("counts", []) for _, r in reports)
    if prediction_counts:
        shift = stats.prediction_shift(monitor["predictions"], prediction_counts, thresholds)
        summary.prediction_psi = shift["psi"]
        summary.prediction_limit = shift["limit"]
        summary.prediction_shift = shift["shifted"]
    for feature in monitor["features"]:
        slots = [r.get("features", {}).get(feature["name"], {}) for _, r in reports]
        bins = _sum_lists(slot.get("bins", []) for slot in slots)
        missing = sum(slot.get("missing", 0) for slot in slots)
        if not bins:
            bins = [0.0] * len(feature["expected"])
        if len(bins) != len(feature["expected"]):
            # The collector rejects such reports for registered models; older rows may still have them.
            continue
        drift = stats.feature_drift(feature, bins, missing, thresholds, len(monitor["features"]))
        summary.features.append(FeatureDrift(feature["name"], drift["samples"], drift["missing_rate"], drift["psi"],
                                             drift["ks"], drift["psi_limit"], drift["ks_limit"],
                                             drift["drifted"], int(thresholds["min_samples"])))
    return summary


def _sum_lists(lists: Any) -> list[float]:
    total: np.ndarray | None = None
    for values in lists:
        if not values:
            continue
        array = np.asarray(values, dtype=np.float64)
        if total is None:
            total = array
        elif total.shape == array.shape:
            total = total + array
    return total.tolist() if total is not None else []
