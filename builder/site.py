"""The app's metadata.json: input schema, output labels, golden inputs and runtime settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import features as features_module
from .spec import Spec
from .train import Preprocessing, Split

METADATA_SCHEMA = 1
UNSEEN_VALUE = "(a value never seen in training)"


def select_golden_rows(split: Split, count: int) -> np.ndarray:
    """Pick test rows for golden inputs: one per class first (classification), then in order."""
    positions = np.arange(len(split.test_index))
    if split.dataset.task not in ("binary", "multiclass"):
        return positions[:count]
    chosen: list[int] = []
    for label in range(split.classes):
        hits = positions[split.y_test == label]
        if len(hits) and len(chosen) < count:
            chosen.append(int(hits[0]))
    for position in positions:
        if len(chosen) >= count:
            break
        if position not in chosen:
            chosen.append(int(position))
    return np.asarray(sorted(chosen))


def golden_inputs(spec: Spec, split: Split) -> list[Any]:
    """Raw inputs for the browser parity checks.

    Images are flat lists of height × width × channels values. Tabular rows are objects keyed by
    feature name. Besides real test rows they include a row with every numeric feature missing,
    one with every categorical feature set to a value never seen in training, one with every
    categorical feature missing, and one typed the way the page's form sends it (numbers as text,
    with blank fields). Parity then covers fill values, missing indicators, the missing and
    unseen slots, and the parsing of form text.
    """
    chosen = select_golden_rows(split, spec.verify.golden)
    raw = split.dataset.take(split.test_index[chosen])
    if split.dataset.input_kind == "image":
        return [np.asarray(item, dtype=np.float32).reshape(-1).tolist() for item in raw]
    encoder_json = split.preprocessing.encoder.to_json()
    rows = [features_module.raw_row(raw, i, encoder_json) for i in range(len(raw))]
    if not rows:
        return rows
    form_source = rows[1] if len(rows) > 1 else rows[0]
    numeric = [f["name"] for f in encoder_json if f["kind"] == "numeric"]
    categorical = [f["name"] for f in encoder_json if f["kind"] == "categorical"]
    if numeric:
        rows.append({**rows[0], **{name: None for name in numeric}})
    if categorical:
        # On top of the all-numerics-missing row when there is one: blanks and an unseen value together.
        rows.append({**rows[-1], **{name: UNSEEN_VALUE for name in categorical}})
        rows.append({**rows[0], **{name: None for name in categorical}})
    rows.append(_form_text_row(form_source, encoder_json))
    return rows


def test_inputs(split: Split) -> list[Any]:
    """Every test row as a raw input the page accepts (flat image arrays or feature objects)."""
    raw = split.dataset.take(split.test_index)
    if split.dataset.input_kind == "image":
        return [np.asarray(item, dtype=np.float32).reshape(-1).tolist() for item in raw]
    encoder_json = split.preprocessing.encoder.to_json()
    return [features_module.raw_row(raw, i, encoder_json) for i in range(len(raw))]


def _form_text_row(row: dict[str, Any], encoder_json: list[dict[str, Any]]) -> dict[str, Any]:
    """Return ``row`` as form fields send it: numbers as text, missing values blank, and the
    first numeric and first categorical field blank as well."""
    text = {}
    for name, value in row.items():
        if value is None:
            text[name] = ""
        elif isinstance(value, float):
            text[name] = repr(value)
        else:
            text[name] = str(value)
    for kind in ("numeric", "categorical"):
        first = next((f["name"] for f in encoder_json if f["kind"] == kind), None)
        if first is not None:
            text[first] = ""
    return text


def encode_raw(split: Split, preprocessing: Preprocessing, inputs: list[Any]) -> np.ndarray:
    """Encode raw golden inputs the way the page does, for the Python side of parity."""
    if split.dataset.input_kind == "image":
        info = split.dataset.image
        return np.asarray(inputs, dtype=np.float32).reshape(-1, info.height, info.width, info.channels)
    frame = pd.DataFrame(inputs, columns=[f.name for f in preprocessing.encoder.features], dtype=object)
    return preprocessing.transform(frame)


def example_rows(spec: Spec, split: Split) -> list[dict[str, Any]]:
    """Test rows the page offers to fill its form from (tabular data only)."""
    if split.dataset.input_kind != "tabular" or spec.app.examples == 0:
        return []
    positions = select_golden_rows(split, spec.app.examples)
    raw = split.dataset.take(split.test_index[positions])
    encoder_json = split.preprocessing.encoder.to_json()
    return [features_module.raw_row(raw, i, encoder_json) for i in range(len(raw))]


def input_description(split: Split) -> dict[str, Any]:
    dataset = split.dataset
    if dataset.input_kind == "image":
        info = dataset.image
        return {"kind": "image", "image": {"height": info.height, "width": info.width, "channels": info.channels,
                                          "range": list(info.value_range), "ink": info.ink}}
    return {"kind": "tabular", "features": split.preprocessing.encoder.to_json(),
            "encoded_names": split.preprocessing.encoder.output_names()}


def output_description(spec: Spec, split: Split) -> dict[str, Any]:
    dataset = split.dataset
    return {
        "task": dataset.task,
        "labels": list(dataset.class_names),
        "targets": list(dataset.target_names),
        "threshold": spec.task.threshold,
        "unit": dataset.target_unit,
        "activation": split.head.activation,
    }


def monitor_metadata(spec: Spec, split: Split, test_outputs: np.ndarray) -> dict[str, Any]:
    """Training statistics and thresholds for the app's drift monitoring (see builder/stats.py)."""
    from . import stats

    dataset = split.dataset
    train_raw = dataset.take(split.train_index)
    if dataset.input_kind == "image":
        features = stats.image_statistics(np.asarray(train_raw), dataset.image.value_range)
    else:
        features = stats.feature_statistics(train_raw, split.preprocessing.encoder.to_json())
    m = spec.monitor
    return {
        "thresholds": {"psi": m.psi_threshold, "ks": m.ks_threshold, "prediction_shift": m.prediction_shift_threshold,
                       "min_samples": m.min_samples},
        "collect_url": m.collect_url,
        "features": features,
        "predictions": stats.prediction_statistics(dataset.task, test_outputs, list(dataset.class_names),
                                                   spec.task.threshold),
    }


def build_metadata(spec: Spec, split: Split, reference: Any, model_info: dict[str, Any], backends: list[str]) -> dict[str, Any]:
    """Assemble metadata.json.

    Golden outputs come from ``reference``, a callable over encoded inputs: the shipped graph model
    run in Python (``builder.graph_model``), so a quantized model is compared with itself.
    """
    inputs = golden_inputs(spec, split)
    outputs = reference(encode_raw(split, split.preprocessing, inputs))
    golden = [{"input": raw, "output": [float(v) for v in np.asarray(out).reshape(-1)]} for raw, out in zip(inputs, outputs)]
    return {
        "generator": "webml",
        "schema": METADATA_SCHEMA,
        "name": spec.name,
        "title": spec.app.title or spec.title or spec.name,
        "model": model_info,
        "input": input_description(split),
        "output": output_description(spec, split),
        "app": {"language": spec.app.language, "backends": backends, "theme_color": spec.app.theme_color},
        "verify": {"tolerance": spec.verify.tolerance, "backends": list(spec.verify.backends)},
        "golden": golden,
        "examples": example_rows(spec, split),
        "monitor": monitor_metadata(spec, split, reference(split.x_test)),
    }
