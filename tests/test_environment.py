"""The pinned Python set imports, including the TF.js converter."""

from __future__ import annotations

import importlib.metadata
import re

from conftest import ROOT


def test_tensorflowjs_converter_imports():
    # tensorflowjs 4.22.0 beside the newest ydf fails here with a protobuf "Gencode/Runtime"
    # version error; requirements.lock pins ydf 0.12.0, which imports.
    from tensorflowjs.converters import converter

    assert callable(converter.convert)


def test_installed_versions_match_lock():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    for name in ("tensorflow", "tensorflowjs", "ydf", "keras", "protobuf", "playwright"):
        assert name in pins, f"{name} is not pinned in requirements.lock"
        assert importlib.metadata.version(name) == pins[name], f"{name} differs from requirements.lock"


def test_keras_is_version_3():
    import keras

    assert keras.__version__.startswith("3.")


def test_tfjs_runtime_pinned_in_lock():
    import json

    lock = json.loads((ROOT / "web" / "package-lock.json").read_text())
    for name in ("tfjs-core", "tfjs-converter", "tfjs-backend-wasm", "tfjs-backend-cpu"):
        entry = lock["packages"][f"node_modules/@tensorflow/{name}"]
        assert entry["version"] == "4.22.0"
