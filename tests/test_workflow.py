"""The model-development workflow: datasets of every task type with every validation protocol,
the baseline check, scale-up, tuning (local and distributed), browser parity and report.html.

Each dataset gets one full build through the real CLI per session, each with a different
protocol. The other two protocols of each dataset run the same training code in this process
(``train.run``) without conversion and browser checks, which keeps the file within its time
budget. Epochs, folds and trials are kept small with ``--set`` where accuracy is not the point,
but every run still has to beat its baseline by the per-row test.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS, ROOT, build_or_fail, run_webml

pytestmark = pytest.mark.slow

# Fewer epochs, folds and checks than the shipped specs, so each build takes seconds.
FAST = ("--set", "model.epochs=30", "--set", "model.learning_rate=0.01", "--set", "validation.folds=3",
        "--set", "validation.repeats=2", "--set", 'app.backends=["wasm", "cpu"]', "--set", "verify.offline=false")
NO_SEARCH = ("--set", "scale_up.enabled=false", "--set", "tuning.enabled=false")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATASETS = ("breast_cancer", "wine", "diabetes", "diabetes_flags", "penguins")
PROTOCOLS = ("holdout", "kfold", "iterated-kfold")
# The protocol each dataset's full CLI build uses; the other two run in-process below.
BUILD_PROTOCOL = {"breast_cancer": "holdout", "wine": "iterated-kfold", "diabetes": "kfold",
                  "diabetes_flags": "holdout", "penguins": "kfold"}


def protocol_args(protocol: str) -> tuple[str, ...]:
    return ("--set", f'validation.protocol="{protocol}"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_json(path: Path) -> dict:
    # parse_constant rejects NaN and Infinity, which are not JSON.
    def reject(name: str) -> None:
        raise ValueError(f"{path} contains {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture(scope="session")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Output folders of the session's full builds, built on first use."""
    return {}


def _build(apps: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> Path:
    if name not in apps:
        output = tmp_path_factory.mktemp(name) / name
        build_or_fail(MODELS / f"{name}.toml", output, *FAST, *protocol_args(BUILD_PROTOCOL[name]), *extra)
        apps[name] = output
    return apps[name]


@pytest.fixture(scope="session")
def wine_app(apps, tmp_path_factory) -> Path:
    """Wine with scale-up and a three-trial local tuning search."""
    return _build(apps, tmp_path_factory, "wine", "--set", "scale_up.widths=[4, 16]", "--set", "scale_up.epochs=40",
                  "--set", "tuning.trials=3")


@pytest.fixture(scope="session")
def plain_app(apps, tmp_path_factory):
    """Build one of the datasets without scale-up and tuning: ``plain_app("diabetes")``."""
    return lambda name: _build(apps, tmp_path_factory, name, *NO_SEARCH)


@pytest.fixture(scope="session")
def penguins_distributed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Penguins built by a tuning chief while one worker process runs the trials, on 127.0.0.1."""
    output = tmp_path_factory.mktemp("penguins") / "penguins"
    args = [sys.executable, "-m", "builder", "build", str(MODELS / "penguins.toml"), "--output", str(output),
            *FAST, *protocol_args(BUILD_PROTOCOL["penguins"]), "--set", "scale_up.enabled=false",
            "--set", "tuning.trials=3"]
    base = {**os.environ, "NO_COLOR": "1", "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(free_port())}
    chief = subprocess.Popen(args, cwd=ROOT, env={**base, "KERASTUNER_TUNER_ID": "chief"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        worker = subprocess.run(args, cwd=ROOT, env={**base, "KERASTUNER_TUNER_ID": "tuner0"}, capture_output=True,
                                text=True, timeout=600, check=False)
        chief_out, chief_err = chief.communicate(timeout=600)
    finally:
        if chief.poll() is None:
            chief.kill()
            chief.communicate()
    if chief.returncode != 0 or worker.returncode != 0:
        pytest.fail(f"chief exited {chief.returncode}, worker {worker.returncode}\nchief:\n{chief_err[-3000:]}\n"
                    f"worker:\n{worker.stderr[-3000:]}")
    return {"output": output, "chief_stdout": chief_out, "chief_stderr": chief_err, "worker": worker,
            "report": read_json(output / "report.json")}


# Spec validation (no training) -------------------------------------------------------------------

@pytest.mark.parametrize(("table", "message"), [
    ('[model]\nepoch = 10', "unknown key 'model.epoch' (did you mean 'epochs'?)"),
    ('[scale_up]\nwidth = [8]', "unknown key 'scale_up.width' (did you mean 'widths'?)"),
    ('[tuning]\nlearning_rates = [0.001, 0.01]', "unknown key 'tuning.learning_rates' (did you mean 'learning_rate'?)"),
    ('[tunning]\ntrials = 3', "unknown key 'tunning' (did you mean 'tuning'?)"),
    ('[validation]\nprotocol = "kfol"', "key 'validation.protocol' = 'kfol' is invalid (did you mean 'kfold'?)"),
    ('[data]\ntest_sise = 0.2', "unknown key 'data.test_sise' (did you mean 'test_size'?)"),
    ('[verify]\ntolerence = 0.001', "unknown key 'verify.tolerence' (did you mean 'tolerance'?)"),
    ('seeds = 3', "unknown key 'seeds' (did you mean 'seed'?)"),
], ids=["model-key", "scale-up-key", "tuning-key", "section", "choice", "data-key", "verify-key", "top-level"])
def test_spec_unknown_key_suggests(tmp_path, table, message):
    from builder.errors import SpecError
    from builder.spec import load_spec

    path = tmp_path / "spec.toml"
    data = "" if table.startswith("[data]") else "[data]\n"
    path.write_text(f'name = "x"\n{table}\n{data}source = "sklearn:iris"\n')
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_cli_rejects_unknown_key_with_exit_2(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "x"\n[data]\nsource = "sklearn:iris"\n[scale_up]\nenabld = true\n')
    result = run_webml("build", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown key 'scale_up.enabld' (did you mean 'enabled'?)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("override", "message"), [
    ({"tuning.learning_rate": [0.0, 0.01]}, "must start above 0"),
    ({"tuning.dropout": [0.2, 1.0]}, "must stay below 1"),
    ({"tuning.l2": [0.01, 0.001]}, "must be [low, high]"),
    ({"tuning.units": []}, "must list positive integers"),
    ({"scale_up.depths": [0, 1]}, "must list positive integers"),
    ({"tuning.algorithm": "grid"}, "use one of random, bayesian"),
], ids=["learning-rate-zero", "dropout-one", "reversed-range", "no-units", "zero-depth", "algorithm"])
def test_spec_rejects_bad_search_settings(override, message):
    from builder.errors import SpecError
    from builder.spec import load_spec

    with pytest.raises(SpecError) as error:
        load_spec(MODELS / "wine.toml", override)
    assert message in str(error.value)


def test_spec_doc_lists_every_key_with_default():
    from builder.spec import SECTIONS, Spec
    import dataclasses

    text = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    sections = {"top": text.split("## Top level", 1)[1].split("\n## ", 1)[0]}
    for name in ("data", "task", "validation", "model", "scale_up", "tuning", "optimize", "app", "monitor", "verify"):
        sections[name] = text.split(f"## [{name}]", 1)[1].split("\n## ", 1)[0]
    documented = {
        "top": [f for f in dataclasses.fields(Spec) if f.name in ("name", "title", "seed")],
        **{name: dataclasses.fields(SECTIONS[name]) for name in sections if name != "top"},
    }
    for section, fields in documented.items():
        rows = {line.split("|")[1].strip().strip("`"): line for line in sections[section].splitlines()
                if line.startswith("| `")}
        for spec_field in fields:
            assert spec_field.name in rows, f"[{section}] {spec_field.name} is not documented in docs/spec.md"
            if spec_field.default is not dataclasses.MISSING:
                default = json.dumps(list(spec_field.default) if isinstance(spec_field.default, tuple)
                                     else spec_field.default)
                cell = rows[spec_field.name].split("|")[3].strip().strip("`")
                assert cell == default or cell == "required", (section, spec_field.name, cell, default)


def test_distributed_role_rejects_incomplete_environment(monkeypatch):
    from builder.errors import UsageError
    from builder.workflow import distributed_role

    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed_role() == "local"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(UsageError) as error:
        distributed_role()
    assert "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID are not" in str(error.value)
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8470")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner3")
    assert distributed_role() == "worker"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert distributed_role() == "chief"


def test_search_space_starts_nearest_to_start():
    from builder.models import Hyperparameters
    from builder.spec import load_spec
    from builder.workflow import hyperparameters_from_values, search_space

    spec = load_spec(MODELS / "wine.toml")
    start = Hyperparameters(units=(20,), dropout=0.7, l1=0.0, l2=0.0004, learning_rate=1.0)
    space = search_space(spec.tuning, start)
    defaults = {hp.name: hp.default for hp in space.space}
    assert defaults["units"] == 16
    assert defaults["depth"] == 1
    assert defaults["dropout"] == spec.tuning.dropout[1]
    assert defaults["l2"] == pytest.approx(0.001)
    assert defaults["learning_rate"] == spec.tuning.learning_rate[1]
    l1 = next(hp for hp in space.space if hp.name == "l1")
    assert l1.values == [0.0, pytest.approx(1e-6), pytest.approx(1e-5), pytest.approx(1e-4), pytest.approx(1e-3)]
    chosen = hyperparameters_from_values(start, {**defaults, "depth": 2})
    assert chosen.units == (16, 16)
    assert chosen.batch_size == start.batch_size


# Every dataset with every protocol -----------------------------------------------------------

IN_PROCESS = [(name, protocol) for name in DATASETS for protocol in PROTOCOLS if protocol != BUILD_PROTOCOL[name]]


@pytest.mark.parametrize(("name", "protocol"), IN_PROCESS, ids=[f"{n}-{p}" for n, p in IN_PROCESS])
def test_protocol_beats_baseline(name, protocol):
    from builder import train, workflow
    from builder.data import load_dataset
    from builder.native import import_tensorflow
    from builder.spec import load_spec

    import_tensorflow()
    spec = load_spec(MODELS / f"{name}.toml", {
        "validation.protocol": protocol, "validation.folds": 3, "validation.repeats": 2, "model.epochs": 25,
        "model.learning_rate": 0.01, "scale_up.enabled": False, "tuning.enabled": False,
    })
    result = train.run(spec, load_dataset(spec), search=workflow.search)
    expected_folds = {"holdout": 1, "kfold": 3, "iterated-kfold": 6}[protocol]
    assert result.protocol.name == protocol
    assert len(result.validation.folds) == expected_folds
    assert result.comparison["beats_baseline"]
    assert result.comparison["gain"] > result.comparison["required_gain"] > 0
    metric = result.split.head.primary_metric
    test_score, baseline_test = result.test_scores[metric], result.baseline["test"][metric]
    assert test_score > baseline_test if result.split.head.higher_is_better else test_score < baseline_test
    # Each fold saw its own validation rows only, and together they cover the non-test rows.
    covered = np.concatenate([fold.positions for fold in result.validation.folds])
    if protocol != "holdout":
        assert sorted(covered) == sorted(np.tile(np.arange(len(result.split.y_train)), expected_folds // 3))


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "diabetes_flags"])
def test_build_beats_baseline_and_passes_parity(plain_app, name):
    output = plain_app(name)
    report = read_json(output / "report.json")
    metadata = read_json(output / "metadata.json")
    assert report["protocol"]["name"] == BUILD_PROTOCOL[name]
    assert report["comparison"]["beats_baseline"]
    metric = report["metrics"]["primary_metric"]
    model, baseline = report["metrics"]["test_primary"], report["metrics"]["baseline_test"][metric]
    assert model > baseline if report["task"]["higher_is_better"] else model < baseline
    checks = {c["name"]: c for c in report["verification"]["checks"]}
    for backend in ("wasm", "cpu"):
        assert checks[f"parity on {backend}"]["status"] == "passed"
        assert checks[f"parity on {backend}"]["data"]["max_abs_diff"] <= metadata["verify"]["tolerance"]
        assert checks[f"parity on {backend}"]["data"]["inputs"] == len(metadata["golden"])
    inputs = [g["input"] for g in metadata["golden"]]
    assert any(all(value is None for key, value in row.items() if _numeric(metadata, key)) for row in inputs)
    assert any("" in row.values() and all(isinstance(v, str) for v in row.values()) for row in inputs)


def _numeric(metadata: dict, name: str) -> bool:
    return any(f["name"] == name and f["kind"] == "numeric" for f in metadata["input"]["features"])


def test_regression_output_is_in_target_units(plain_app):
    report = read_json(plain_app("diabetes") / "report.json")
    metadata = read_json(plain_app("diabetes") / "metadata.json")
    assert report["task"]["activation"] == "linear"
    assert report["task"]["loss"] == "mse"
    assert report["metrics"]["primary_metric"] == "mae"
    assert 100 < np.mean([g["output"][0] for g in metadata["golden"]]) < 220
    assert "mae" in report["validation"]["metrics"]
    assert "mse" in report["validation"]["metrics"]


def test_multilabel_build_names_each_label(plain_app):
    output = plain_app("diabetes_flags")
    report = read_json(output / "report.json")
    metadata = read_json(output / "metadata.json")
    assert report["task"]["task"] == "multilabel"
    assert report["task"]["activation"] == "sigmoid"
    assert report["task"]["loss"] == "binary_crossentropy"
    assert metadata["output"]["labels"] == ["high_ldl", "low_hdl", "high_glucose"]
    assert all(len(g["output"]) == 3 for g in metadata["golden"])
    assert report["dataset"]["labels"] == {"high_ldl": 124, "low_hdl": 103, "high_glucose": 94}
    assert report["confusion_matrix"] is None


def test_multilabel_csv_matches_its_generator(tmp_path):
    script = ROOT / "models" / "data" / "make_diabetes_lab_flags.py"
    source = script.read_text(encoding="utf-8").replace('Path(__file__).with_name("diabetes_lab_flags.csv")',
                                                        f'Path({str(tmp_path / "flags.csv")!r})')
    copy = tmp_path / "make.py"
    copy.write_text(source, encoding="utf-8")
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True, timeout=120)
    assert (tmp_path / "flags.csv").read_bytes() == (ROOT / "models" / "data" / "diabetes_lab_flags.csv").read_bytes()


@pytest.mark.parametrize("name", ["diabetes_flags", "penguins"])
def test_webml_test_parity_missing_unseen(request, tmp_path, name):
    if name == "penguins":
        output = request.getfixturevalue("penguins_distributed")["output"]
    else:
        output = request.getfixturevalue("plain_app")(name)
    metadata = read_json(output / "metadata.json")
    categorical = [f for f in metadata["input"]["features"] if f["kind"] == "categorical"]
    inputs = [g["input"] for g in metadata["golden"]]
    from builder.site import UNSEEN_VALUE

    assert categorical
    assert any(all(row[f["name"]] == UNSEEN_VALUE for f in categorical) for row in inputs)
    assert any(all(row[f["name"]] is None for f in categorical) for row in inputs)
    assert any(all(row[f["name"]] is None for f in metadata["input"]["features"] if f["kind"] == "numeric")
               for row in inputs)
    result = run_webml("test", str(output), "--no-offline", "--backend", "wasm", "--backend", "cpu",
                       "--json", str(tmp_path / "result.json"), "--screenshot", str(tmp_path / "page.png"))
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in read_json(tmp_path / "result.json")["checks"]}
    for backend in ("wasm", "cpu"):
        assert checks[f"parity on {backend}"]["status"] == "passed"
        assert checks[f"parity on {backend}"]["data"]["inputs"] == len(inputs)


def test_penguins_missing_values_reach_the_model(penguins_distributed):
    report = penguins_distributed["report"]
    metadata = read_json(penguins_distributed["output"] / "metadata.json")
    missing = {c["name"]: c["missing"] for c in report["dataset"]["features"]}
    assert missing["bill_length_mm"] == 2
    assert missing["sex"] == 11
    assert missing["island"] == 0
    features = {f["name"]: f for f in metadata["input"]["features"]}
    assert features["body_mass_g"]["indicator"] is True
    assert features["sex"]["vocabulary"] == ["male", "female"]
    assert "body_mass_g (missing)" in metadata["input"]["encoded_names"]
    assert "sex=(unseen)" in metadata["input"]["encoded_names"]
    html = (penguins_distributed["output"] / "report.html").read_text(encoding="utf-8")
    assert re.search(r'<td>sex</td><td>categorical</td><td></td>\s*<td class="n">11</td><td class="n">3.2%</td>', html)


# Baseline failure ------------------------------------------------------------------------------

def test_shuffled_labels_fail_baseline_check(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = np.random.default_rng(7).permutation(frame["target"].to_numpy())
    frame.to_csv(tmp_path / "shuffled.csv", index=False)
    (tmp_path / "shuffled.toml").write_text(
        'name = "shuffled"\n[data]\nsource = "shuffled.csv"\ntarget = "target"\n[task]\ntype = "binary"\n'
        '[validation]\nprotocol = "kfold"\nfolds = 3\n[model]\nunits = [16]\nlearning_rate = 0.003\nepochs = 60\n'
    )
    result = run_webml("build", str(tmp_path / "shuffled.toml"), "--output", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("webml: error: the starting model from [model] does not beat the common-sense baseline")
    assert "validation accuracy 0." in error
    assert "against the baseline's 0.6" in error
    assert "shuffled or leaked labels?" in error
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# Scale-up, tuning and the report ----------------------------------------------------------------

def test_scale_up_records_where_overfitting_starts(wine_app):
    record = read_json(wine_app / "report.json")["search"]["scale_up"]
    steps = record["steps"]
    assert record["enabled"] is True
    assert [step["units"] for step in steps][:2] == [[4], [16]]
    assert steps[0]["grows"] == "width"
    for step in steps:
        assert 1 <= step["best_epoch"] <= step["epochs_run"] <= 40
        assert len(step["history"]["val_loss"]) == step["epochs_run"]
        assert step["best_val_loss"] == pytest.approx(min(step["history"]["val_loss"]))
        assert step["turned_up"] == (step["epochs_run"] < 40)
        if step["turned_up"]:
            assert step["epochs_run"] - step["best_epoch"] >= 10
    best = steps[record["best_step"]]
    assert best["best_val_loss"] == min(step["best_val_loss"] for step in steps)
    assert record["overfitting_epoch"] == best["best_epoch"]
    assert record["best_units"] == best["units"]
    assert "where overfitting starts" in record["summary"]


def test_tuning_trials_scored_with_protocol(wine_app):
    report = read_json(wine_app / "report.json")
    tuning = report["search"]["tuning"]
    trials = tuning["trials"]
    assert tuning["enabled"] is True
    assert tuning["distributed"] is False
    assert tuning["objective"] == "val_accuracy"
    assert tuning["direction"] == "max"
    assert len(trials) == 3
    assert all(t["status"] == "COMPLETED" for t in trials)
    start = report["search"]["scale_up"]["best_units"]
    widths = [8, 16, 32, 64]
    assert trials[0]["hyperparameters"]["depth"] == len(start)
    assert trials[0]["hyperparameters"]["units"] == min(widths, key=lambda w: abs(math.log(w / start[0])))
    best = next(t for t in trials if t["trial_id"] == tuning["best_trial"])
    assert best["score"] == max(t["score"] for t in trials)
    chosen = report["model"]["hyperparameters"]
    assert chosen["units"] == [best["hyperparameters"]["units"]] * best["hyperparameters"]["depth"]
    assert chosen["learning_rate"] == pytest.approx(best["hyperparameters"]["learning_rate"])
    # The chosen configuration's validation (6 folds of 3-fold × 2) is the trial's own score.
    assert len(report["validation"]["folds"]) == 6
    assert report["validation"]["mean"] == pytest.approx(best["score"])


def test_distributed_tuning_chief_and_worker(penguins_distributed):
    worker = penguins_distributed["worker"]
    assert "tuning worker tuner0 ran 3 trial(s); the chief builds the app" in worker.stdout
    assert "trial 0:" in worker.stderr
    assert "serving the oracle on 127.0.0.1:" in penguins_distributed["chief_stderr"]
    tuning = penguins_distributed["report"]["search"]["tuning"]
    assert tuning["distributed"] is True
    assert [t["trial_id"] for t in tuning["trials"]] == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" and t["score"] is not None for t in tuning["trials"])
    assert penguins_distributed["report"]["comparison"]["beats_baseline"]
    assert "built " in penguins_distributed["chief_stdout"]


def test_report_html_shows_every_step(wine_app):
    report = read_json(wine_app / "report.json")
    html = (wine_app / "report.html").read_text(encoding="utf-8")
    assert report["schema"] == 2
    assert "<td>178 (142 for training and validation, 36 held out for the test, stratified by class)</td>" in html
    assert "<td>13 columns, 13 model inputs after encoding</td>" in html
    assert html.count("<td class=\"n\">0</td><td class=\"n\">0.0%</td>") == 13
    for name, count in report["dataset"]["classes"].items():
        assert f"<tr><td>{name}</td><td class=\"n\">{count}</td>" in html
    assert '<td id="activation">softmax (3 units)</td>' in html
    assert '<td id="loss">categorical_crossentropy</td>' in html
    assert "accuracy, log_loss; the build selects and checks on accuracy" in html
    validation = report["validation"]
    assert f"{validation['mean']:.4f} ± {validation['std']:.4f}" in html
    assert f"{report['baseline']['mean']:.4f} ± {report['baseline']['std']:.4f}" in html
    folds_table = html.split('<table id="folds">', 1)[1].split("</table>", 1)[0]
    assert folds_table.count("<tr><td>") == 6
    steps_table = html.split('<table id="scale-up-steps">', 1)[1].split("</table>", 1)[0]
    assert steps_table.count("<tr") == len(report["search"]["scale_up"]["steps"]) + 1
    trials_table = html.split('<table id="tuning-trials">', 1)[1].split("</table>", 1)[0]
    assert trials_table.count("<tr") == 4
    assert f'<strong id="test-score">{report["metrics"]["test_primary"]:.4f}</strong>' in html
    matrix = report["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == report["split"]["test_rows"] == 36
    assert html.count('class="n diagonal"') == 3
    assert f"<tr><th>tensorflow</th><td>{report['versions']['tensorflow']}</td></tr>" in html
    assert f"<tr><th>keras-tuner</th><td>{report['versions']['keras-tuner']}</td></tr>" in html
    assert "<tr><th>spec seed</th><td>42</td></tr>" in html


def test_report_figures_are_pngs_outside_precache(wine_app):
    from builder.verify import load_site

    report = read_json(wine_app / "report.json")
    html = (wine_app / "report.html").read_text(encoding="utf-8")
    paths = [figure["path"] for figure in report["figures"]]
    assert paths == ["report/learning-curves.png", "report/scale-up.png", "report/tuning.png"]
    for path in paths:
        data = (wine_app / path).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 20_000
        assert f'<img src="{path}"' in html
    precached = {entry["url"] for entry in load_site(wine_app).precache["files"]}
    assert not any(url.startswith("report") for url in precached)
    assert not any(a["path"].startswith("report") for a in report["artifacts"])


def test_report_renders_in_chromium(wine_app, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        page.goto((wine_app / "report.html").as_uri())
        widths = page.evaluate("() => Array.from(document.images).map((image) => image.naturalWidth)")
        assert len(widths) == 3
        assert all(width >= 800 for width in widths)
        assert page.evaluate("() => getComputedStyle(document.querySelector('th')).fontWeight") in ("600", "700")
        assert errors == []
    finally:
        page.close()


def test_report_rerenders_from_json(wine_app, tmp_path):
    import shutil

    from builder.report import render_report

    copy = tmp_path / "wine"
    shutil.copytree(wine_app, copy)
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "report")
    render_report(copy)
    assert (copy / "report.html").read_text(encoding="utf-8") == (wine_app / "report.html").read_text(encoding="utf-8")
    for path in ("report/learning-curves.png", "report/scale-up.png", "report/tuning.png", "report/report.css"):
        assert (copy / path).read_bytes() == (wine_app / path).read_bytes(), path


def test_shipped_specs_enable_the_workflow():
    for name in DATASETS:
        raw = tomllib.loads((MODELS / f"{name}.toml").read_text(encoding="utf-8"))
        assert raw.get("scale_up", {}).get("enabled", True) is True, name
        assert raw.get("tuning", {}).get("enabled", True) is True, name
