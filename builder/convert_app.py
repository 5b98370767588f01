"""The web app that ``webml convert --app SCHEMA`` renders around a converted graph model.

The schema is a small TOML file that describes what the model's numbers mean: feature names for
a tabular input or the size and value range of an image input, and class or target names for the
output. The app itself is the one ``webml build`` renders (``web/src``, the templates and
the service worker), so ``webml test`` checks it the same way.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import render
from .bundle import bundle_app
from .errors import UsageError
from .modelfile import TensorSpec
from .spec import COLOR_PATTERN, LANGUAGES

TASKS = ("multiclass", "binary", "multilabel", "regression")
INPUT_KINDS = ("tabular", "image")
APP_BACKENDS = ("wasm", "webgl", "cpu")
VERIFY_BACKENDS = ("wasm", "cpu")
DEFAULT_RANGE = (-1.0, 1.0)
TOP_KEYS = ("title", "short_name", "description", "language", "theme_color", "task", "labels", "targets", "unit",
            "threshold", "input")
INPUT_KEYS = ("kind", "features", "range", "height", "width", "channels", "ink")
FEATURE_KEYS = ("name", "unit", "min", "max", "fill")


class SchemaError(UsageError):
    """An app schema file that is missing, malformed or does not fit the model."""


@dataclass(frozen=True)
class Feature:
    """One numeric input column of a tabular model."""

    name: str
    unit: str = ""
    minimum: float = DEFAULT_RANGE[0]
    maximum: float = DEFAULT_RANGE[1]
    fill: float | None = None


@dataclass(frozen=True)
class AppSchema:
    """The app's texts, output names and input layout, read from the schema file."""

    path: Path
    title: str = ""
    short_name: str = ""
    description: str = ""
    language: str = "auto"
    theme_color: str = "#1f5fbf"
    task: str = ""
    labels: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    unit: str = ""
    threshold: float = 0.5
    input_kind: str = "tabular"
    features: tuple[Feature, ...] = ()
    value_range: tuple[float, float] = DEFAULT_RANGE
    image_size: tuple[int | None, int | None, int | None] = (None, None, None)
    ink: bool = False


def _suggest(key: str, known: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{path}: key '{key}' = {value!r} must be a number")
    return float(value)


def _string_list(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SchemaError(f"{path}: key '{key}' must be a list of strings, e.g. {key} = [\"a\", \"b\"]")
    return tuple(value)


def _range(path: Path, key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise SchemaError(f"{path}: key '{key}' must be [low, high], e.g. {key} = [0, 255]")
    low, high = _number(path, key, value[0]), _number(path, key, value[1])
    if not low < high:
        raise SchemaError(f"{path}: key '{key}' = {value} must have low < high")
    return low, high


def load_schema(path: Path) -> AppSchema:
    """Read and validate an app schema file; ``SchemaError`` names the key that is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: schema file not found; pass a TOML file that describes the inputs and outputs "
                          "(see docs/convert.md)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{path}: invalid TOML ({exc}); fix the syntax at that line") from exc
    for key in raw:
        if key not in TOP_KEYS:
            raise SchemaError(f"{path}: unknown key '{key}'{_suggest(key, TOP_KEYS)}; the keys are listed in "
                              "docs/convert.md")

    values: dict[str, Any] = {}
    for key in ("title", "short_name", "description", "unit"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise SchemaError(f"{path}: key '{key}' = {raw[key]!r} must be a string")
            values[key] = raw[key]
    if "language" in raw:
        if raw["language"] not in LANGUAGES:
            raise SchemaError(f"{path}: key 'language' = {raw['language']!r} is invalid; use one of {', '.join(LANGUAGES)}")
        values["language"] = raw["language"]
    if "theme_color" in raw:
        if not isinstance(raw["theme_color"], str) or not COLOR_PATTERN.match(raw["theme_color"]):
            raise SchemaError(f"{path}: key 'theme_color' = {raw['theme_color']!r} is invalid; use a colour such as "
                              "\"#1f5fbf\"")
        values["theme_color"] = raw["theme_color"]

    if "task" in raw:
        if raw["task"] not in TASKS:
            raise SchemaError(f"{path}: key 'task' = {raw['task']!r} is invalid{_suggest(str(raw['task']), TASKS)}; "
                              f"use one of {', '.join(TASKS)}")
        values["task"] = raw["task"]
    for key in ("labels", "targets"):
        if key in raw:
            values[key] = _string_list(path, key, raw[key])
    if "threshold" in raw:
        values["threshold"] = _number(path, "threshold", raw["threshold"])
        if not 0.0 <= values["threshold"] <= 1.0:
            raise SchemaError(f"{path}: key 'threshold' = {raw['threshold']!r} is out of range; use a value from 0 to 1")

    values.update(_load_input(path, raw.get("input")))
    return AppSchema(path=path, **values)


def _load_input(path: Path, table: Any) -> dict[str, Any]:
    if table is None:
        raise SchemaError(f"{path}: missing table [input]; add it with kind = \"tabular\" and the feature names, "
                          "or kind = \"image\"")
    if not isinstance(table, dict):
        raise SchemaError(f"{path}: 'input' must be a table such as [input], not {type(table).__name__}")
    for key in table:
        if key not in INPUT_KEYS:
            raise SchemaError(f"{path}: unknown key 'input.{key}'{_suggest(key, INPUT_KEYS)}; the keys are listed in "
                              "docs/convert.md")
    kind = table.get("kind", "tabular")
    if kind not in INPUT_KINDS:
        raise SchemaError(f"{path}: key 'input.kind' = {kind!r} is invalid; use one of {', '.join(INPUT_KINDS)}")
    values: dict[str, Any] = {"input_kind": kind}
    if "range" in table:
        values["value_range"] = _range(path, "input.range", table["range"])

    if kind == "image":
        values.update(_load_image(path, table))
    else:
        for key in ("height", "width", "channels", "ink"):
            if key in table:
                raise SchemaError(f"{path}: key 'input.{key}' applies to image inputs; remove it or set kind = \"image\"")
        values["features"] = _load_features(path, table.get("features"), values.get("value_range", DEFAULT_RANGE))
    return values


def _load_image(path: Path, table: dict[str, Any]) -> dict[str, Any]:
    if "features" in table:
        raise SchemaError(f"{path}: key 'input.features' applies to tabular inputs; remove it or set kind = \"tabular\"")
    size = []
    for key in ("height", "width", "channels"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SchemaError(f"{path}: key 'input.{key}' = {value!r} must be a positive integer")
        size.append(value)
    values: dict[str, Any] = {"image_size": tuple(size)}
    if "ink" in table:
        if not isinstance(table["ink"], bool):
            raise SchemaError(f"{path}: key 'input.ink' = {table['ink']!r} must be true or false")
        values["ink"] = table["ink"]
    return values


def _load_features(path: Path, features: Any, default_range: tuple[float, float]) -> tuple[Feature, ...]:
    if not isinstance(features, list) or not features:
        raise SchemaError(f"{path}: key 'input.features' must list the feature names in the model's input order, "
                          "e.g. features = [\"age\", \"income\"]")
    low, high = default_range
    parsed = []
    for index, item in enumerate(features):
        where = f"input.features[{index}]"
        if isinstance(item, str):
            parsed.append(Feature(name=item, minimum=low, maximum=high))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SchemaError(f"{path}: key '{where}' must be a name or a table with a name, e.g. "
                              "{ name = \"age\", unit = \"years\", min = 0, max = 100 }")
        for key in item:
            if key not in FEATURE_KEYS:
                raise SchemaError(f"{path}: unknown key '{where}.{key}'{_suggest(key, FEATURE_KEYS)}; use "
                                  f"{', '.join(FEATURE_KEYS)}")
        minimum = _number(path, f"{where}.min", item.get("min", low))
        maximum = _number(path, f"{where}.max", item.get("max", high))
        if not minimum < maximum:
            raise SchemaError(f"{path}: key '{where}' has min {minimum:g} >= max {maximum:g}; use min < max")
        fill = _number(path, f"{where}.fill", item["fill"]) if "fill" in item else None
        unit = item.get("unit", "")
        if not isinstance(unit, str):
            raise SchemaError(f"{path}: key '{where}.unit' = {unit!r} must be a string")
        parsed.append(Feature(name=item["name"], unit=unit, minimum=minimum, maximum=maximum, fill=fill))

    names = [f.name for f in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SchemaError(f"{path}: key 'input.features' names {duplicates[0]!r} twice; feature names must be unique")
    return tuple(parsed)


@dataclass(frozen=True)
class AppPlan:
    """A schema checked against the model: the resolved task, labels and input layout."""

    schema: AppSchema
    task: str
    labels: tuple[str, ...]
    targets: tuple[str, ...]
    image: dict[str, Any] | None
    ranges: tuple[tuple[float, float], ...]


def plan_app(schema: AppSchema, inputs: list[TensorSpec], outputs: list[tuple[int | None, ...]],
             model_path: Path) -> AppPlan:
    """Check the schema against the model's one input and one output; ``SchemaError`` if they disagree."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise SchemaError(f"{model_path}: the model has {len(inputs)} input(s) and {len(outputs)} output(s); the "
                          "app takes one of each, so convert without --app and build the page around the model yourself")
    spec = inputs[0]
    if spec.dtype not in ("float32", "float16", "float64"):
        raise SchemaError(f"{model_path}: input '{spec.name}' has dtype {spec.dtype}; the app feeds float32 values, "
                          "so convert without --app")
    output_shape = outputs[0]
    if len(output_shape) != 2 or output_shape[1] is None:
        raise SchemaError(f"{model_path}: the output has shape {list(output_shape)}; the app shows outputs of shape "
                          "[batch, values], so convert without --app")
    task, labels, targets = _plan_output(schema, int(output_shape[1]))

    shape = spec.shape
    if schema.input_kind == "tabular":
        if len(shape) != 2 or shape[1] != len(schema.features):
            raise SchemaError(f"{schema.path}: key 'input.features' lists {len(schema.features)} features but the "
                              f"model's input '{spec.name}' has shape {list(shape)}; list one name per input column")
        return AppPlan(schema, task, labels, targets, None, tuple((f.minimum, f.maximum) for f in schema.features))
    image = _plan_image(schema, spec, model_path)
    return AppPlan(schema, task, labels, targets, image, (schema.value_range,))


def _plan_output(schema: AppSchema, width: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    path = schema.path
    task = schema.task
    if not task:
        if not schema.labels:
            task = "regression"
        else:
            task = "binary" if width == 1 else "multiclass"
    labels, targets = schema.labels, schema.targets
    if task == "binary":
        if width != 1:
            raise SchemaError(f"{path}: task 'binary' needs one output value (the probability of the second label), "
                              f"but the model outputs {width}; use task = \"multiclass\"")
        labels = labels or ("0", "1")
        if len(labels) != 2:
            raise SchemaError(f"{path}: key 'labels' has {len(labels)} names; a binary task needs 2")
    elif task in ("multiclass", "multilabel"):
        labels = labels or tuple(str(i) for i in range(width))
        if len(labels) != width:
            raise SchemaError(f"{path}: key 'labels' has {len(labels)} names but the model outputs {width} values; "
                              "list one name per output value")
    else:
        if not targets:
            targets = ("value",) if width == 1 else tuple(f"output {i}" for i in range(width))
        if len(targets) != width:
            raise SchemaError(f"{path}: key 'targets' has {len(targets)} names but the model outputs {width} values")
    return task, labels, targets


def _plan_image(schema: AppSchema, spec: TensorSpec, model_path: Path) -> dict[str, Any]:
    shape = spec.shape
    if len(shape) != 4 or None in shape[1:]:
        raise SchemaError(f"{schema.path}: input.kind is image but the model's input '{spec.name}' has shape "
                          f"{list(shape)}; an image input has shape [batch, height, width, channels]")
    size = tuple(int(d) for d in shape[1:])
    for key, given, actual in zip(("height", "width", "channels"), schema.image_size, size):
        if given is not None and given != actual:
            raise SchemaError(f"{schema.path}: key 'input.{key}' = {given} but the model's input has {key} {actual}")
    if size[2] not in (1, 3):
        raise SchemaError(f"{model_path}: the image input has {size[2]} channels; the app draws grayscale (1) or RGB (3)")
    return {"height": size[0], "width": size[1], "channels": size[2], "range": list(schema.value_range),
            "ink": schema.ink}


def raw_inputs(plan: AppPlan, batch: np.ndarray) -> list[Any]:
    """Turn a batch of model inputs into the raw inputs the page takes (rows by feature name, or flat images)."""
    if plan.image is not None:
        return [np.asarray(item, dtype=np.float32).reshape(-1).tolist() for item in batch]
    return [{feature.name: float(value) for feature, value in zip(plan.schema.features, row)} for row in batch]


def _features_json(plan: AppPlan) -> list[dict[str, Any]]:
    out = []
    for feature in plan.schema.features:
        fill = feature.fill if feature.fill is not None else (feature.minimum + feature.maximum) / 2
        out.append({"name": feature.name, "kind": "numeric", "unit": feature.unit, "fill": fill, "indicator": False,
                    "min": feature.minimum, "max": feature.maximum, "mean": None, "std": None})
    return out


def write_app(staging: Path, plan: AppPlan, *, name: str, model_info: dict[str, Any], inputs: np.ndarray,
              outputs: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Bundle and render the app into ``staging`` around ``staging/model``; returns the precache manifest."""
    from .site import METADATA_SCHEMA

    schema = plan.schema
    title = schema.title or name
    bundle = bundle_app(staging, list(APP_BACKENDS), staging / "model")
    raws = raw_inputs(plan, inputs)
    golden = [{"input": raw, "output": [float(v) for v in np.asarray(out).reshape(-1)]} for raw, out in zip(raws, outputs)]
    if plan.image is not None:
        input_json: dict[str, Any] = {"kind": "image", "image": plan.image}
    else:
        input_json = {"kind": "tabular", "features": _features_json(plan),
                      "encoded_names": [f.name for f in schema.features]}
    metadata = {
        "generator": "webml",
        "schema": METADATA_SCHEMA,
        "name": name,
        "title": title,
        "model": model_info,
        "input": input_json,
        "output": {"task": plan.task, "labels": list(plan.labels), "targets": list(plan.targets),
                   "threshold": schema.threshold, "unit": schema.unit, "activation": None},
        "app": {"language": schema.language, "backends": list(APP_BACKENDS), "theme_color": schema.theme_color},
        "verify": {"tolerance": tolerance, "backends": list(VERIFY_BACKENDS)},
        "golden": golden,
        "examples": [],
    }
    render.write_json(staging / "metadata.json", metadata)
    render.render_index(staging, metadata, schema.description)
    render.write_manifest(staging, metadata, schema.short_name or title[:12], schema.description, "#ffffff")
    render.write_icons(staging, title, schema.theme_color)
    render.write_theme(staging, schema.theme_color)
    return render.write_service_worker(staging, name, bundle.wasm_files)
