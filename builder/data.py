"""Data loading: scikit-learn's bundled datasets, CSV, NumPy .npz and folders of images.

Every loader returns a ``Dataset`` of raw inputs: a ``pandas.DataFrame`` of strings and floats for
tabular data (missing values as ``None``/NaN, never filled here) or a float32 array of shape
``(rows, height, width, channels)`` for images. Fitting anything to the data (vocabularies, fill
values, normalization) happens later, on the training split only.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .spec import Spec

log = logging.getLogger(__name__)

# Cells that count as missing in CSV files, compared after stripping whitespace.
MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "?"})
SKLEARN_LOADERS = ("iris", "wine", "breast_cancer", "diabetes", "digits", "linnerud")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
# A target with more distinct integer values than this is treated as regression when the task is "auto".
MAX_AUTO_CLASSES = 50
INFINITIES = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
# A column whose non-missing values are at least this share numbers is numeric data with stray
# text, not a categorical column.
MIN_NUMERIC_SHARE = 0.9
_UNIT_IN_NAME = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]+)\)\s*$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Column:
    """One raw tabular input column."""

    name: str
    kind: str  # "numeric" or "categorical"
    unit: str = ""
    missing: int = 0


@dataclass
class ImageInfo:
    """The shape and value range of image inputs.

    ``ink`` marks datasets such as scikit-learn's digits, where a high value is a stroke on a
    dark background: the page inverts light-background drawings and crops them to the strokes.
    """

    height: int
    width: int
    channels: int
    value_range: tuple[float, float]
    ink: bool = False


@dataclass
class Dataset:
    """Raw inputs and targets, plus what is known about them before any fitting."""

    name: str
    source: str
    input_kind: str  # "tabular" or "image"
    task: str
    x: Any
    y: np.ndarray
    columns: list[Column] = field(default_factory=list)
    image: ImageInfo | None = None
    target_names: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    target_unit: str = ""
    task_inferred: bool = False
    # (file, rows) for each data.extra file whose rows were appended.
    extra_rows: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(len(self.y))

    def take(self, index: np.ndarray) -> Any:
        """Return the raw inputs of the given rows."""
        if self.input_kind == "tabular":
            return self.x.iloc[index].reset_index(drop=True)
        return self.x[index]


def load_dataset(spec: Spec) -> Dataset:
    """Load the data that ``spec.data.source`` names and resolve the task type."""
    source = spec.data.source
    if source.startswith("sklearn:"):
        dataset = _load_sklearn(spec, source.removeprefix("sklearn:"))
    else:
        path = spec.resolve(source)
        if not path.exists():
            raise DataError(f"{path}: data file not found (data.source = {source!r}); check the path, relative to {spec.base_dir}")
        if path.is_dir():
            dataset = _load_image_folder(spec, path)
        elif path.suffix.lower() == ".csv":
            dataset = _load_csv(spec, path)
        elif path.suffix.lower() == ".npz":
            dataset = _load_npz(spec, path)
        else:
            raise DataError(
                f"{path}: unsupported data file type '{path.suffix}'; use a .csv or .npz file, a folder of images, or sklearn:NAME"
            )
    for extra in spec.data.extra:
        _append_extra_rows(spec, dataset, spec.resolve(extra))
    _check_dataset(spec, dataset)
    return dataset


def _load_sklearn(spec: Spec, name: str) -> Dataset:
    import sklearn.datasets

    if name not in SKLEARN_LOADERS:
        raise DataError(
            f"data.source = 'sklearn:{name}' is not a dataset scikit-learn ships; use one of "
            + ", ".join(f"sklearn:{n}" for n in SKLEARN_LOADERS)
        )
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    source = f"sklearn:{name}"
    if name == "digits" and spec.data.input != "tabular":
        images = x.reshape(-1, 8, 8, 1).astype(np.float32)
        labels = [str(c) for c in bunch.target_names]
        info = ImageInfo(height=8, width=8, channels=1, value_range=(0.0, 16.0), ink=True)
        return _finish_targets(spec, Dataset(name=spec.name, source=source, input_kind="image", task="", x=images,
                                             y=y, image=info, target_names=["digit"]), labels)
    import pandas as pd

    names = list(bunch.feature_names)
    frame = pd.DataFrame(x, columns=names)
    columns = []
    for column in names:
        match = _UNIT_IN_NAME.match(column)
        unit = spec.data.units.get(column) or (match.group("unit") if match else "")
        columns.append(Column(name=column, kind="numeric", unit=unit))
    if y.ndim == 2:
        target_names = [str(t) for t in bunch.target_names]
        labels = None
    else:
        target_names = ["target"]
        labels = [str(t) for t in bunch.target_names] if "target_names" in bunch and name != "diabetes" else None
    dataset = Dataset(name=spec.name, source=source, input_kind="tabular", task="", x=frame, y=y, columns=columns,
                      target_names=target_names, target_unit=spec.data.target_unit)
    return _finish_targets(spec, dataset, labels)


def _check_short_rows(path: Path, delimiter: str, width: int) -> None:
    """Reject a row with fewer fields than the header: pandas would pad it with empty fields, which
    then read as missing values."""
    import csv

    if len(delimiter) != 1:
        return  # pandas reads a longer separator as a regular expression, which csv cannot split by.
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
        next(reader, None)
        for fields in reader:
            if fields and len(fields) < width:
                raise DataError(f"{path}: line {reader.line_num} has {len(fields)} fields but the header has {width}; "
                                "add the missing fields (an empty field is read as a missing value)")


def _load_csv(spec: Spec, path: Path) -> Dataset:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=spec.data.delimiter, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the CSV file is empty; add a header row and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse the CSV file ({_first_line(exc)}); check quoting and data.delimiter") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame.columns) == 1:
        guessed = next((d for d in (";", "\t", "|", ",") if d != spec.data.delimiter and d in frame.columns[0]), None)
        if guessed is not None:
            raise DataError(f"{path}: the header is one column ({frame.columns[0][:60]!r}), so the fields are not "
                            f"separated by {spec.data.delimiter!r}; set data.delimiter = {guessed!r}")
    _check_short_rows(path, spec.data.delimiter, len(frame.columns))
    if not spec.data.target:
        raise DataError(f"{path}: missing key 'data.target'; name the column (or columns) to predict, e.g. target = \"{frame.columns[-1]}\"")
    for key, names in (("data.target", spec.data.target), ("data.drop", spec.data.drop),
                       ("data.columns", list(spec.data.columns))):
        repeated = next((name for name in names if list(names).count(name) > 1), None)
        if repeated is not None:
            raise DataError(f"{path}: column '{repeated}' is listed twice in {key}; list each column once")
        for name in names:
            if name not in frame.columns:
                suggestion = _suggest_column(name, list(frame.columns))
                raise DataError(f"{path}: column '{name}' ({key}) not found{suggestion}; the header has: "
                                f"{_list_columns(frame.columns)}")
    both = next((name for name in spec.data.target if name in spec.data.drop), None)
    if both is not None:
        raise DataError(f"{path}: column '{both}' is in both data.target and data.drop; remove it from data.drop")
    frame = frame.apply(lambda col: col.str.strip())
    targets = frame[list(spec.data.target)]
    missing_target = targets.isin(MISSING_TOKENS).any(axis=1).to_numpy()
    warnings = []
    if len(frame) and missing_target.all():
        raise DataError(f"{path}: every row has an empty target ({', '.join(spec.data.target)}); "
                        "fill in the target values or point data.target at the right column")
    if missing_target.any():
        first = int(np.flatnonzero(missing_target)[0]) + 2
        warnings.append(f"{path}: dropped {int(missing_target.sum())} rows with a missing target (first at line {first})")
        # The index keeps each row's position in the file, so later errors name the right line.
        frame = frame[~missing_target]
        targets = targets[~missing_target]
    features = frame.drop(columns=list(spec.data.target) + list(spec.data.drop))
    if features.shape[1] == 0:
        raise DataError(f"{path}: no input columns are left after removing the target and data.drop; keep at least one column")
    columns = []
    converted = {}
    for name in features.columns:
        raw = features[name]
        is_missing = raw.isin(MISSING_TOKENS)
        kind = spec.data.columns.get(name) or _infer_kind(raw[~is_missing])
        if kind == "numeric":
            converted[name] = _parse_numeric_column(path, name, raw, is_missing)
        else:
            if name not in spec.data.columns:
                _reject_stray_text(path, name, raw[~is_missing])
            converted[name] = raw.where(~is_missing, None).astype(object).reset_index(drop=True)
        columns.append(Column(name=name, kind=kind, unit=spec.data.units.get(name, ""), missing=int(is_missing.sum())))
    x = pd.DataFrame(converted)
    if len(spec.data.target) == 1:
        y, labels = _parse_target(path, spec.data.target[0], targets.iloc[:, 0], spec.task.type)
    else:
        y = np.stack([_parse_label_column(path, name, targets[name]) for name in spec.data.target], axis=1)
        labels = None
    dataset = Dataset(name=spec.name, source=str(path), input_kind="tabular", task="", x=x, y=y, columns=columns,
                      target_names=list(spec.data.target), target_unit=spec.data.target_unit, warnings=warnings)
    return _finish_targets(spec, dataset, labels)


def _infer_kind(values: Any) -> str:
    if len(values) == 0:
        return "numeric"
    return "numeric" if values.map(lambda v: bool(_DECIMAL.match(v)) or v.lower() in INFINITIES).all() else "categorical"


def _reject_stray_text(path: Path, name: str, present: Any) -> None:
    """Raise when a column inferred as categorical is almost all numbers: its text is most likely a typo.

    Left alone, such a column would become one category per distinct number.
    """
    numeric = present.map(lambda v: bool(_DECIMAL.match(v)) or v.lower() in INFINITIES)
    if len(present) == 0 or numeric.mean() < MIN_NUMERIC_SHARE:
        return
    label = numeric[~numeric].index[0]
    raise DataError(
        f"{path}: line {label + 2}, column '{name}': {present[label]!r} is not a number, but "
        f"{int(numeric.sum())} of the column's {len(present)} values are; fix the value, leave it blank for a "
        f"missing value, or declare the column categorical with data.columns.{_toml_key(name)} = \"categorical\""
    )


def _parse_numeric_column(path: Path, name: str, raw: Any, is_missing: Any) -> np.ndarray:
    """Parse a column of text into floats, NaN where ``is_missing``; error lines follow ``raw``'s index."""
    values = np.full(len(raw), np.nan, dtype=np.float64)
    for row, (label, text, missing) in enumerate(zip(raw.index, raw.tolist(), is_missing.tolist())):
        if missing:
            continue
        line = int(label) + 2
        if not _DECIMAL.match(text):
            if text.lower() in INFINITIES:
                raise DataError(
                    f"{path}: line {line}, column '{name}': infinite value {text!r} cannot be learned from; "
                    "replace it with a finite number or leave the cell blank to mark it missing"
                )
            raise DataError(
                f"{path}: line {line}, column '{name}': {text!r} is not a number; fix the value, leave it blank "
                f"for a missing value, or declare the column categorical with data.columns.{_toml_key(name)} = \"categorical\""
            )
        values[row] = float(text)
        if not math.isfinite(values[row]):
            raise DataError(f"{path}: line {line}, column '{name}': {text!r} overflows a 64-bit float; rescale the column")
    return values


def _parse_target(path: Path, name: str, raw: Any, task: str) -> tuple[np.ndarray, list[str] | None]:
    infinite = raw.str.lower().isin(INFINITIES)
    if infinite.any():
        line = int(raw[infinite].index[0]) + 2
        raise DataError(f"{path}: line {line}, target '{name}': infinite value {raw[infinite].iloc[0]!r} cannot be "
                        "learned from; replace it with a finite number or remove the row")
    numeric = raw.map(lambda v: bool(_DECIMAL.match(v))).all()
    if task == "regression" or (task == "auto" and numeric and not _looks_like_classes(raw)):
        if not numeric:
            bad = raw[~raw.map(lambda v: bool(_DECIMAL.match(v)))]
            row = int(bad.index[0]) + 2
            raise DataError(f"{path}: line {row}, target '{name}': {bad.iloc[0]!r} is not a number, but the task is regression")
        return raw.astype(np.float64).to_numpy(), None
    labels = sorted(raw.unique().tolist(), key=lambda v: (float(v), v) if numeric else (0.0, v))
    index = {label: i for i, label in enumerate(labels)}
    return raw.map(index).to_numpy(dtype=np.int64), labels


def _looks_like_classes(raw: Any) -> bool:
    values = raw.astype(np.float64)
    return bool((values == np.round(values)).all() and values.nunique() <= MAX_AUTO_CLASSES)


def _parse_label_column(path: Path, name: str, raw: Any) -> np.ndarray:
    allowed = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "true": 1, "false": 0, "yes": 1, "no": 0}
    values = raw.str.lower().map(allowed)
    if values.isna().any():
        row = int(values[values.isna()].index[0]) + 2
        raise DataError(
            f"{path}: line {row}, label column '{name}': {raw[row - 2]!r} is not 0/1; multi-label targets must be 0, 1, true or false"
        )
    return values.to_numpy(dtype=np.int64)


def _load_npz(spec: Spec, path: Path) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_first_line(exc)}); save it with numpy.savez(path, x=..., y=...)") from exc
    for key in ("x", "y"):
        if key not in archive.files:
            raise DataError(f"{path}: array '{key}' not found (arrays: {', '.join(archive.files) or 'none'}); save with numpy.savez(path, x=..., y=...)")
    x = np.asarray(archive["x"])
    y = np.asarray(archive["y"])
    names = [str(n) for n in archive["target_names"].reshape(-1)] if "target_names" in archive.files else None
    width = y.shape[1] if y.ndim == 2 else 1
    if names is not None and len(names) != width:
        raise DataError(f"{path}: 'target_names' lists {len(names)} names but 'y' has {width} column(s); "
                        "give one name per target column")
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: array 'x' has dtype {x.dtype}; it must be numeric")
    if len(x) != len(y):
        raise DataError(f"{path}: 'x' has {len(x)} rows but 'y' has {len(y)}; they must match")
    x = x.astype(np.float64)
    if np.isinf(x).any():
        row = int(np.argwhere(np.isinf(x))[0][0])
        raise DataError(f"{path}: x[{row}] contains an infinite value; replace it with a finite number or NaN for missing")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).any(axis=1))[0])
        raise DataError(f"{path}: y[{row}] is NaN or infinite; targets must be finite")
    if x.ndim in (3, 4) and spec.data.input != "tabular":
        images = x if x.ndim == 4 else x[..., np.newaxis]
        if np.isnan(images).any():
            raise DataError(f"{path}: 'x' holds images with NaN pixels; images cannot have missing values")
        low, high = float(images.min()), float(images.max())
        info = ImageInfo(height=images.shape[1], width=images.shape[2], channels=images.shape[3], value_range=(low, high))
        dataset = Dataset(name=spec.name, source=str(path), input_kind="image", task="", x=images.astype(np.float32),
                          y=_npz_target(y), image=info, target_names=names or _npz_target_names(y))
        return _finish_targets(spec, dataset, None)
    if x.ndim != 2:
        raise DataError(f"{path}: 'x' has shape {x.shape}; use (rows, features) for tabular data or (rows, height, width[, channels]) for images")
    import pandas as pd

    names = [f"x{i}" for i in range(x.shape[1])]
    frame = pd.DataFrame(x, columns=names)
    columns = [Column(name=n, kind="numeric", unit=spec.data.units.get(n, ""), missing=int(np.isnan(x[:, i]).sum()))
               for i, n in enumerate(names)]
    target_names = names or _npz_target_names(y)
    dataset = Dataset(name=spec.name, source=str(path), input_kind="tabular", task="", x=frame, y=_npz_target(y),
                      columns=columns, target_names=target_names, target_unit=spec.data.target_unit)
    return _finish_targets(spec, dataset, None)


def _npz_target_names(y: np.ndarray) -> list[str]:
    return [f"y{i}" for i in range(y.shape[1])] if y.ndim == 2 else ["y"]


def _npz_target(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind in "US":
        return y.astype(str)
    return y


def _load_image_folder(spec: Spec, folder: Path) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    height, width = spec.data.image_size or (32, 32)
    mode = "L" if spec.data.color == "grayscale" else "RGB"
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class sub-folders found; put each class's images in a sub-folder named after the class")
    images, labels = [], []
    for index, label in enumerate(classes):
        for file in sorted((folder / label).iterdir()):
            if file.name.startswith(".") or not file.is_file():
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(
                    f"{file}: not an image file (suffix '{file.suffix}'); remove it or use one of {', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            try:
                with Image.open(file) as opened:
                    opened.load()
                    picture = opened.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"{file}: cannot read the image ({_first_line(exc)}); replace or remove the file") from exc
            pixels = np.asarray(picture, dtype=np.float32)
            images.append(pixels.reshape(height, width, -1))
            labels.append(index)
    if not images:
        raise DataError(f"{folder}: the class folders hold no images")
    x = np.stack(images)
    info = ImageInfo(height=height, width=width, channels=x.shape[-1], value_range=(0.0, 255.0))
    dataset = Dataset(name=spec.name, source=str(folder), input_kind="image", task="", x=x, y=np.asarray(labels),
                      image=info, target_names=["class"])
    return _finish_targets(spec, dataset, classes)


def _append_extra_rows(spec: Spec, dataset: Dataset, path: Path) -> None:
    """Append rows from an extra CSV, such as feedback exported by the app, to a tabular dataset."""
    import pandas as pd

    from . import feedback

    rows_x, rows_y = feedback.read_extra_rows(path, dataset)
    if len(rows_y) == 0:
        dataset.warnings.append(f"{path}: extra data file has no rows")
        return
    if dataset.input_kind == "tabular":
        dataset.x = pd.concat([dataset.x, rows_x], ignore_index=True)
    else:
        dataset.x = np.concatenate([dataset.x, rows_x])
    dataset.y = np.concatenate([dataset.y, rows_y])
    dataset.extra_rows.append((str(path), len(rows_y)))


def _finish_targets(spec: Spec, dataset: Dataset, labels: list[str] | None) -> Dataset:
    """Resolve the task type and encode targets: class indices, a 0/1 matrix or floats."""
    y = dataset.y
    task = spec.task.type
    if task == "auto":
        dataset.task_inferred = True
        if y.ndim == 2 and y.shape[1] > 1:
            task = "multilabel" if set(np.unique(y).tolist()) <= {0, 1} else "regression"
        elif labels is not None or y.dtype.kind in "USOb":
            task = "binary" if len(labels or np.unique(y)) == 2 else "multiclass"
        elif y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.all(y == np.round(y)) and len(np.unique(y)) <= MAX_AUTO_CLASSES):
            task = "binary" if len(np.unique(y)) == 2 else "multiclass"
        else:
            task = "regression"
    dataset.task = task
    if task == "regression":
        dataset.y = y.astype(np.float32)
        if dataset.y.ndim == 1:
            dataset.y = dataset.y[:, np.newaxis]
        dataset.class_names = []
        return dataset
    if task == "multilabel":
        if y.ndim != 2 or not set(np.unique(y).tolist()) <= {0, 1}:
            raise DataError(f"{dataset.source}: task 'multilabel' needs several 0/1 target columns; list them in data.target")
        dataset.y = y.astype(np.int64)
        dataset.class_names = list(dataset.target_names)
        return dataset
    if y.ndim == 2:
        raise DataError(f"{dataset.source}: task '{task}' needs one target column but the data has {y.shape[1]}; use task.type = \"multilabel\" or \"regression\"")
    if labels is None:
        values = np.unique(y)
        labels = [_label_text(v) for v in values]
        y = np.searchsorted(values, y)
    dataset.y = np.asarray(y, dtype=np.int64)
    dataset.class_names = labels
    return dataset


def _label_text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _check_dataset(spec: Spec, dataset: Dataset) -> None:
    if dataset.rows == 0:
        raise DataError(f"{dataset.source}: the dataset has no rows; add data rows below the header")
    if dataset.task in ("binary", "multiclass"):
        counts = np.bincount(dataset.y, minlength=len(dataset.class_names))
        present = int((counts > 0).sum())
        if present < 2:
            fix = ("add a sub-folder of images of another class" if dataset.input_kind == "image"
                   else "add rows of another class or check that data.target names the column to predict")
            raise DataError(
                f"{dataset.source}: all {dataset.rows} rows have the same class "
                f"({dataset.class_names[int(np.argmax(counts))]!r}), so there is nothing to learn; {fix}"
            )
        if dataset.task == "binary" and len(dataset.class_names) != 2:
            raise DataError(
                f"{dataset.source}: task 'binary' needs exactly 2 classes but the target has {len(dataset.class_names)}; "
                "use task.type = \"multiclass\""
            )
        rare = [dataset.class_names[i] for i, c in enumerate(counts) if c == 1]
        if rare:
            raise DataError(
                f"{dataset.source}: class {rare[0]!r} has a single row, too few for a stratified test split; "
                "add rows of that class or remove it"
            )
    if dataset.task == "regression" and not np.isfinite(dataset.y).all():
        raise DataError(f"{dataset.source}: the target contains NaN or infinite values; fix or remove those rows")
    if dataset.input_kind == "tabular":
        for column in dataset.columns:
            if column.missing == dataset.rows:
                raise DataError(f"{dataset.source}: column '{column.name}' has no values at all; remove it with data.drop")


def _suggest_column(name: str, columns: list[str]) -> str:
    match = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    if not match:
        match = [c for c in columns if c.lower() == name.lower()]
    return f" (did you mean '{match[0]}'?)" if match else ""


def _list_columns(columns: Any, limit: int = 20) -> str:
    names = [str(c) for c in columns]
    listed = ", ".join(names[:limit])
    return listed + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _toml_key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else f'"{name}"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
