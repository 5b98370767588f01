"""Extra training rows from CSV files, such as the corrections a person exported from the app.

The app's export has one column per raw input (feature names for tabular data, ``pixel_0`` …
``pixel_N`` for images, in height × width × channels order) and one column per target with the
corrected value: a class label as the app shows it, a number for regression, or 0/1 per label for
multi-label tasks. ``data.extra`` in a spec lists such files; their rows join the dataset before
the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .data import MISSING_TOKENS, Dataset, _parse_numeric_column
from .errors import DataError


def feedback_columns(dataset: Dataset) -> list[str]:
    """The input columns an extra-rows CSV must have for this dataset."""
    if dataset.input_kind == "image":
        info = dataset.image
        return [f"pixel_{i}" for i in range(info.height * info.width * info.channels)]
    return [column.name for column in dataset.columns]


def read_extra_rows(path: Path, dataset: Dataset) -> tuple[Any, np.ndarray]:
    """Read an extra-rows CSV into (raw inputs, encoded targets) matching ``dataset``."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: extra data file not found (data.extra); export corrections from the app or fix the path")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse the extra data CSV ({exc}); export it again from the app") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    required = feedback_columns(dataset) + list(dataset.target_names)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: column '{missing[0]}' not found; an extra data file needs the columns "
                        f"{', '.join(required[:6])}{', …' if len(required) > 6 else ''}")
    frame = frame.apply(lambda col: col.str.strip())
    y = _targets(path, frame, dataset)
    if dataset.input_kind == "image":
        return _images(path, frame, dataset), y
    converted = {}
    for column in dataset.columns:
        raw = frame[column.name]
        is_missing = raw.isin(MISSING_TOKENS)
        if column.kind == "numeric":
            converted[column.name] = _parse_numeric_column(path, column.name, raw, is_missing)
        else:
            converted[column.name] = raw.where(~is_missing, None).astype(object)
    return pd.DataFrame(converted), y


def _images(path: Path, frame: Any, dataset: Dataset) -> np.ndarray:
    info = dataset.image
    columns = feedback_columns(dataset)
    try:
        values = frame[columns].astype(np.float32).to_numpy()
    except ValueError as exc:
        raise DataError(f"{path}: pixel columns must be numbers ({exc})") from exc
    low, high = info.value_range
    outside = (values < low) | (values > high) | ~np.isfinite(values)
    if outside.any():
        row, column = np.argwhere(outside)[0]
        raise DataError(f"{path}: line {row + 2}, column '{columns[column]}': {values[row, column]!r} is outside the "
                        f"training range {low:g} to {high:g}")
    return values.reshape(len(values), info.height, info.width, info.channels)


def _targets(path: Path, frame: Any, dataset: Dataset) -> np.ndarray:
    if dataset.task == "regression":
        columns = [frame[name] for name in dataset.target_names]
        try:
            return np.stack([c.astype(np.float32).to_numpy() for c in columns], axis=1)
        except ValueError as exc:
            raise DataError(f"{path}: target values must be numbers for a regression task ({exc})") from exc
    if dataset.task == "multilabel":
        allowed = {"0": 0, "1": 1, "true": 1, "false": 0}
        out = []
        for name in dataset.target_names:
            mapped = frame[name].str.lower().map(allowed)
            if mapped.isna().any():
                row = int(np.flatnonzero(mapped.isna().to_numpy())[0]) + 2
                raise DataError(f"{path}: line {row}, label column '{name}' must be 0 or 1")
            out.append(mapped.to_numpy(dtype=np.int64))
        return np.stack(out, axis=1)
    index = {label: i for i, label in enumerate(dataset.class_names)}
    labels = frame[dataset.target_names[0]]
    unknown = labels[~labels.isin(index)]
    if len(unknown):
        row = int(unknown.index[0]) + 2
        raise DataError(f"{path}: line {row}: label {unknown.iloc[0]!r} is not one of the classes "
                        f"({', '.join(dataset.class_names[:10])})")
    return labels.map(index).to_numpy(dtype=np.int64)
