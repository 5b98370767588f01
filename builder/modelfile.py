"""Model files that ``webml convert`` reads: format detection, layer checks and loading.

The format comes from the file's own bytes, never from its name. A zip archive with a
``config.json`` is a Keras 3 ``.keras`` file. A file with the HDF5 signature and a
``model_config`` attribute is a Keras ``.h5`` file, written by Keras 2 or by Keras 3's legacy
saver. A folder with ``saved_model.pb`` is a TensorFlow SavedModel. Detection and the layer
checks read only the model's JSON configuration, so a file webml cannot use is rejected before
TensorFlow is imported.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError, ModelFileError
from .native import captured_native_output

log = logging.getLogger(__name__)

KERAS = "keras"
H5 = "h5"
SAVED_MODEL = "saved_model"
FORMAT_NAMES = {
    KERAS: "Keras 3 archive (.keras)",
    H5: "Keras HDF5 file (.h5)",
    SAVED_MODEL: "TensorFlow SavedModel folder",
}
SIGNATURE = "serving_default"

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# An HDF5 superblock starts at byte 0, 512, 1024, 2048, ... (a user block may precede it).
HDF5_MAX_SUPERBLOCK_OFFSET = 1 << 20
# Classes that hold other layers: their configs list sublayers that the checks visit too.
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# Layers that tf_keras' functional API creates for TensorFlow ops called on Keras tensors; they
# are not in tf_keras.layers but tf_keras loads them without custom objects.
TF_KERAS_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
WRAPPER_KEYS = ("layer", "backward_layer", "cell")
SAVED_MODEL_FIX = ("export a SavedModel with model.export(DIR) in the program that defines it and run "
                   "`webml convert DIR` (graph model only)")


@dataclass(frozen=True)
class ModelSource:
    """A model file or folder whose format has been detected from its content."""

    path: Path
    format: str
    keras_version: str = ""
    config: dict[str, Any] | None = None

    @property
    def description(self) -> str:
        version = f", written by Keras {self.keras_version}" if self.keras_version else ""
        return FORMAT_NAMES[self.format] + version

    @property
    def keras_major(self) -> int:
        """The major Keras version that wrote the file: 2 or 3 (0 for a SavedModel)."""
        if self.format == SAVED_MODEL:
            return 0
        head = self.keras_version.split(".", 1)[0]
        return int(head) if head.isdigit() else 2


@dataclass(frozen=True)
class LayerEntry:
    """One layer in a model configuration, nested models and wrapped layers included."""

    name: str
    class_name: str
    module: str
    config: dict[str, Any]
    parent: str


def detect_format(path: Path) -> ModelSource:
    """Detect the model format of ``path`` from its content; raise ``ModelFileError`` for anything else."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: file or folder not found; pass a .keras file, a .h5 file or a SavedModel folder")
    if path.is_dir():
        return _detect_folder(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file ({exc.strerror}); check its permissions") from exc
    if head[:4] in ZIP_SIGNATURES:
        return _read_keras_archive(path)
    if _hdf5_offset(path) is not None:
        return _read_hdf5(path)
    if path.name == "saved_model.pb":
        raise ModelFileError(f"{path}: this is the graph file of a SavedModel; pass its folder {path.parent} instead")
    if head[:1] == b"{":
        raise ModelFileError(f"{path}: a JSON file, not a model; pass a .keras file, a .h5 file or a SavedModel "
                             "folder (a TF.js model.json is already converted)")
    shown = head.hex(" ") if head else "nothing (the file is empty)"
    raise ModelFileError(f"{path}: not a model file webml can read (the file starts with {shown}); expected a "
                         "Keras 3 .keras zip archive, a Keras HDF5 .h5 file or a SavedModel folder")


def _detect_folder(path: Path) -> ModelSource:
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return ModelSource(path=path, format=SAVED_MODEL)
    if (path / "model.json").is_file():
        raise ModelFileError(f"{path}: a TF.js model (model.json), which is already converted; pass the "
                             "Keras or TensorFlow model it came from")
    raise ModelFileError(f"{path}: a folder without saved_model.pb, so not a SavedModel; pass a SavedModel "
                         "folder (written by model.export(DIR) or tf.saved_model.save), a .keras file or a .h5 file")


def _read_keras_archive(path: Path) -> ModelSource:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                if any(name.endswith("saved_model.pb") for name in names):
                    raise ModelFileError(f"{path}: a zip archive of a SavedModel; unzip it and pass the folder "
                                         "that contains saved_model.pb")
                listed = ", ".join(sorted(names)[:5]) or "nothing"
                raise ModelFileError(f"{path}: a zip archive but not a Keras model (no config.json; it contains "
                                     f"{listed}); save the model with model.save('model.keras')")
            config = _parse_json(path, "config.json", archive.read("config.json"))
            metadata = _parse_json(path, "metadata.json", archive.read("metadata.json")) if "metadata.json" in names else {}
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: a damaged zip archive ({exc}); save the model again") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{path}: config.json does not describe a Keras model (no class_name); save the model "
                             "with model.save('model.keras')")
    return ModelSource(path=path, format=KERAS, keras_version=str(metadata.get("keras_version", "")), config=config)


def _parse_json(path: Path, member: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: {member} is not valid JSON ({exc}); save the model again") from exc


def _hdf5_offset(path: Path) -> int | None:
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as handle:
        while offset < min(size, HDF5_MAX_SUPERBLOCK_OFFSET + 1):
            handle.seek(offset)
            if handle.read(8) == HDF5_SIGNATURE:
                return offset
            offset = 512 if offset == 0 else offset * 2
    return None


def _read_hdf5(path: Path) -> ModelSource:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            attributes = {key: _attribute_text(handle.attrs[key]) for key in handle.attrs}
            weights_only = "layer_names" in attributes or "layers" in handle or "_layer_checkpoint_dependencies" in handle
    except OSError as exc:
        raise ModelFileError(f"{path}: an HDF5 file that cannot be opened ({exc}); save the model again") from exc
    if "model_config" not in attributes:
        if weights_only:
            raise ModelFileError(f"{path}: an HDF5 file with weights only (no model_config attribute); save the whole "
                                 "model with model.save('model.keras') and convert that file")
        raise ModelFileError(f"{path}: an HDF5 file but not a Keras model (no model_config attribute); save the "
                             "model with model.save('model.keras')")
    config = _parse_json(path, "the model_config attribute", attributes["model_config"].encode("utf-8"))
    version = attributes.get("keras_version", "")
    if version.startswith("1."):
        raise ModelFileError(f"{path}: written by Keras {version}, which webml does not read; load it with Keras 2 "
                             "and save it again with model.save('model.h5')")
    return ModelSource(path=path, format=H5, keras_version=version, config=config)


def _attribute_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def iter_layers(config: dict[str, Any], parent: str = "") -> Iterator[LayerEntry]:
    """Yield every layer of a model configuration, depth first, nested models and wrapped layers included."""
    for entry in config.get("config", {}).get("layers", []) or []:
        if not isinstance(entry, dict):
            continue
        layer_config = entry.get("config", {}) or {}
        name = str(layer_config.get("name") or entry.get("name") or "?")
        yield LayerEntry(name=name, class_name=str(entry.get("class_name", "")), module=str(entry.get("module") or ""),
                         config=layer_config, parent=parent)
        if isinstance(layer_config.get("layers"), list):
            yield from iter_layers(entry, parent=name)
        for key in WRAPPER_KEYS:
            inner = layer_config.get(key)
            if isinstance(inner, dict) and "class_name" in inner:
                yield from iter_layers({"config": {"layers": [inner]}}, parent=name)


def check_lambda_layers(source: ModelSource) -> None:
    """Reject a file with a Lambda layer: its function is Python bytecode that webml does not run."""
    for layer in iter_layers(source.config or {}):
        if layer.class_name == "Lambda":
            raise ModelFileError(
                f"{source.path}: layer '{layer.name}' is a Lambda layer, whose Python function the file stores as "
                "bytecode that webml does not run; replace it with a built-in layer, or " + SAVED_MODEL_FIX
            )


def check_custom_layers(source: ModelSource, builtin: frozenset[str]) -> None:
    """Reject a file with a layer or model class that neither Keras nor tf_keras provides.

    ``builtin`` contains the class names of the Keras that will load the file. An entry with a
    ``module`` (Keras 3 archives) is built in when that module is part of Keras.
    """
    top = source.config or {}
    entries = [LayerEntry(name=str(top.get("config", {}).get("name", "model")), class_name=str(top.get("class_name", "")),
                          module=str(top.get("module") or ""), config=top.get("config", {}), parent="")]
    for layer in entries + list(iter_layers(top)):
        if _is_builtin(layer, builtin):
            continue
        where = f" ({layer.module})" if layer.module else ""
        what = "the model" if layer is entries[0] else f"layer '{layer.name}'"
        raise ModelFileError(
            f"{source.path}: {what} uses the custom class {layer.class_name}{where}, which webml cannot import; "
            + SAVED_MODEL_FIX.replace("defines it", "defines the class")
        )


def _is_builtin(layer: LayerEntry, builtin: frozenset[str]) -> bool:
    if layer.module:
        return layer.module == "keras" or layer.module.startswith(("keras.", "tf_keras.", "keras_core."))
    return layer.class_name in builtin


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: its name, shape (None for a free dimension) and dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


class LoadedModel:
    """A model ready to run in Python: a Keras 3 or tf_keras model, or a SavedModel's signature.

    ``predict`` takes inputs keyed by name and returns one array per output, in ``outputs`` order.
    """

    def __init__(self, source: ModelSource, framework: str, model: Any, inputs: list[TensorSpec],
                 outputs: list[str]) -> None:
        self.source = source
        self.framework = framework
        self.model = model
        self.inputs = inputs
        self.outputs = outputs

    @property
    def keras_model(self) -> Any | None:
        return None if self.framework == SAVED_MODEL else self.model

    def predict(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.framework == SAVED_MODEL:
            result = saved_model_call(self.model, inputs)
            return [result[name] for name in self.outputs]
        arguments: Any = inputs[self.inputs[0].name] if len(self.inputs) == 1 else dict(inputs)
        with captured_native_output("Keras predict"):
            result = self.model(arguments, training=False)
        return [np.asarray(value) for value in _flatten(result)]

    def export(self, directory: Path) -> Path:
        """Write a SavedModel with a ``serving_default`` signature; a SavedModel source is used as it is."""
        if self.framework == SAVED_MODEL:
            return self.source.path
        with captured_native_output("SavedModel export"):
            if self.framework == "tf_keras":
                self.model.export(str(directory))
            else:
                self.model.export(str(directory), format="tf_saved_model", verbose=False)
        return directory


def _flatten(result: Any) -> list[Any]:
    if isinstance(result, dict):
        return [result[key] for key in sorted(result)]
    if isinstance(result, (list, tuple)):
        return [item for value in result for item in _flatten(value)]
    return [result]


def builtin_classes(framework: str) -> frozenset[str]:
    """Class names that the given Keras (``keras`` or ``tf_keras``) can deserialize without custom objects."""
    if framework == "tf_keras":
        import tf_keras as module

        extra = TF_KERAS_OP_LAYERS
    else:
        import keras as module

        extra = frozenset()
    names = {name for name in dir(module.layers) if name[:1].isupper()}
    return frozenset(names | MODEL_CLASSES | extra)


def load(source: ModelSource) -> LoadedModel:
    """Load a detected model with the framework that wrote it; the checks above run first."""
    if source.format == SAVED_MODEL:
        return _load_saved_model(source)
    check_lambda_layers(source)
    framework = "tf_keras" if source.keras_major == 2 else "keras"
    check_custom_layers(source, builtin_classes(framework))
    try:
        with captured_native_output("model loading"):
            if framework == "tf_keras":
                import tf_keras

                model = tf_keras.models.load_model(str(source.path), compile=False)
            else:
                import keras

                model = keras.saving.load_model(str(source.path), compile=False, safe_mode=True)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        loader = "tf_keras" if framework == "tf_keras" else "Keras 3"
        raise ModelFileError(f"{source.path}: {loader} failed to load the model ({first}); check that the file "
                             "loads with keras.saving.load_model where it was saved") from exc
    inputs = [TensorSpec(name=_tensor_name(tensor), shape=tuple(_dim(d) for d in tensor.shape),
                         dtype=_dtype_name(tensor.dtype)) for tensor in model.inputs]
    outputs = [_tensor_name(tensor) for tensor in model.outputs]
    return LoadedModel(source, framework, model, inputs, outputs)


def _tensor_name(tensor: Any) -> str:
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "layer", None) or getattr(history, "operation", None)
    if layer is not None:
        return str(layer.name)
    return str(tensor.name).split(":", 1)[0]


def _dim(value: Any) -> int | None:
    return None if value is None else int(value)


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


def _load_saved_model(source: ModelSource) -> LoadedModel:
    import tensorflow as tf

    try:
        with captured_native_output("SavedModel loading"):
            loaded = tf.saved_model.load(str(source.path))
    except (ValueError, OSError, RuntimeError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{source.path}: TensorFlow failed to load the SavedModel ({first}); check that "
                             "tf.saved_model.load reads it where it was written") from exc
    signatures = list(loaded.signatures.keys())
    if SIGNATURE not in signatures:
        found = ", ".join(signatures) or "none"
        raise ModelFileError(f"{source.path}: the SavedModel has no '{SIGNATURE}' signature (signatures: {found}); "
                             f"export it with model.export(DIR), or tf.saved_model.save(obj, DIR, "
                             f"signatures={{'{SIGNATURE}': function}})")
    function = loaded.signatures[SIGNATURE]
    specs = function.structured_input_signature[1]
    inputs = [TensorSpec(name=name, shape=tuple(_dim(d) for d in spec.shape), dtype=spec.dtype.name)
              for name, spec in specs.items()]
    outputs = sorted(function.structured_outputs, key=output_order)
    # The loaded object owns the variables that the signature reads; keep it alive with the function.
    return LoadedModel(source, SAVED_MODEL, _Signature(loaded, function), inputs, outputs)


def output_order(name: str) -> tuple[int, str]:
    """Sort ``output_0, output_1, ..., output_10`` by number, other names after them by text."""
    prefix, _, number = name.rpartition("_")
    return (int(number), "") if prefix == "output" and number.isdigit() else (1 << 30, name)


class _Signature:
    def __init__(self, loaded: Any, function: Any) -> None:
        self.loaded = loaded
        self.function = function


def saved_model_call(signature: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a SavedModel's serving signature; returns its outputs by signature key."""
    import tensorflow as tf

    function = signature.function
    specs = function.structured_input_signature[1]
    arguments = {name: tf.constant(inputs[name], dtype=spec.dtype) for name, spec in specs.items()}
    try:
        result = function(**arguments)
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConversionError(f"running the SavedModel's '{SIGNATURE}' signature failed: {first}") from exc
    return {key: value.numpy() for key, value in result.items()}


def load_saved_model_signature(directory: Path) -> Any:
    """Load ``directory``'s serving signature (for a SavedModel that webml exported itself)."""
    return _load_saved_model(ModelSource(path=directory, format=SAVED_MODEL)).model
