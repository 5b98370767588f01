"""Training statistics for drift monitoring, and the drift measures computed from them.

The build ships, in metadata.json, a histogram of every input feature over the training rows
(numeric: 10 bins with edges at the training deciles; categorical: one bin per vocabulary value
plus one for values never seen in training), the missing rate of each feature, two per-image
summaries for image inputs (mean intensity and ink coverage), and the distribution of predictions
on the test set. The app counts live inputs into the same bins (never storing the inputs), and
both the app (``web/src/monitor.js``) and ``webml monitor`` compare the counts with:

- the population stability index, PSI = Σ (live − train) · ln(live / train) over bins, with each
  proportion floored at ``EPSILON`` so an empty bin stays finite;
- the Kolmogorov–Smirnov distance computed on the binned distributions, max |CDF_live − CDF_train|
  over the bin edges. Binning can only hide differences, so this is a lower bound of the exact KS
  statistic; it is exact at the bin edges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NUMERIC_BINS = 10
EPSILON = 1e-4


def numeric_edges(values: np.ndarray, bins: int = NUMERIC_BINS) -> list[float]:
    """Inner bin edges at the training quantiles, de-duplicated (a constant column gets none)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return []
    edges = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
    return sorted({float(e) for e in edges})


def bin_numeric(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Count present values per bin: bin i holds values in (edges[i-1], edges[i]]."""
    present = values[~np.isnan(values)]
    indices = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")
    return np.bincount(indices, minlength=len(edges) + 1)


def bin_categorical(values: list[Any], vocabulary: list[str]) -> np.ndarray:
    """Count present values per vocabulary entry, plus a last bin for unseen values."""
    slots = {name: i for i, name in enumerate(vocabulary)}
    counts = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    for value in values:
        if value is None:
            continue
        counts[slots.get(value, len(vocabulary))] += 1
    return counts


def proportions(counts: np.ndarray | list[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(expected: np.ndarray | list[float], actual_counts: np.ndarray | list[float]) -> float:
    """Population stability index of live counts against expected training proportions."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(proportions(actual_counts), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def binned_ks(expected: np.ndarray | list[float], actual_counts: np.ndarray | list[float]) -> float:
    """KS distance between two binned distributions: the largest CDF gap at a bin edge."""
    e = np.cumsum(np.asarray(expected, dtype=np.float64))
    a = np.cumsum(proportions(actual_counts))
    return float(np.max(np.abs(a - e))) if len(e) else 0.0


def feature_statistics(frame: Any, encoder_json: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Histograms and missing rates of each tabular feature over the training rows."""
    result = []
    for feature in encoder_json:
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            values = np.array([np.nan if v is None else float(v) for v in column.tolist()], dtype=np.float64)
            edges = numeric_edges(values)
            counts = bin_numeric(values, edges)
            missing = int(np.isnan(values).sum())
            result.append({"name": feature["name"], "kind": "numeric", "edges": edges,
                           "expected": proportions(counts).tolist(), "missing_rate": missing / max(len(values), 1)})
        else:
            values = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v).strip() or None
                      for v in column.tolist()]
            counts = bin_categorical(values, feature["vocabulary"])
            missing = sum(v is None for v in values)
            result.append({"name": feature["name"], "kind": "categorical", "categories": feature["vocabulary"],
                           "expected": proportions(counts).tolist(), "missing_rate": missing / max(len(values), 1)})
    return result


def image_summaries(images: np.ndarray, value_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """Per-image mean intensity and ink coverage, both scaled to 0..1 by the value range.

    Ink coverage is the fraction of values above 10% of the range (pixels that are not background).
    """
    low, high = value_range
    span = (high - low) or 1.0
    scaled = (images.reshape(len(images), -1).astype(np.float64) - low) / span
    return {"mean intensity": scaled.mean(axis=1), "ink coverage": (scaled > 0.1).mean(axis=1)}


def image_statistics(images: np.ndarray, value_range: tuple[float, float]) -> list[dict[str, Any]]:
    """Histograms of the per-image summaries over the training images, as numeric features."""
    result = []
    for name, values in image_summaries(images, value_range).items():
        edges = numeric_edges(values)
        result.append({"name": name, "kind": "numeric", "edges": edges,
                       "expected": proportions(bin_numeric(values, edges)).tolist(), "missing_rate": 0.0})
    return result


def prediction_statistics(task: str, outputs: np.ndarray, labels: list[str], threshold: float) -> dict[str, Any]:
    """The distribution of the model's predictions on the test set."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "multiclass":
        counts = np.bincount(outputs.argmax(axis=1), minlength=len(labels))
        return {"kind": "classes", "labels": labels, "expected": proportions(counts).tolist()}
    if task == "binary":
        predicted = (outputs.reshape(-1) >= threshold).astype(int)
        return {"kind": "classes", "labels": labels, "expected": proportions(np.bincount(predicted, minlength=2)).tolist()}
    if task == "multilabel":
        # Each label's positive rate; drift is measured per label as a two-bin distribution.
        return {"kind": "labels", "labels": labels, "positive_rate": (outputs >= threshold).mean(axis=0).tolist()}
    first = outputs.reshape(len(outputs), -1)[:, 0]
    edges = numeric_edges(first)
    return {"kind": "histogram", "edges": edges, "expected": proportions(bin_numeric(first, edges)).tolist()}


def prediction_counts_psi(statistics: dict[str, Any], counts: list[float]) -> float:
    """PSI of live prediction counts against the test-set prediction distribution."""
    if statistics["kind"] == "labels":
        # counts holds, per label, the number of positive predictions followed by the total.
        total = counts[-1] if counts else 0
        values = []
        for rate, positives in zip(statistics["positive_rate"], counts[:-1]):
            values.append(psi([1 - rate, rate], [total - positives, positives]))
        return max(values) if values else 0.0
    return psi(statistics["expected"], counts)
