"""Atomic files and run folders: normal permissions, a folder holds exactly one run."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tenure.errors import InputError
from tenure.io import MANIFEST, run_folder, write_json


def test_atomic_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_run_folder_replaces_the_previous_run(tmp_path):
    out = tmp_path / "run"
    with run_folder(out, "test", seed=3) as d:
        (d / "a.txt").write_text("first")
        (d / "old.txt").write_text("only in the first run")
    with run_folder(out, "test", seed=4) as d:
        (d / "a.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", MANIFEST]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["seed"] == 4 and manifest["command"] == "test"
    assert manifest["files"]["a.txt"]["bytes"] == len("second")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or previous folder left


def test_run_folder_failure_leaves_the_previous_run(tmp_path):
    out = tmp_path / "run"
    with run_folder(out, "test") as d:
        (d / "a.txt").write_text("good")
    with pytest.raises(KeyboardInterrupt), run_folder(out, "test") as d:
        (d / "a.txt").write_text("half")
        raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_run_folder_removes_a_killed_runs_staging(tmp_path):
    (tmp_path / ".run.staging-abc").mkdir()
    with run_folder(tmp_path / "run", "test") as d:
        (d / "a.txt").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_run_folder_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not a folder"), run_folder(tmp_path / "f", "test"):
        pass
    with pytest.raises(InputError, match="cannot write under"), run_folder(tmp_path / "f" / "sub", "test"):
        pass
