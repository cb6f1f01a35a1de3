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


# -- file sets: m.toml and its sidecars replaced as one ------------------------------------------------------------
from tenure.io import run_files, verify_manifest  # noqa: E402


def _write_set(out, **files):
    with run_files(out, "test", seed=1) as d:
        for name, text in files.items():
            (d / name).write_text(text)


def test_run_files_replaces_the_whole_set(tmp_path):
    out = tmp_path / "m.toml"
    (tmp_path / "other.txt").write_text("not part of the set")
    (tmp_path / "m.v2.toml").write_text("another set whose name starts the same")
    _write_set(out, **{"m.toml": "a", "m.draws.csv": "1", "m.check.png": "png"})
    assert sorted(verify_manifest(out)["files"]) == ["m.check.png", "m.draws.csv", "m.toml"]
    _write_set(out, **{"m.toml": "b", "m.draws.csv": "22"})  # fewer files: the old figure goes
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.draws.csv", "m.manifest.json", "m.toml", "m.v2.toml", "other.txt"]
    assert out.read_text() == "b" and verify_manifest(out)["files"]["m.draws.csv"]["bytes"] == 2


def test_run_files_failure_leaves_the_earlier_set_byte_for_byte(tmp_path):
    out = tmp_path / "m.toml"
    _write_set(out, **{"m.toml": "a", "m.draws.csv": "1"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyboardInterrupt), run_files(out, "test") as d:
        (d / "m.toml").write_text("half")
        raise KeyboardInterrupt
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_run_files_error_while_swapping_puts_the_earlier_set_back(tmp_path, monkeypatch):
    import tenure.interrupt

    out = tmp_path / "m.toml"
    _write_set(out, **{"m.toml": "a", "m.draws.csv": "1", "m.check.png": "x"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(name):
        if name == "swapping":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(tenure.interrupt, "pause_point", fail)
    with pytest.raises(OSError):
        _write_set(out, **{"m.toml": "b", "m.draws.csv": "2"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("change", ["remove", "edit", "unlisted main file", "no manifest"])
def test_verify_manifest_refuses_an_incomplete_or_edited_set(tmp_path, change):
    out = tmp_path / "m.toml"
    _write_set(out, **{"m.toml": "a", "m.draws.csv": "1"})
    if change == "remove":
        (tmp_path / "m.draws.csv").unlink()
    elif change == "edit":
        (tmp_path / "m.draws.csv").write_text("2")  # same size, other bytes
    elif change == "unlisted main file":
        out = tmp_path / "x.toml"  # a manifest copied beside another file
        out.write_text("a")
        (tmp_path / "x.manifest.json").write_text((tmp_path / "m.manifest.json").read_text())
    else:
        (tmp_path / "m.manifest.json").unlink()
        assert verify_manifest(out, required=False) is None
    with pytest.raises(InputError) as exc:
        verify_manifest(out)
    assert "\n" not in str(exc.value) and str(tmp_path) in str(exc.value)


def test_verify_manifest_of_a_run_folder(tmp_path):
    out = tmp_path / "run"
    with run_folder(out, "test") as d:
        (d / "a.txt").write_text("x")
    assert verify_manifest(out)["command"] == "test"
    (out / "a.txt").write_text("y")
    with pytest.raises(InputError, match=r"a\.txt: changed since the run wrote it"):
        verify_manifest(out)
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        verify_manifest(out)


def test_a_killed_runs_staging_is_removed_and_said(tmp_path, capsys):
    (tmp_path / ".m.toml.staging-999999999-abc").mkdir()
    _write_set(tmp_path / "m.toml", **{"m.toml": "a"})
    assert "removed an unfinished run's staging folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.manifest.json", "m.toml"]


def test_a_live_runs_staging_is_left_alone(tmp_path):
    import os

    (tmp_path / f".run.staging-{os.getppid()}-abc").mkdir()  # the parent process is alive
    with run_folder(tmp_path / "run", "test") as d:
        (d / "a.txt").write_text("x")
    assert (tmp_path / f".run.staging-{os.getppid()}-abc").is_dir()


def test_a_set_killed_while_swapping_is_put_back(tmp_path, capsys):
    out = tmp_path / "m.toml"
    _write_set(out, **{"m.toml": "a", "m.draws.csv": "1"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # what SIGKILL between the two halves of a swap leaves: the earlier set aside (main file first), a new file in
    aside = tmp_path / ".m.toml.previous-999999999-x"
    aside.mkdir()
    for n in ("m.toml", "m.draws.csv", "m.manifest.json"):
        (tmp_path / n).rename(aside / n)
    (tmp_path / "m.manifest.json").write_text("{}")
    with pytest.raises(InputError):
        verify_manifest(out)  # what a reader meets meanwhile: no main file
    from tenure.io import remove_unfinished

    remove_unfinished(tmp_path, "m.toml")
    assert "restored the earlier" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
