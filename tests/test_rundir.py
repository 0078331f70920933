"""The run-folder helper every stage resumes with: claim, check, finished, finish."""

from __future__ import annotations

import errno
import json
import os

import pytest

from distill.errors import ConfigError, DistillError
from distill.rundir import RunFolder, differing

FP = {"seed": 0, "task": {"name": "pairs", "k": 4}, "teacher.model": None}


def test_fresh_folder_checks_clean_and_is_not_finished(tmp_path):
    folder = RunFolder(tmp_path / "run", FP)
    folder.check()
    assert folder.stored_fingerprint() is None and folder.finished() is None


def test_claim_records_the_fingerprint_and_extra_fields(tmp_path):
    folder = RunFolder(tmp_path / "run", FP)
    folder.claim(status="running", shards_total=3)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text()) == {
        "fingerprint": FP, "status": "running", "shards_total": 3}
    RunFolder(tmp_path / "run", json.loads(json.dumps(FP))).check()  # the same run, as read back: resumes
    folder.update(status="failed", error="boom")
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "failed"
    assert folder.finished() == {"fingerprint": FP, "status": "failed", "shards_total": 3, "error": "boom"}


def test_another_fingerprint_is_refused_naming_the_fields(tmp_path):
    RunFolder(tmp_path, FP).claim()
    other = RunFolder(tmp_path, {**FP, "seed": 1, "task": {"name": "pairs", "k": 8}},
                      holds="a thing made with a different config", elsewhere="use another thing.dir")
    with pytest.raises(ConfigError) as e:
        other.check()
    assert str(e.value) == (f"{tmp_path} holds a thing made with a different config (seed, task.k differ). "
                            f"Resuming would mix the two; use another thing.dir, or delete {tmp_path} to start over.")
    assert other.finished() is None  # finished() never refuses: it only says "not this run"


def test_field_comparison_rules():
    assert differing({"a": {"x": 1, "y": 2}}, {"a": {"y": 2, "x": 1}}) == []  # key order does not count
    assert differing({}, {"teacher.model": None}) == []  # a missing top-level field is None, as before
    assert differing({"a": {}}, {"a": {"x": None}}) == ["a.x"]  # below the top, missing and None differ
    assert differing({"a": 1, "gone": 2}, {"a": 1}) == ["gone"]  # a field only the old run had counts too
    assert differing({"a": [1, 2]}, {"a": (1, 2)}) == []  # compared as stored in JSON
    assert differing("abc123", "abc123") == [] and differing("abc123", "def456") == ["fingerprint"]


def test_an_unreadable_record_is_not_trusted(tmp_path):
    (tmp_path / "manifest.json").write_text("{half a manifest")
    folder = RunFolder(tmp_path, FP)
    folder.check()  # records are only written atomically: a torn one is not a run to protect
    assert folder.finished() is None


def test_fingerprint_file_alone_and_a_separate_result(tmp_path):
    folder = RunFolder(tmp_path, FP, record="fingerprint.json", key=None, result="stats.json",
                       needs=("model/config.json",))
    folder.claim()
    assert json.loads((tmp_path / "fingerprint.json").read_text()) == FP
    with pytest.raises(ValueError, match="no room for status"):
        folder.claim(status="running")
    folder.finish({"steps": 3})
    assert folder.finished() is None  # the result alone is not enough: model/ must be there too
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert folder.finished() == {"steps": 3}
    assert RunFolder(tmp_path, {**FP, "seed": 9}, record="fingerprint.json", key=None, result="stats.json",
                     needs=("model/config.json",)).finished() is None


def test_result_that_is_the_record(tmp_path):
    folder = RunFolder(tmp_path, "abc123", record="m-abc123.json")
    folder.finish({"name": "m", "fingerprint": "abc123", "metrics": {"x": 1.0}})
    assert folder.finished() == {"name": "m", "fingerprint": "abc123", "metrics": {"x": 1.0}}
    assert RunFolder(tmp_path, "def456", record="m-abc123.json").finished() is None


def test_a_failed_finish_leaves_nothing(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "run", FP, result="stats.json")
    folder.claim()
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        folder.finish(loop)  # cannot be serialized: fails before any file is opened
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json"]

    folder.finish({"rows": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DistillError, match="disk full"):
        folder.finish({"rows": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json", "stats.json"]
    assert folder.finished() == {"rows": 1}  # the previous result, untouched
