"""The output swap (builder/output.py) and the stage cache (builder/cache.py, stage_cache.py),
without training: crash states on disk, cache keys, eviction and failures to write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import cache as cache_module
from builder import output
from builder.cache import StageCache, digest_json, digest_path, module_closure
from builder.errors import UsageError
from builder.spec import load_spec
from builder.stage_cache import _load_training, training_inputs


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def make_build(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"generator": "webml", "name": marker}))
    (folder / "index.html").write_text(marker)
    return folder


# The output folder ------------------------------------------------------------------------------


def test_replace_dir_swaps_new_build_in(tmp_path):
    target = make_build(tmp_path / "app", "old")
    staging = output.staging_dir(target)
    (staging / "index.html").write_text("new")
    output.replace_dir(staging, target)
    assert (target / "index.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


def test_replace_dir_falls_back_to_renames(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "_exchange", lambda a, b: False)
    target = make_build(tmp_path / "app", "old")
    staging = output.staging_dir(target)
    (staging / "index.html").write_text("new")
    output.replace_dir(staging, target)
    assert (target / "index.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


def test_recover_restores_old_build(tmp_path):
    # The two-rename swap died after moving the target aside and before moving staging in.
    make_build(tmp_path / ".app.old", "old")
    output.recover(tmp_path / "app")
    assert (tmp_path / "app" / "index.html").read_text() == "old"
    assert not (tmp_path / ".app.old").exists()


def test_recover_drops_old_after_swap(tmp_path):
    make_build(tmp_path / ".app.old", "old")
    make_build(tmp_path / "app", "new")
    output.recover(tmp_path / "app")
    assert (tmp_path / "app" / "index.html").read_text() == "new"
    assert not (tmp_path / ".app.old").exists()


def test_recover_removes_dead_builds_folders(tmp_path):
    target = make_build(tmp_path / "app", "current")
    dead = dead_pid()
    for name in (f".app.staging-{dead}", f".app.work-{dead}", f".app.staging-{os.getpid()}", ".other.staging-1"):
        (tmp_path / name).mkdir()
    output.recover(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".app.staging-{os.getpid()}", ".other.staging-1", "app"]


def test_work_dir_is_removed_after_use(tmp_path):
    target = tmp_path / "app"
    with output.work_dir(target) as work:
        (work / "saved_model").mkdir()
        assert work.name == f".app.work-{os.getpid()}"
    assert list(tmp_path.iterdir()) == []


def test_check_target_accepts_build_or_empty_folder(tmp_path):
    output.check_target(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    output.check_target(tmp_path / "empty")
    output.check_target(make_build(tmp_path / "app", "x"))


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: p.write_text("a file"), "exists and is not a folder"),
    (lambda p: (p.mkdir(), (p / "thesis.tex").write_text("x")), "a folder that `webml build` did not write"),
    (lambda p: (p.mkdir(), (p / "metadata.json").write_text('{"generator": "other"}')),
     "a folder that `webml build` did not write"),
], ids=["file", "foreign-folder", "foreign-metadata"])
def test_check_target_rejects_foreign_output(tmp_path, setup, message):
    target = tmp_path / "out"
    setup(target)
    with pytest.raises(UsageError, match=message):
        output.check_target(target)


# The cache ---------------------------------------------------------------------------------------


def test_cache_store_and_lookup(tmp_path):
    cache = StageCache(tmp_path / "cache")
    assert cache.lookup("train", "k1") is None
    assert cache.store("train", "k1", lambda folder: (folder / "data.bin").write_bytes(b"x"), {"seed": 1})
    entry = cache.lookup("train", "k1")
    assert (entry / "data.bin").read_bytes() == b"x"
    assert json.loads((entry / "entry.json").read_text())["inputs"] == {"seed": 1}
    assert [p.name for p in (tmp_path / "cache" / "train").iterdir()] == ["k1"]


def test_cache_evicts_least_recently_used(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "MAX_ENTRIES_PER_STAGE", 2)
    cache = StageCache(tmp_path)
    for index, key in enumerate(("a", "b")):
        cache.store("train", key, lambda folder: None, {})
        os.utime(tmp_path / "train" / key / "entry.json", (1000 + index, 1000 + index))
    assert cache.lookup("train", "a") is not None  # a use makes "a" the most recent
    cache.store("train", "c", lambda folder: None, {})
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["a", "c"]


def test_cache_removes_stale_temporaries(tmp_path):
    dead = dead_pid()
    (tmp_path / "train" / f".tmp-{dead}-ab12").mkdir(parents=True)
    (tmp_path / "train" / f".tmp-{os.getpid()}-cd34").mkdir()
    StageCache(tmp_path)
    assert [p.name for p in (tmp_path / "train").iterdir()] == [f".tmp-{os.getpid()}-cd34"]


def test_cache_write_failure_is_a_warning(tmp_path):
    root = tmp_path / "cache"
    root.write_text("a file where the cache folder should be")
    cache = StageCache(root)
    assert not cache.store("train", "k", lambda folder: None, {})
    assert cache.warnings == [f"{root}: cannot store the train stage in the cache (Not a directory); the build goes on"]


def test_cache_unpicklable_result_is_a_warning(tmp_path):
    def write(folder):
        raise TypeError("cannot pickle '_thread.lock' object")

    cache = StageCache(tmp_path)
    assert not cache.store("convert", "k", write, {})
    assert cache.warnings == [f"{tmp_path}: cannot store the convert stage in the cache (TypeError: cannot pickle "
                              "'_thread.lock' object); the build goes on"]
    assert [p.name for p in (tmp_path / "convert").iterdir()] == []


def test_unreadable_training_entry_is_a_miss(tmp_path):
    (tmp_path / "training.pkl").write_bytes(b"not a pickle")
    training, reason = _load_training(tmp_path, None, None)
    assert training is None
    assert reason.startswith("cannot read it:")


def write_project(folder: Path, app_title: str = "A", seed: int = 1, epochs: int = 5, cell: str = "1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.csv").write_text(f"a,b,y\n{cell},2,yes\n3,4,no\n")
    (folder / "spec.toml").write_text(f'name = "p"\nseed = {seed}\n[data]\nsource = "rows.csv"\ntarget = ["y"]\n'
                                      f'[model]\nepochs = {epochs}\n[app]\ntitle = "{app_title}"\n'
                                      '[optimize]\nvariants = ["float32"]\n')
    return folder / "spec.toml"


def training_key(path: Path) -> str:
    return digest_json(training_inputs(load_spec(path)))


def test_training_key_ignores_app_and_optimize(tmp_path):
    base = training_key(write_project(tmp_path / "base"))
    assert training_key(write_project(tmp_path / "title", app_title="B")) == base
    changed = write_project(tmp_path / "variants")
    changed.write_text(changed.read_text().replace('["float32"]', '["float32", "uint8"]'))
    assert training_key(changed) == base


@pytest.mark.parametrize("change", [{"seed": 2}, {"epochs": 6}, {"cell": "1.5"}], ids=["seed", "epochs", "data-cell"])
def test_training_key_follows_training_inputs(tmp_path, change):
    base = training_key(write_project(tmp_path / "base"))
    assert training_key(write_project(tmp_path / "changed", **change)) != base


def test_training_closure_lists_training_modules():
    closure = module_closure(["train", "workflow"])
    assert {"train", "workflow", "data", "features", "models", "tasks", "spec", "feedback"} <= set(closure)
    assert not {"render", "site", "verify", "build"} & set(closure)


def test_digest_path_follows_names_and_bytes(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "1.png").write_bytes(b"pixels")
    first = digest_path(tmp_path)
    (tmp_path / ".DS_Store").write_bytes(b"finder")
    assert digest_path(tmp_path) == first
    (tmp_path / "cat" / "1.png").rename(tmp_path / "cat" / "2.png")
    renamed = digest_path(tmp_path)
    assert renamed != first
    (tmp_path / "cat" / "2.png").write_bytes(b"pixelz")
    assert digest_path(tmp_path) not in (first, renamed)
