"""Feature encoding fitted on the training split and shared, as JSON, with the browser.

Tabular rows are encoded outside the model because TF.js graph models cannot take strings:
numeric columns keep their value (missing values become the training median, plus a 0/1
missing-indicator column when the training data had gaps) and categorical columns become a
one-hot vector over the training vocabulary with two extra slots, one for a missing value and one
for a value never seen in training. ``web/src/encode.js`` implements the same rules from the JSON
that ``TabularEncoder.to_json`` writes; the parity checks in ``webml test`` feed raw rows through
both. Standardization (mean 0, standard deviation 1) happens inside the exported model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Column, Dataset

MISSING_SLOT = "(missing)"
UNSEEN_SLOT = "(unseen)"


@dataclass
class NumericFeature:
    name: str
    unit: str
    fill: float
    indicator: bool
    minimum: float
    maximum: float
    mean: float
    std: float


@dataclass
class CategoricalFeature:
    name: str
    vocabulary: list[str]
    frequencies: list[float] = field(default_factory=list)


@dataclass
class TabularEncoder:
    """The fitted encoding of raw tabular rows into the model's float32 input vector."""

    features: list[NumericFeature | CategoricalFeature]

    @classmethod
    def fit(cls, frame: Any, columns: list[Column]) -> TabularEncoder:
        """Fit vocabularies, fill values and scaling statistics on training rows."""
        features: list[NumericFeature | CategoricalFeature] = []
        for column in columns:
            values = frame[column.name]
            if column.kind == "numeric":
                numbers = values.to_numpy(dtype=np.float64)
                present = numbers[~np.isnan(numbers)]
                if present.size == 0:
                    # A column with values only in the test split: fill with 0 and flag it, so
                    # the indicator carries whatever signal the gap has.
                    present = np.zeros(1)
                fill = float(np.median(present))
                filled = np.where(np.isnan(numbers), fill, numbers)
                std = float(filled.std())
                features.append(NumericFeature(
                    name=column.name, unit=column.unit, fill=fill, indicator=bool(np.isnan(numbers).any()),
                    minimum=float(present.min()), maximum=float(present.max()),
                    mean=float(filled.mean()), std=std if std > 1e-12 else 1.0,
                ))
            else:
                present = values[values.notna()].astype(str)
                counts = present.value_counts()
                # Most frequent first, ties by name, so the order is stable across runs.
                ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                total = max(len(values), 1)
                features.append(CategoricalFeature(
                    name=column.name, vocabulary=[name for name, _ in ordered],
                    frequencies=[count / total for _, count in ordered],
                ))
        return cls(features)

    @property
    def width(self) -> int:
        return len(self.output_names())

    def output_names(self) -> list[str]:
        """Name each column of the encoded vector, e.g. ``age``, ``age (missing)``, ``color=red``."""
        names = []
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                names.append(feature.name)
                if feature.indicator:
                    names.append(f"{feature.name} {MISSING_SLOT}")
            else:
                names.extend(f"{feature.name}={v}" for v in feature.vocabulary)
                names.extend([f"{feature.name}={MISSING_SLOT}", f"{feature.name}={UNSEEN_SLOT}"])
        return names

    def transform(self, frame: Any) -> np.ndarray:
        """Encode raw rows (a DataFrame with one column per feature) into float32 vectors."""
        blocks = []
        for feature in self.features:
            values = frame[feature.name]
            if isinstance(feature, NumericFeature):
                numbers = np.array([_to_number(v) for v in values.tolist()], dtype=np.float64)
                missing = np.isnan(numbers)
                blocks.append(np.where(missing, feature.fill, numbers)[:, np.newaxis])
                if feature.indicator:
                    blocks.append(missing.astype(np.float64)[:, np.newaxis])
            else:
                slots = {name: i for i, name in enumerate(feature.vocabulary)}
                block = np.zeros((len(values), len(feature.vocabulary) + 2))
                for row, value in enumerate(values.tolist()):
                    text = _to_category(value)
                    if text is None:
                        block[row, len(feature.vocabulary)] = 1.0
                    else:
                        block[row, slots.get(text, len(feature.vocabulary) + 1)] = 1.0
                blocks.append(block)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Return per-column mean and variance for the model's normalization layer.

        Only numeric value columns are standardized. Indicator and one-hot columns keep mean 0 and
        variance 1: a slot that is always 0 in training (such as the unseen-value slot) would
        otherwise get variance 0, and a 1 at inference would be divided by a tiny epsilon.
        """
        means, variances = [], []
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                means.append(feature.mean)
                variances.append(feature.std**2)
                if feature.indicator:
                    means.append(0.0)
                    variances.append(1.0)
            else:
                size = len(feature.vocabulary) + 2
                means.extend([0.0] * size)
                variances.extend([1.0] * size)
        return np.asarray(means, dtype=np.float32), np.asarray(variances, dtype=np.float32)

    def to_json(self) -> list[dict[str, Any]]:
        """Describe the encoding for the browser (``web/src/encode.js``) and the report."""
        out = []
        for feature in self.features:
            if isinstance(feature, NumericFeature):
                out.append({
                    "name": feature.name, "kind": "numeric", "unit": feature.unit, "fill": feature.fill,
                    "indicator": feature.indicator, "min": feature.minimum, "max": feature.maximum,
                    "mean": feature.mean, "std": feature.std,
                })
            else:
                out.append({
                    "name": feature.name, "kind": "categorical", "vocabulary": feature.vocabulary,
                    "frequencies": feature.frequencies,
                })
        return out


def _to_number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        return float(text)
    return float(value)


def _to_category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def raw_row(frame: Any, index: int, features: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one raw row as JSON-ready data: numbers, strings, or None for a missing value."""
    row = {}
    for feature in features:
        value = frame[feature["name"]].iloc[index]
        if feature["kind"] == "numeric":
            row[feature["name"]] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        else:
            row[feature["name"]] = _to_category(value)
    return row


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """Summarize rows, features, missing values and class balance for the report."""
    summary: dict[str, Any] = {
        "source": dataset.source, "rows": dataset.rows, "input_kind": dataset.input_kind, "task": dataset.task,
        "task_inferred": dataset.task_inferred, "targets": dataset.target_names,
        "extra_rows": [{"file": path, "rows": rows} for path, rows in dataset.extra_rows],
    }
    if dataset.input_kind == "tabular":
        summary["features"] = [
            {"name": c.name, "kind": c.kind, "unit": c.unit, "missing": c.missing} for c in dataset.columns
        ]
    else:
        info = dataset.image
        summary["image"] = {
            "height": info.height, "width": info.width, "channels": info.channels,
            "value_range": list(info.value_range),
        }
    if dataset.task in ("binary", "multiclass"):
        counts = np.bincount(dataset.y, minlength=len(dataset.class_names))
        summary["classes"] = {name: int(count) for name, count in zip(dataset.class_names, counts)}
    elif dataset.task == "multilabel":
        summary["labels"] = {name: int(count) for name, count in zip(dataset.class_names, dataset.y.sum(axis=0))}
    else:
        summary["target_stats"] = {
            "mean": float(dataset.y.mean()), "std": float(dataset.y.std()),
            "min": float(dataset.y.min()), "max": float(dataset.y.max()),
        }
    return summary
