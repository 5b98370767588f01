"""Project specs: TOML files that describe one model and its web app.

A spec is loaded once, validated at the edge and turned into frozen dataclasses, one per
section. Every key is documented in ``docs/spec.md``; an unknown key raises ``SpecError``
with the closest known key as a suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError

TASK_TYPES = ("auto", "binary", "multiclass", "multilabel", "regression")
PROTOCOLS = ("auto", "holdout", "kfold", "iterated-kfold")
ARCHITECTURES = ("mlp", "cnn")
TUNING_ALGORITHMS = ("random", "bayesian")
COLUMN_TYPES = ("numeric", "categorical")
INPUT_KINDS = ("auto", "tabular", "image")
COLORS = ("grayscale", "rgb")
QUANTIZATIONS = ("float32", "float16", "uint16", "uint8")
BACKENDS = ("wasm", "webgl", "webgpu", "cpu")
LANGUAGES = ("auto", "en", "zh-TW")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COLOR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
# A URL path without scheme or host: letters, digits and the characters paths usually contain.
COLLECT_PATH_PATTERN = re.compile(r"^[A-Za-z0-9/._~-]+$")


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _range(low: float | None = None, high: float | None = None, above_low: bool = False) -> dict[str, Any]:
    return {"range": (low, high), "above_low": above_low}


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how to read it."""

    source: str = ""
    target: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    units: dict[str, str] = field(default_factory=dict)
    target_unit: str = ""
    input: str = field(default="auto", metadata=_choices(*INPUT_KINDS))
    image_size: tuple[int, ...] = ()
    color: str = field(default="grayscale", metadata=_choices(*COLORS))
    delimiter: str = ","
    test_size: float = field(default=0.2, metadata=_range(0.05, 0.5))
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskSpec:
    """What the model predicts; the build derives activation, loss and metrics from it."""

    type: str = field(default="auto", metadata=_choices(*TASK_TYPES))
    threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class ValidationSpec:
    """How models are scored before the one final look at the test set."""

    protocol: str = field(default="auto", metadata=_choices(*PROTOCOLS))
    folds: int = field(default=0, metadata=_range(0, 50))
    repeats: int = field(default=0, metadata=_range(0, 20))
    validation_size: float = field(default=0.2, metadata=_range(0.05, 0.5))


@dataclass(frozen=True)
class ModelSpec:
    """The starting architecture and training settings."""

    architecture: str = field(default="mlp", metadata=_choices(*ARCHITECTURES))
    units: tuple[int, ...] = (64,)
    filters: tuple[int, ...] = (16, 32)
    dropout: float = field(default=0.0, metadata=_range(0.0, 0.9))
    l1: float = field(default=0.0, metadata=_range(0.0, 1.0))
    l2: float = field(default=0.0, metadata=_range(0.0, 1.0))
    learning_rate: float = field(default=0.001, metadata=_range(1e-6, 1.0))
    epochs: int = field(default=100, metadata=_range(1, 10000))
    batch_size: int = field(default=32, metadata=_range(1, 65536))
    patience: int = field(default=10, metadata=_range(1, 1000))


@dataclass(frozen=True)
class ScaleUpSpec:
    """The capacity sweep that looks for the point where the model starts to overfit."""

    enabled: bool = True
    widths: tuple[int, ...] = (16, 64, 256)
    depths: tuple[int, ...] = (1, 2)
    epochs: int = field(default=120, metadata=_range(2, 10000))
    patience: int = field(default=10, metadata=_range(1, 1000))
    min_improvement: float = field(default=0.01, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class TuningSpec:
    """The KerasTuner search over regularization and capacity."""

    enabled: bool = True
    algorithm: str = field(default="random", metadata=_choices(*TUNING_ALGORITHMS))
    trials: int = field(default=10, metadata=_range(1, 1000))
    units: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 3)
    dropout: tuple[float, ...] = (0.0, 0.5)
    l1: tuple[float, ...] = (0.0, 0.001)
    l2: tuple[float, ...] = (0.0, 0.01)
    learning_rate: tuple[float, ...] = (0.0001, 0.01)
    directory: str = ""


@dataclass(frozen=True)
class OptimizeSpec:
    """Compressed variants of the model and how one is chosen for shipping."""

    variants: tuple[str, ...] = field(default=QUANTIZATIONS, metadata=_choices(*QUANTIZATIONS))
    max_metric_drop: float = field(default=-1.0, metadata=_range(-1.0, 1.0))
    max_quantization_error: float = field(default=0.05, metadata=_range(1e-6, 1e6))
    pruning_sparsity: float = field(default=0.0, metadata=_range(0.0, 0.99))
    pruning_epochs: int = field(default=10, metadata=_range(1, 1000))
    shard_bytes: int = field(default=4 * 1024 * 1024, metadata=_range(1024, 1 << 30))


@dataclass(frozen=True)
class AppSpec:
    """The generated web app."""

    title: str = ""
    short_name: str = ""
    description: str = ""
    language: str = field(default="auto", metadata=_choices(*LANGUAGES))
    theme_color: str = "#1f5fbf"
    background_color: str = "#ffffff"
    backends: tuple[str, ...] = field(default=("wasm", "webgpu", "webgl", "cpu"), metadata=_choices(*BACKENDS))
    examples: int = field(default=5, metadata=_range(0, 50))
    # Two optimize variants (such as "float32" and "uint8") to ship side by side; empty ships one.
    ab_variants: tuple[str, ...] = ()
    # Share of clients assigned to the second of ab_variants.
    ab_split: float = field(default=0.5, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class MonitorSpec:
    """Drift thresholds that the app's monitoring panel warns above."""

    psi_threshold: float = field(default=0.2, metadata=_range(0.0, 100.0))
    ks_threshold: float = field(default=0.3, metadata=_range(0.0, 1.0))
    prediction_shift_threshold: float = field(default=0.2, metadata=_range(0.0, 100.0))
    min_samples: int = field(default=30, metadata=_range(1, 1_000_000))
    collect_url: str = ""


@dataclass(frozen=True)
class VerifySpec:
    """Browser checks run on every build before the output is replaced."""

    tolerance: float = field(default=1e-4, metadata=_range(0.0, 1.0, above_low=True))
    golden: int = field(default=8, metadata=_range(1, 256))
    backends: tuple[str, ...] = field(default=("wasm", "cpu"), metadata=_choices(*BACKENDS))
    offline: bool = True


@dataclass(frozen=True)
class Spec:
    """A whole project spec."""

    name: str
    path: Path
    title: str = ""
    seed: int = 42
    data: DataSpec = field(default_factory=DataSpec)
    task: TaskSpec = field(default_factory=TaskSpec)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    scale_up: ScaleUpSpec = field(default_factory=ScaleUpSpec)
    tuning: TuningSpec = field(default_factory=TuningSpec)
    optimize: OptimizeSpec = field(default_factory=OptimizeSpec)
    app: AppSpec = field(default_factory=AppSpec)
    monitor: MonitorSpec = field(default_factory=MonitorSpec)
    verify: VerifySpec = field(default_factory=VerifySpec)

    @property
    def base_dir(self) -> Path:
        """The folder that relative paths in the spec are resolved against."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Resolve a path from the spec against the spec's own folder."""
        return (self.base_dir / relative).resolve()

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data, defaults filled in, for reports and cache keys."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data


SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "task": TaskSpec,
    "validation": ValidationSpec,
    "model": ModelSpec,
    "scale_up": ScaleUpSpec,
    "tuning": TuningSpec,
    "optimize": OptimizeSpec,
    "app": AppSpec,
    "monitor": MonitorSpec,
    "verify": VerifySpec,
}
TOP_LEVEL_KEYS = ("name", "title", "seed")


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a spec file.

    ``overrides`` maps dotted keys (``"model.epochs"``) to values that replace the file's.
    Raises ``SpecError`` naming the file and key for any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found; pass the path of a TOML spec such as models/digits.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason}); save the spec as UTF-8 TOML") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}; fix the syntax at that line") from exc
    for dotted, value in (overrides or {}).items():
        _apply_override(raw, dotted, value, path)
    try:
        return parse_spec(raw, path.resolve())
    except SpecError as exc:
        # A bad value that came from --set is named as such, not as the file's.
        for dotted in overrides or {}:
            prefix = f"{path.resolve()}: key '{dotted}'"
            if exc.message.startswith(prefix):
                raise SpecError(f"--set {dotted}" + exc.message[len(prefix):]) from exc
        raise


def parse_spec(raw: dict[str, Any], path: Path) -> Spec:
    """Validate an already-parsed TOML document; see ``load_spec``."""
    known = list(TOP_LEVEL_KEYS) + list(SECTIONS)
    for key in raw:
        if key not in known:
            raise SpecError(f"{path}: unknown key '{key}'{_suggest(key, known)}; the keys are listed in docs/spec.md")
    name = raw.get("name")
    if name is None:
        raise SpecError(f"{path}: missing key 'name'; add a line such as name = \"{path.stem}\"")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(
            f"{path}: key 'name' = {name!r} is invalid; use 1-64 lowercase letters, digits, '-' or '_' "
            "(it names the output folder)"
        )
    title = raw.get("title", "")
    if not isinstance(title, str):
        raise SpecError(f"{path}: key 'title' must be a string, not {type(title).__name__}")
    seed = raw.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise SpecError(f"{path}: key 'seed' = {seed!r} is invalid; use an integer from 0 to 2147483647")
    sections = {}
    for section, cls in SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise SpecError(f"{path}: '{section}' must be a table such as [{section}], not {type(table).__name__}")
        sections[section] = _build_section(cls, table, path, section)
    spec = Spec(name=name, path=path, title=title, seed=seed, **sections)
    _check_cross_keys(spec)
    return spec


def _check_cross_keys(spec: Spec) -> None:
    where = spec.path
    if not spec.data.source:
        raise SpecError(
            f"{where}: missing key 'data.source'; set it to sklearn:NAME, a .csv or .npz file, or a folder of images"
        )
    if spec.data.image_size and len(spec.data.image_size) != 2:
        raise SpecError(f"{where}: key 'data.image_size' = {list(spec.data.image_size)} must be [height, width]")
    if any(size < 1 or size > 1024 for size in spec.data.image_size):
        raise SpecError(f"{where}: key 'data.image_size' = {list(spec.data.image_size)} must hold sizes from 1 to 1024")
    for name, kind in spec.data.columns.items():
        if kind not in COLUMN_TYPES:
            raise SpecError(
                f"{where}: key 'data.columns.{name}' = {kind!r} is invalid; use one of {', '.join(COLUMN_TYPES)}"
            )
    if not spec.model.units or any(u < 1 for u in spec.model.units):
        raise SpecError(f"{where}: key 'model.units' = {list(spec.model.units)} must list positive layer widths")
    for color_key in ("theme_color", "background_color"):
        value = getattr(spec.app, color_key)
        if not COLOR_PATTERN.match(value):
            raise SpecError(f"{where}: key 'app.{color_key}' = {value!r} is invalid; use a colour such as \"#1f5fbf\"")
    if "float32" not in spec.optimize.variants:
        raise SpecError(
            f"{where}: key 'optimize.variants' must include \"float32\", the reference the other variants are measured against"
        )
    _check_ab_variants(spec)
    _check_collect_url(spec)
    if not spec.verify.backends:
        raise SpecError(f"{where}: key 'verify.backends' is empty; list at least one of {', '.join(BACKENDS)}")
    for range_key in ("dropout", "l1", "l2", "learning_rate"):
        bounds = getattr(spec.tuning, range_key)
        if len(bounds) != 2 or bounds[0] > bounds[1] or bounds[0] < 0:
            raise SpecError(f"{where}: key 'tuning.{range_key}' = {list(bounds)} must be [low, high] with 0 <= low <= high")

    if spec.tuning.dropout[1] >= 1:
        raise SpecError(f"{where}: key 'tuning.dropout' = {list(spec.tuning.dropout)} must stay below 1, "
                        "the rate at which every unit is dropped")
    if spec.tuning.learning_rate[0] <= 0:
        raise SpecError(f"{where}: key 'tuning.learning_rate' = {list(spec.tuning.learning_rate)} must start above 0, "
                        "because learning rates are sampled on a log scale")
    for list_key in ("scale_up.widths", "scale_up.depths", "tuning.units", "tuning.depths"):
        section, key = list_key.split(".")
        values = getattr(getattr(spec, section), key)
        if not values or any(v < 1 for v in values):
            raise SpecError(f"{where}: key '{list_key}' = {list(values)} must list positive integers")


def _check_ab_variants(spec: Spec) -> None:
    names = spec.app.ab_variants
    if not names:
        return
    where = spec.path
    if len(names) != 2 or names[0] == names[1]:
        raise SpecError(f"{where}: key 'app.ab_variants' = {list(names)} must name two different model variants, "
                        "such as [\"float32\", \"uint8\"]")
    built = list(spec.optimize.variants)
    if spec.optimize.pruning_sparsity > 0:
        built += [f"pruned-{name}" for name in spec.optimize.variants]
    for name in names:
        if name not in built:
            raise SpecError(f"{where}: key 'app.ab_variants' names {name!r}, which this build does not make"
                            f"{_suggest(name, built)}; use names from optimize.variants ({', '.join(built)})")


def _check_collect_url(spec: Spec) -> None:
    url = spec.monitor.collect_url
    # The page's Content-Security-Policy allows connections to its own origin only.
    if url and (not COLLECT_PATH_PATTERN.match(url) or url.startswith("//")):
        raise SpecError(f"{spec.path}: key 'monitor.collect_url' = {url!r} is invalid; use a path on the app's own "
                        "origin such as \"/api/monitor\" (the page may connect to no other origin)")


def _build_section(cls: type, table: dict[str, Any], path: Path, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise SpecError(
                f"{path}: unknown key '{section}.{key}'{_suggest(key, list(fields))}; the keys are listed in docs/spec.md"
            )
        values[key] = _convert(value, hints[key], fields[key], f"{section}.{key}", path)
    return cls(**values)


def _convert(value: Any, hint: Any, spec_field: dataclasses.Field, key: str, path: Path) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise SpecError(f"{path}: key '{key}' must be a list, not {type(value).__name__}")
        return tuple(_convert_scalar(item, item_type, spec_field, key, path) for item in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: key '{key}' must be a table of names to strings, not {type(value).__name__}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise SpecError(f"{path}: key '{key}.{name}' must be a string, not {type(item).__name__}")
        return dict(value)
    return _convert_scalar(value, hint, spec_field, key, path)


def _convert_scalar(value: Any, hint: Any, spec_field: dataclasses.Field, key: str, path: Path) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{path}: key '{key}' = {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{path}: key '{key}' = {value!r} must be an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path}: key '{key}' = {value!r} must be a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise SpecError(f"{path}: key '{key}' = {value!r} must be a finite number")
    elif hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{path}: key '{key}' = {value!r} must be a string")
    elif isinstance(hint, types.UnionType):
        raise AssertionError(f"spec field {key} has an unsupported union type")
    choices = spec_field.metadata.get("choices")
    if choices and value not in choices:
        raise SpecError(
            f"{path}: key '{key}' = {value!r} is invalid{_suggest(str(value), list(choices))}; "
            f"use one of {', '.join(choices)}"
        )
    bounds = spec_field.metadata.get("range")
    if bounds is not None:
        low, high = bounds
        above_low = spec_field.metadata.get("above_low", False)
        if (low is not None and (value < low or (above_low and value == low))) or (high is not None and value > high):
            bounds = f"above {low} and at most {high}" if above_low else f"from {low} to {high}"
            raise SpecError(f"{path}: key '{key}' = {value!r} is out of range; use a value {bounds}")
    return value


def _apply_override(raw: dict[str, Any], dotted: str, value: Any, path: Path) -> None:
    parts = dotted.split(".")
    table = raw
    for part in parts[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise SpecError(f"{path}: cannot override '{dotted}' because '{part}' is not a table")
    table[parts[-1]] = value


def _suggest(key: str, known: list[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``--set KEY=VALUE`` argument; VALUE is read as a TOML value, else as a string."""
    if "=" not in text:
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, for example --set model.epochs=20")
    key, _, literal = text.partition("=")
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {literal}")["v"]
    except tomllib.TOMLDecodeError:
        value = literal
    return key, value
