"""Training statistics for drift monitoring, and the drift measures computed from them.

The build ships, in metadata.json, a histogram of every input feature over the training rows
(numeric: 10 bins with edges at the training deciles; categorical: one bin per vocabulary value
plus one for values never seen in training), the missing rate of each feature, two per-image
summaries for image inputs (mean intensity and ink coverage), and the distribution of predictions
on the test set. The app counts live inputs into the same bins (never storing the inputs), and
both the app (``web/src/monitor.js``) and ``webml monitor`` compare the counts with:

- the population stability index, PSI = Σ (live − train) · ln(live / train) over bins. Live
  counts get ``PSEUDO_COUNT`` more in each bin that training filled, and each proportion is
  floored at ``EPSILON`` so a bin empty in training stays finite. A feature's PSI includes one
  more bin for missing values, so a feature that starts arriving blank drifts too;
- the Kolmogorov–Smirnov distance computed on the binned distributions of present values,
  max |CDF_live − CDF_train| over the bin edges (numeric features only). Binning can only hide
  differences, so this is a lower bound of the exact KS statistic; it is exact at the bin edges.

Both measures are noisy on small samples: n live inputs drawn from the training distribution
itself give a PSI of about (bins − 1) · (1/n + 1/m) on average, m being the training count,
because PSI · nm/(n + m) approximately follows a chi-square distribution with bins − 1 degrees
of freedom. So a feature drifts when at least ``min_samples`` live inputs were counted and

- its PSI is above the spec's PSI threshold and above the chi-square critical value at
  ``ALPHA`` / (number of features) scaled by (1/n + 1/m), or
- its KS distance is above the spec's KS threshold and above the two-sample KS critical value
  sqrt(−ln(α/2) / 2) · sqrt(1/n + 1/m) at the same α.

The thresholds are the smallest drift worth a warning; the critical values keep chance from
raising one (a Bonferroni split of ``ALPHA`` over the features bounds the chance of any false
warning near ``ALPHA``). The prediction shift uses the test-set count as m and α = ``ALPHA``.
Quantiles use closed-form approximations that ``web/src/monitor.js`` repeats exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NUMERIC_BINS = 10
EPSILON = 1e-4
# Live counts added to each bin that training filled before PSI is computed (additive smoothing).
PSEUDO_COUNT = 0.5
# Chance of a warning on inputs from the training distribution itself, over all features.
ALPHA = 0.01


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
    """Population stability index of live counts against expected training proportions.

    Every bin that training filled gets ``PSEUDO_COUNT`` more live counts, so a bin left empty
    by chance in a small sample does not dominate the index through ln(EPSILON / expected).
    """
    e = np.asarray(expected, dtype=np.float64)
    counts = np.asarray(actual_counts, dtype=np.float64) + np.where(e > 0, PSEUDO_COUNT, 0.0)
    a = np.maximum(proportions(counts), EPSILON)
    e = np.maximum(e, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def binned_ks(expected: np.ndarray | list[float], actual_counts: np.ndarray | list[float]) -> float:
    """KS distance between two binned distributions: the largest CDF gap at a bin edge."""
    e = np.cumsum(np.asarray(expected, dtype=np.float64))
    a = np.cumsum(proportions(actual_counts))
    return float(np.max(np.abs(a - e))) if len(e) else 0.0


def normal_upper_quantile(alpha: float) -> float:
    """z with P(Z > z) = alpha for a standard normal Z, for 0 < alpha < 0.5.

    Abramowitz and Stegun 26.2.23, absolute error below 4.5e-4.
    """
    t = math.sqrt(-2.0 * math.log(alpha))
    return t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t**3)


def chi2_upper_quantile(df: int, alpha: float) -> float:
    """x with P(X > x) = alpha for a chi-square X with ``df`` degrees of freedom (Wilson–Hilferty)."""
    z = normal_upper_quantile(alpha)
    h = 2.0 / (9.0 * df)
    return df * max(1.0 - h + z * math.sqrt(h), 0.0) ** 3


def psi_critical(bins: int, live: float, reference: float, alpha: float) -> float:
    """PSI that ``live`` inputs from the reference distribution exceed with probability ``alpha``.

    ``bins`` counts the bins that the reference sample (of size ``reference``) fills.
    """
    if live <= 0 or reference <= 0:
        return math.inf
    return chi2_upper_quantile(max(bins - 1, 1), alpha) * (1.0 / live + 1.0 / reference)


def ks_critical(live: float, reference: float, alpha: float) -> float:
    """Two-sample KS distance that samples of one distribution exceed with probability ``alpha``."""
    if live <= 0 or reference <= 0:
        return math.inf
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt(1.0 / live + 1.0 / reference)


def feature_drift(feature: dict[str, Any], bins: list[float], missing: float, thresholds: dict[str, Any],
                  features: int) -> dict[str, Any]:
    """Drift of one feature's live counts against its training statistics (``monitor.features[i]``).

    ``features`` is the number of monitored features, which share ``ALPHA``. Returns {samples,
    missing_rate, psi, ks, psi_limit, ks_limit, drifted}: ``samples`` counts present and missing
    values, and each limit is the larger of the spec's threshold and the critical value.
    """
    present = float(sum(bins))
    samples = present + missing
    rate = feature["missing_rate"]
    expected = [p * (1 - rate) for p in feature["expected"]] + [rate]
    alpha = ALPHA / max(features, 1)
    reference = feature["train_samples"]
    value_psi = psi(expected, list(bins) + [missing]) if samples else 0.0
    psi_limit = max(thresholds["psi"], psi_critical(sum(p > 0 for p in expected), samples, reference, alpha))
    numeric = feature["kind"] == "numeric"
    ks = binned_ks(feature["expected"], bins) if present and numeric else 0.0
    # Present training values only: missing ones take no part in the KS distance.
    ks_limit = max(thresholds["ks"], ks_critical(present, reference * (1 - rate), alpha)) if numeric else math.inf
    drifted = samples >= thresholds["min_samples"] and (value_psi > psi_limit or ks > ks_limit)
    return {"samples": int(samples), "missing_rate": missing / samples if samples else 0.0, "psi": value_psi,
            "ks": ks, "psi_limit": psi_limit, "ks_limit": ks_limit, "drifted": bool(drifted)}


def feature_statistics(frame: Any, encoder_json: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Histograms and missing rates of each tabular feature over the training rows."""
    from .features import _to_category, _to_number

    result = []
    for feature in encoder_json:
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            values = np.array([_to_number(v) for v in column.tolist()], dtype=np.float64)
            edges = numeric_edges(values)
            counts = bin_numeric(values, edges)
            missing = int(np.isnan(values).sum())
            result.append({"name": feature["name"], "kind": "numeric", "edges": edges,
                           "expected": proportions(counts).tolist(), "missing_rate": missing / max(len(values), 1),
                           "train_samples": len(values)})
        else:
            values = [_to_category(v) for v in column.tolist()]
            counts = bin_categorical(values, feature["vocabulary"])
            missing = sum(v is None for v in values)
            result.append({"name": feature["name"], "kind": "categorical", "categories": feature["vocabulary"],
                           "expected": proportions(counts).tolist(), "missing_rate": missing / max(len(values), 1),
                           "train_samples": len(values)})
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
                       "expected": proportions(bin_numeric(values, edges)).tolist(), "missing_rate": 0.0,
                       "train_samples": len(values)})
    return result


def prediction_statistics(task: str, outputs: np.ndarray, labels: list[str], threshold: float) -> dict[str, Any]:
    """Measure the distribution of the model's predictions on the test set (``samples``: the test-set size)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    samples = len(outputs)
    if task == "multiclass":
        counts = np.bincount(outputs.argmax(axis=1), minlength=len(labels))
        return {"kind": "classes", "labels": labels, "expected": proportions(counts).tolist(), "samples": samples}
    if task == "binary":
        predicted = (outputs.reshape(-1) >= threshold).astype(int)
        return {"kind": "classes", "labels": labels, "expected": proportions(np.bincount(predicted, minlength=2)).tolist(),
                "samples": samples}
    if task == "multilabel":
        # Each label's positive rate; drift is measured per label as a two-bin distribution.
        return {"kind": "labels", "labels": labels, "positive_rate": (outputs >= threshold).mean(axis=0).tolist(),
                "samples": samples}
    first = outputs.reshape(len(outputs), -1)[:, 0]
    edges = numeric_edges(first)
    return {"kind": "histogram", "edges": edges, "expected": proportions(bin_numeric(first, edges)).tolist(),
            "samples": samples}


def prediction_shift(statistics: dict[str, Any], counts: list[float], thresholds: dict[str, Any]) -> dict[str, Any]:
    """Measure the shift of live prediction counts against the test-set prediction distribution.

    For multi-label outputs ``counts`` contains, per label, the number of positive predictions,
    followed by the number of predictions. The label with the largest PSI counts, and the labels
    share ``ALPHA``. Returns {psi, limit, shifted}; ``limit`` is the larger of the spec's
    threshold and the critical value.
    """
    if statistics["kind"] == "labels":
        total = counts[-1] if counts else 0
        value = max((psi([1 - rate, rate], [total - positives, positives])
                     for rate, positives in zip(statistics["positive_rate"], counts[:-1])), default=0.0) if total else 0.0
        bins = 2
        alpha = ALPHA / max(len(statistics["labels"]), 1)
    else:
        total = float(sum(counts))
        value = psi(statistics["expected"], counts) if total else 0.0
        bins = sum(p > 0 for p in statistics["expected"])
        alpha = ALPHA
    limit = max(thresholds["prediction_shift"], psi_critical(bins, total, statistics["samples"], alpha))
    shifted = total >= thresholds["min_samples"] and value > limit
    return {"psi": value, "limit": limit, "shifted": bool(shifted)}
