"""Bad input gets one error line that names the file, key, row or value and the fix, with exit
code 2 for usage errors and 1 for build failures, and no traceback unless -v.

Each case of the table writes its input files, runs the command line in this process through
``builder.cli.main`` (TensorFlow is imported once for all cases) and checks the exit code and
the whole of stderr. Two tests run the real process to show the same line without a traceback.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import run_webml

from builder import cli


def spec_text(source: str, *sections: str, name: str = "bad") -> str:
    """A spec for ``source`` with the training workflow off and the given extra TOML lines."""
    extra = "\n".join(sections)
    return (f'name = "{name}"\nseed = 1\n[data]\nsource = "{source}"\n{extra}\n'
            "[scale_up]\nenabled = false\n[tuning]\nenabled = false\n[model]\nepochs = 2\n")


def csv_rows(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows) + "\n"


def numbers_csv(rows: int = 20, override: dict[tuple[int, int], str] | None = None) -> str:
    """A CSV with numeric columns a, b and a class column 'label' (two classes, alternating)."""
    lines = []
    for i in range(rows):
        cells = [f"{i * 0.5:.1f}", f"{(i * 7) % 11}.0", "yes" if i % 2 else "no"]
        for (row, column), value in (override or {}).items():
            if row == i:
                cells[column] = value
        lines.append(",".join(cells))
    return csv_rows("a,b,label", lines)


@dataclass
class Case:
    """One bad input: files to write, the command line, the exit code and the expected message.

    ``files`` maps names under the case's folder to text, bytes or a callable that writes the
    file. In ``argv`` and ``message``, ``{dir}`` is replaced by that folder.
    """

    id: str
    files: dict[str, str | bytes | Callable[[Path], None]]
    argv: list[str]
    exit_code: int
    message: str


def write_npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as stream:
            np.savez(stream, **arrays)
    return write


def write_png(path: Path) -> None:
    from PIL import Image

    Image.new("L", (8, 8), color=128).save(path)


def image_folder(extra: dict[str, str | bytes]) -> dict[str, str | bytes | Callable[[Path], None]]:
    files: dict[str, str | bytes | Callable[[Path], None]] = {}
    for label in ("cat", "dog"):
        for i in range(3):
            files[f"images/{label}/{i}.png"] = write_png
    files.update(extra)
    return files


BUILD = ["-q", "build", "{dir}/spec.toml", "-o", "{dir}/out"]
FAKE_BUILD = {"site/index.html": "<!doctype html>", "site/sw.js": "self;\n"}

CASES = [
    # The spec and the command line ------------------------------------------------------------
    Case("malformed-toml", {"spec.toml": 'name = "bad"\n[data\nsource = "x.csv"\n'}, BUILD, 2,
         "{dir}/spec.toml: invalid TOML: Expected ']' at the end of a table declaration (at line 2, column 6); "
         "fix the syntax at that line"),
    Case("unknown-key", {"spec.toml": spec_text("sklearn:iris", "[validation]\nfold = 3")}, BUILD, 2,
         "{dir}/spec.toml: unknown key 'validation.fold' (did you mean 'folds'?); the keys are listed in docs/spec.md"),
    Case("unknown-section", {"spec.toml": spec_text("sklearn:iris", "[verfy]\noffline = false")}, BUILD, 2,
         "{dir}/spec.toml: unknown key 'verfy' (did you mean 'verify'?); the keys are listed in docs/spec.md"),
    Case("wrong-type", {"spec.toml": spec_text("sklearn:iris").replace("epochs = 2", 'epochs = "ten"')}, BUILD, 2,
         "{dir}/spec.toml: key 'model.epochs' = 'ten' must be an integer"),
    Case("spec-not-found", {}, ["build", "{dir}/missing.toml"], 2,
         "{dir}/missing.toml: spec file not found; pass the path of a TOML spec such as models/digits.toml"),
    Case("unknown-option", {"spec.toml": spec_text("sklearn:iris")}, ["build", "{dir}/spec.toml", "--epochs", "3"], 2,
         "unrecognized arguments: --epochs 3; see `webml build --help`"),
    Case("set-without-value", {"spec.toml": spec_text("sklearn:iris")},
         ["build", "{dir}/spec.toml", "--set", "model.epochs"], 2,
         "--set 'model.epochs': expected KEY=VALUE, for example --set model.epochs=20"),
    Case("set-value-wrong-type", {"spec.toml": spec_text("sklearn:iris")}, BUILD + ["--set", "model.epochs=abc"], 2,
         "--set model.epochs = 'abc' must be an integer"),
    Case("tolerance-zero", {"spec.toml": spec_text("sklearn:iris", "[verify]\ntolerance = 0.0")}, BUILD, 2,
         "{dir}/spec.toml: key 'verify.tolerance' = 0.0 is out of range; use a value above 0.0 and at most 1.0"),
    Case("output-inside-a-file", {"spec.toml": spec_text("sklearn:iris"), "notes.txt": "a file"},
         ["-q", "build", "{dir}/spec.toml", "-o", "{dir}/notes.txt/app"], 2,
         "{dir}/notes.txt/app: {dir}/notes.txt is a file, not a folder; pick another --output"),
    Case("output-not-a-build", {"spec.toml": spec_text("sklearn:iris"), "out/notes.txt": "keep me"}, BUILD, 2,
         "{dir}/out: a folder that `webml build` did not write (no metadata.json from webml), which the build "
         "would replace; pick another --output or remove the folder"),

    # Data files -------------------------------------------------------------------------------
    Case("data-file-missing", {"spec.toml": spec_text("data/plants.csv", 'target = ["label"]')}, BUILD, 2,
         "{dir}/data/plants.csv: data file not found (data.source = 'data/plants.csv'); check the path, "
         "relative to {dir}"),
    Case("unsupported-file-type", {"spec.toml": spec_text("plants.xlsx", 'target = ["label"]'), "plants.xlsx": b"PK"},
         BUILD, 2,
         "{dir}/plants.xlsx: unsupported data file type '.xlsx'; use a .csv or .npz file, a folder of images, "
         "or sklearn:NAME"),
    Case("unknown-sklearn-dataset", {"spec.toml": spec_text("sklearn:irises")}, BUILD, 2,
         "data.source = 'sklearn:irises' is not a dataset scikit-learn ships; use one of sklearn:iris, sklearn:wine, "
         "sklearn:breast_cancer, sklearn:diabetes, sklearn:digits, sklearn:linnerud"),
    Case("csv-without-target-column", {"spec.toml": spec_text("plants.csv", 'target = ["labels"]'),
                                       "plants.csv": numbers_csv()}, BUILD, 2,
         "{dir}/plants.csv: column 'labels' (data.target) not found (did you mean 'label'?); the header has: a, b, label"),
    Case("csv-wrong-delimiter", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                 "plants.csv": numbers_csv().replace(",", ";")}, BUILD, 2,
         "{dir}/plants.csv: the header is one column ('a;b;label'), so the fields are not separated by ','; "
         "set data.delimiter = ';'"),
    Case("csv-short-row", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                           "plants.csv": csv_rows("a,b,label", ["1,2,yes", "3,4,no", "0.5,0.3", "5,6,yes"])}, BUILD, 2,
         "{dir}/plants.csv: line 4 has 2 fields but the header has 3; add the missing fields (an empty field is read "
         "as a missing value)"),
    Case("target-listed-twice", {"spec.toml": spec_text("plants.csv", 'target = ["label", "label"]'),
                                 "plants.csv": numbers_csv()}, BUILD, 2,
         "{dir}/plants.csv: column 'label' is listed twice in data.target; list each column once"),
    Case("target-also-dropped", {"spec.toml": spec_text("plants.csv", 'target = ["label"]', 'drop = ["label"]'),
                                 "plants.csv": numbers_csv()}, BUILD, 2,
         "{dir}/plants.csv: column 'label' is in both data.target and data.drop; remove it from data.drop"),
    Case("text-in-numeric-column", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                    "plants.csv": numbers_csv(override={(6, 1): "12.5kg"})}, BUILD, 2,
         "{dir}/plants.csv: line 8, column 'b': '12.5kg' is not a number, but 19 of the column's 20 values are; fix the "
         "value, leave it blank for a missing value, or declare the column categorical with "
         'data.columns.b = "categorical"'),
    Case("text-in-declared-numeric-column",
         {"spec.toml": spec_text("plants.csv", 'target = ["label"]', 'columns = {a = "numeric"}'),
          "plants.csv": numbers_csv(override={(3, 0): "tall"})}, BUILD, 2,
         "{dir}/plants.csv: line 5, column 'a': 'tall' is not a number; fix the value, leave it blank for a missing "
         'value, or declare the column categorical with data.columns.a = "categorical"'),
    Case("line-number-after-dropped-rows", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                            "plants.csv": numbers_csv(override={(1, 2): "", (9, 0): "x"})}, BUILD, 2,
         "{dir}/plants.csv: line 11, column 'a': 'x' is not a number, but 18 of the column's 19 values are; fix the "
         "value, leave it blank for a missing value, or declare the column categorical with "
         'data.columns.a = "categorical"'),
    Case("infinity-in-feature", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                 "plants.csv": numbers_csv(override={(4, 0): "inf"})}, BUILD, 2,
         "{dir}/plants.csv: line 6, column 'a': infinite value 'inf' cannot be learned from; replace it with a finite "
         "number or leave the cell blank to mark it missing"),
    Case("infinity-in-target", {"spec.toml": spec_text("yield.csv", 'target = ["kg"]'),
                                "yield.csv": csv_rows("a,kg", [f"{i},{i * 1.5}" for i in range(19)] + ["3,-Infinity"])},
         BUILD, 2,
         "{dir}/yield.csv: line 21, target 'kg': infinite value '-Infinity' cannot be learned from; replace it with a "
         "finite number or remove the row"),
    Case("nan-in-npz-target", {"spec.toml": spec_text("rows.npz"),
                               "rows.npz": write_npz(x=np.ones((10, 3)), y=np.array([1.0, 2, 3, np.nan, 5, 6, 7, 8, 9, 10]))},
         BUILD, 2, "{dir}/rows.npz: y[3] is NaN or infinite; targets must be finite"),
    Case("infinity-in-npz-inputs", {"spec.toml": spec_text("rows.npz"),
                                    "rows.npz": write_npz(x=np.where(np.eye(10, 3) > 0, np.inf, 1.0), y=np.arange(10.0))},
         BUILD, 2, "{dir}/rows.npz: x[0] contains an infinite value; replace it with a finite number or NaN for missing"),
    Case("empty-csv-file", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'), "plants.csv": ""}, BUILD, 2,
         "{dir}/plants.csv: the CSV file is empty; add a header row and data rows"),
    Case("header-only-csv", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'), "plants.csv": "a,b,label\n"},
         BUILD, 2, "{dir}/plants.csv: the dataset has no rows; add data rows below the header"),
    Case("every-target-empty", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                "plants.csv": csv_rows("a,b,label", ["1,2,", "3,4,NA"])}, BUILD, 2,
         "{dir}/plants.csv: every row has an empty target (label); fill in the target values or point data.target "
         "at the right column"),
    Case("single-class", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                          "plants.csv": numbers_csv().replace(",yes", ",no")}, BUILD, 2,
         "{dir}/plants.csv: all 20 rows have the same class ('no'), so there is nothing to learn; add rows of another "
         "class or check that data.target names the column to predict"),
    Case("class-with-one-row", {"spec.toml": spec_text("plants.csv", 'target = ["label"]'),
                                "plants.csv": numbers_csv(override={(5, 2): "maybe"})}, BUILD, 2,
         "{dir}/plants.csv: class 'maybe' has a single row, too few for a stratified test split; add rows of that "
         "class or remove it"),
    Case("fewer-rows-than-folds", {"spec.toml": spec_text("plants.csv", 'target = ["label"]',
                                                          '[validation]\nprotocol = "kfold"\nfolds = 20'),
                                   "plants.csv": numbers_csv(rows=12)}, BUILD, 2,
         '{dir}/spec.toml: 9 training rows are fewer than validation.folds = 20; lower validation.folds or use '
         'validation.protocol = "holdout"'),
    Case("corrupt-image", {"spec.toml": spec_text("images"), **image_folder({"images/dog/3.png": b"\x89PNG\r\n\x1a\nbroken"})},
         BUILD, 2,
         "{dir}/images/dog/3.png: cannot read the image (cannot identify image file '{dir}/images/dog/3.png'); "
         "replace or remove the file"),
    Case("non-image-file", {"spec.toml": spec_text("images"), **image_folder({"images/cat/notes.txt": "a note"})},
         BUILD, 2,
         "{dir}/images/cat/notes.txt: not an image file (suffix '.txt'); remove it or use one of .bmp, .gif, .jpeg, "
         ".jpg, .png, .tif, .tiff, .webp"),

    # Model files (webml convert) ------------------------------------------------------------
    Case("model-file-is-text", {"model.keras": "not a model"}, ["convert", "{dir}/model.keras", "-o", "{dir}/out"], 2,
         "{dir}/model.keras: not a model file webml can read (the file starts with 6e 6f 74 20 61 20 6d 6f); expected a "
         "Keras 3 .keras zip archive, a Keras HDF5 .h5 file or a SavedModel folder"),
    Case("model-folder-not-saved-model", {"model/variables.txt": "x"}, ["convert", "{dir}/model"], 2,
         "{dir}/model: a folder without saved_model.pb, so not a SavedModel; pass a SavedModel folder (written by "
         "model.export(DIR) or tf.saved_model.save), a .keras file or a .h5 file"),
    Case("model-file-missing", {}, ["convert", "{dir}/model.h5"], 2,
         "{dir}/model.h5: file or folder not found; pass a .keras file, a .h5 file or a SavedModel folder"),

    # Built folders (webml test and webml serve) -----------------------------------------------
    Case("test-empty-folder", {"site/.keep": ""}, ["test", "{dir}/site"], 2,
         "{dir}/site: not a webml build (index.html, metadata.json, sw.js missing); build one with `webml build SPEC`"),
    Case("serve-folder-without-metadata", FAKE_BUILD, ["serve", "{dir}/site", "--port", "0"], 2,
         "{dir}/site: not a webml build (metadata.json missing); build one with `webml build SPEC`"),
    Case("test-foreign-metadata", {**FAKE_BUILD, "site/metadata.json": '{"name": "other"}'}, ["test", "{dir}/site"], 2,
         "{dir}/site/metadata.json: not written by webml; rebuild the app with `webml build`"),
    Case("serve-broken-metadata", {**FAKE_BUILD, "site/metadata.json": "{"}, ["serve", "{dir}/site"], 2,
         "{dir}/site/metadata.json: invalid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
         "(char 1)); rebuild the app with `webml build`"),
    Case("serve-missing-folder", {}, ["serve", "{dir}/dist/app"], 2,
         "{dir}/dist/app: folder not found; pass the output folder of `webml build`, e.g. dist/digits"),
    Case("serve-port-out-of-range", FAKE_BUILD, ["serve", "{dir}/site", "--port", "99999"], 2,
         "webml serve: argument --port: 99999 is out of range; use a port from 0 to 65535; see `webml serve --help`"),
    Case("test-tolerance-zero", FAKE_BUILD, ["test", "{dir}/site", "--tolerance", "0"], 2,
         "webml test: argument --tolerance: 0 is out of range; use a value above 0 and at most 1; "
         "see `webml test --help`"),
    Case("test-unknown-backend", FAKE_BUILD, ["test", "{dir}/site", "--backend", "gpu"], 2,
         "webml test: argument --backend: invalid choice: 'gpu' (choose from 'wasm', 'webgl', 'webgpu', 'cpu'); "
         "see `webml test --help`"),
    Case("monitor-folder", {"db/.keep": ""}, ["monitor", "{dir}/db"], 2,
         "{dir}/db: is a folder; pass the SQLite file given to `webml serve DIST --collect FILE`"),
    Case("monitor-missing-database", {}, ["monitor", "{dir}/monitor.db"], 2,
         "{dir}/monitor.db: database not found; collect reports with `webml serve DIST --collect {dir}/monitor.db`"),
]


def write_files(root: Path, files: dict[str, str | bytes | Callable[[Path], None]]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_one_line(case, tmp_path, capsys):
    write_files(tmp_path, case.files)
    argv = [arg.replace("{dir}", str(tmp_path)) for arg in case.argv]
    code = cli.main(argv)
    captured = capsys.readouterr()
    expected = "webml: error: " + case.message.replace("{dir}", str(tmp_path))
    assert captured.err.splitlines() == [expected]
    assert code == case.exit_code
    assert captured.out == ""
    assert not (tmp_path / "out" / "index.html").exists()


def test_serve_port_in_use_gets_one_line(tmp_path, capsys):
    write_files(tmp_path, {**FAKE_BUILD, "site/metadata.json": json.dumps({"generator": "webml", "name": "x"}),
                           "site/sw.js": 'const PRECACHE = {"files": []};\n'})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["serve", str(tmp_path / "site"), "--port", str(port)])
    assert capsys.readouterr().err.splitlines() == [
        f"webml: error: cannot listen on 127.0.0.1:{port} (Address already in use); pick another --port"]
    assert code == 2


def test_unexpected_exception_gets_one_line(monkeypatch, tmp_path, capsys):
    def broken(*args, **kwargs):
        raise KeyError("features")

    monkeypatch.setattr("builder.spec.load_spec", broken)
    code = cli.main(["build", str(tmp_path / "spec.toml")])
    assert capsys.readouterr().err.splitlines() == [
        "webml: error: internal error (KeyError: 'features'); rerun with -v for the traceback and report it "
        "with the command you ran"]
    assert code == 1


def test_unexpected_exception_traceback_with_verbose(monkeypatch, tmp_path, capsys):
    def broken(*args, **kwargs):
        raise KeyError("features")

    monkeypatch.setattr("builder.spec.load_spec", broken)
    code = cli.main(["-v", "build", str(tmp_path / "spec.toml")])
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith("webml: error: internal error (KeyError: 'features')")
    assert code == 1


@pytest.mark.parametrize(("error", "message"), [
    (OSError(errno.ENOSPC, "No space left on device", "/out/model.bin"),
     "/out/model.bin: No space left on device; free disk space and run the command again (-v shows the traceback)"),
    (PermissionError(errno.EACCES, "Permission denied", "/out"),
     "/out: Permission denied; check the permissions of that path or pick another one (-v shows the traceback)"),
    (MemoryError(), "out of memory; use a smaller model or batch (model.units, model.batch_size) or free memory "
                    "(-v shows the traceback)"),
    (RuntimeError("first line\nsecond line"),
     "internal error (RuntimeError: first line); rerun with -v for the traceback and report it with the command you ran"),
], ids=["disk-full", "permission", "memory", "multi-line"])
def test_unexpected_error_message(error, message):
    assert cli.describe_unexpected(error) == message


def test_process_prints_no_traceback(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text("sklearn:iris", "[verify]\nbackend = ['cpu']"))
    result = run_webml("build", str(spec), timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"webml: error: {spec}: unknown key 'verify.backend' (did you mean 'backends'?); the keys are listed in "
        "docs/spec.md"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_process_prints_traceback_with_verbose(tmp_path, where):
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text("sklearn:iris", "[verify]\nbackend = ['cpu']"))
    argv = ["-v", "build", str(spec)] if where == "before" else ["build", str(spec), "-v"]
    result = run_webml(*argv, timeout=120)
    assert result.returncode == 2
    assert "Traceback (most recent call last):" in result.stderr
    assert "builder.errors.SpecError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("webml: error: ")


def test_cli_module_imports_no_tensorflow():
    # Errors in the spec and the command line are reported before TensorFlow loads.
    code = ("import sys, builder.cli; "
            "sys.exit(1 if any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules) else 0)")
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
