"""A run stopped by SIGINT, SIGTERM or SIGKILL never leaves a partial output that looks whole.

Each test makes an earlier good run, starts the same command again into the same place and
stops it at a chosen moment: while it works (the staging folder has appeared), with every output
staged (the test-only pause point ``staged`` of ``tenure.interrupt.pause_point``) and half-way
through putting them in place (``swapping``). SIGINT and SIGTERM must end with exit code 130 or
143, one line and no traceback, the earlier outputs byte for byte and no staging folder; SIGKILL
(-9) may leave a staging or set-aside folder, which the next run removes or puts back, saying
so, and what a reader meets meanwhile is either the earlier run or a refusal, never a mixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenure.commands._common import INTERRUPTED

TENURE = [sys.executable, "-c", "from tenure.cli import main; main()"]
TIMEOUT = 600


def tenure(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TENURE, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})})


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stopped(args: list[str], moment: str, signum: int, where: Path) -> subprocess.CompletedProcess:
    """Run ``tenure ARGS`` and send ``signum`` at ``moment``: 'staged', 'swapping' or 'working'."""
    flag = where / "reached"
    env = dict(os.environ)
    if moment != "working":
        env["TENURE_TEST_PAUSE"] = f"{moment}={flag}"
    proc = subprocess.Popen([*TENURE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if moment == "working" and [p for p in where.iterdir() if ".staging-" in p.name]:
            time.sleep(0.5)
            break
        if moment != "working" and flag.exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=TIMEOUT)
    flag.unlink(missing_ok=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_clean_stop(res: subprocess.CompletedProcess, signum: int) -> None:
    assert res.returncode == 128 + signum, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().splitlines()[-1] == INTERRUPTED, res.stderr


def check_stop(where: Path, target: str, args: list[str], moment: str, signum: int) -> None:
    """The earlier outputs at ``where / target`` survive a stop at ``moment`` byte for byte."""
    before = snapshot(where)
    res = stopped(args, moment, signum, where)
    if signum == signal.SIGKILL:
        assert res.returncode == -9
        leftovers = [p.name for p in where.iterdir() if p.name.startswith(f".{target}.")]
        assert leftovers and all(".staging-" in n or ".previous-" in n for n in leftovers)
        again = tenure(*args)  # the next run in that place cleans up and says so
        assert again.returncode == 0, again.stderr
        assert "removed an unfinished run's staging folder" in again.stderr
        assert not [p for p in where.iterdir() if p.name.startswith(".")]
        return
    assert_clean_stop(res, signum)
    assert snapshot(where) == before


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM"),
           pytest.param(signal.SIGKILL, id="SIGKILL")]


# -- simulate: fast enough for every run ---------------------------------------------------------------------------
@pytest.mark.parametrize(("moment", "signum"), [
    ("staged", signal.SIGINT), ("staged", signal.SIGTERM), ("staged", signal.SIGKILL),
    pytest.param("swapping", signal.SIGINT, marks=pytest.mark.slow),
    pytest.param("swapping", signal.SIGTERM, marks=pytest.mark.slow),
    pytest.param("swapping", signal.SIGKILL, marks=pytest.mark.slow)])
def test_simulate_stopped_keeps_the_earlier_run(tmp_path: Path, moment: str, signum: int):
    args = ["simulate", "-n", "1000", "-t", "2", "-q", "-o", str(tmp_path / "run")]
    assert tenure(*args).returncode == 0
    check_stop(tmp_path, "run", args, moment, signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_simulate_stopped_while_working(tmp_path: Path, signum: int):
    assert tenure("simulate", "-n", "1000", "-t", "2", "-q", "-o", str(tmp_path / "run")).returncode == 0
    check_stop(tmp_path, "run", ["simulate", "-n", "3000000", "-t", "120", "-q", "-o", str(tmp_path / "run")],
               "working", signum)


def test_simulate_killed_while_swapping_reads_as_the_earlier_run_or_nothing(tmp_path: Path):
    out = tmp_path / "run"
    args = ["simulate", "-n", "1000", "-t", "2", "-q", "-o", str(out)]
    assert tenure(*args).returncode == 0
    before = snapshot(out)
    assert stopped(args, "swapping", signal.SIGKILL, tmp_path).returncode == -9
    assert not out.exists()  # between the two renames: no folder at all, never a mixture
    again = tenure(*args)
    assert "restored the earlier" in again.stderr and again.returncode == 0
    assert snapshot(out).keys() == before.keys()


# -- compare, fit, calibrate: slower, marked slow --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("moment", ["staged", "swapping"])
def test_compare_stopped_keeps_the_earlier_run(tmp_path: Path, moment: str, signum: int):
    args = ["compare", "-n", "300", "-t", "2", "--seeds", "1", "--acquisition-steps", "2", "--levers", "service",
            "-q", "-o", str(tmp_path / "cmp")]
    assert tenure(*args).returncode == 0
    check_stop(tmp_path, "cmp", args, moment, signum)


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Path:
    from tenure.engine.simulator import Simulator

    from tenure.scenario import load_scenario

    d = tmp_path_factory.mktemp("panel")
    base = load_scenario(None).scaled(1_500).with_overrides({"run": {"periods": 6, "seed": 3}})
    (d / "base.toml").write_text(base.to_toml())
    Simulator(base, panel_fraction=1.0).run().panel.write_parquet(d / "p.parquet")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("moment", ["working", "staged", "swapping"])
def test_fit_stopped_while_sampling_or_writing_keeps_the_earlier_fit(panel: Path, tmp_path: Path, moment: str,
                                                                    signum: int):
    out = tmp_path / "fit"
    assert tenure("fit", "retention", str(panel / "p.parquet"), "--method", "map", "-o", str(out)).returncode == 0
    before = snapshot(tmp_path)
    args = ["fit", "retention", str(panel / "p.parquet"), "--draws", "300", "--tune", "300", "--chains", "2",
            "-o", str(out)]
    if moment == "working":  # while compiling or sampling: no staging folder exists yet, so stop after a while
        # long enough that it is still sampling 5 s in on an idle machine (300 + 300 could finish and stage)
        args[args.index("--draws") + 1] = args[args.index("--tune") + 1] = "20000"
        proc = subprocess.Popen([*TENURE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout:  # type: ignore[union-attr]
            if "fitting with mcmc" in line:
                break
        time.sleep(5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert snapshot(tmp_path) == before  # nothing staged while sampling, whatever the signal
        if signum != signal.SIGKILL:
            assert_clean_stop(subprocess.CompletedProcess(args, proc.returncode, "", err), signum)
        return
    check_stop(tmp_path, "fit", args, moment, signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("moment", ["staged", "swapping"])
def test_calibrate_over_an_earlier_result_keeps_the_earlier_set(panel: Path, tmp_path: Path, moment: str,
                                                                 signum: int):
    from tenure.io import verify_manifest

    args = ["calibrate", str(panel / "base.toml"), str(panel / "p.parquet"), "-o", str(tmp_path / "m.toml"),
            "--markets", "3", "--check-markets", "3", "--iterations", "2", "-q"]
    assert tenure(*args).returncode == 0
    before = snapshot(tmp_path)
    verify_manifest(tmp_path / "m.toml")
    res = stopped([*args, "-s", "9"], moment, signum, tmp_path)
    if signum != signal.SIGKILL:
        assert_clean_stop(res, signum)
        assert snapshot(tmp_path) == before
        return
    assert res.returncode == -9
    if moment == "swapping":  # the earlier set is aside: a reader finds no market, never a mixture
        with pytest.raises(Exception, match=r"m\.toml"):
            verify_manifest(tmp_path / "m.toml")
    else:
        assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(".")} == before
    again = tenure(*args)
    assert again.returncode == 0 and "removed an unfinished run's staging folder" in again.stderr, again.stderr
    verify_manifest(tmp_path / "m.toml")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- a full disk ends like an interruption ------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("target", ["run", "m.toml"])
def test_full_disk_writes_nothing_and_says_so_in_one_line(tmp_path: Path, panel: Path, target: str):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=False,
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / ".filler").write_bytes(b"\0" * (free - 16 * 1024))  # 16 kB left: the probe fits, the outputs not
        if target == "run":
            res = tenure("simulate", "-n", "20000", "-t", "6", "--panel-sample", "1", "--format", "csv", "-q",
                         "-o", str(mnt / "run"))
        else:
            res = tenure("calibrate", str(panel / "base.toml"), str(panel / "p.parquet"), "-o", str(mnt / "m.toml"),
                         "--markets", "3", "--check-markets", "3", "--iterations", "1", "-q")
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0] and "nothing written" in lines[0], lines
        assert [p.name for p in mnt.iterdir()] == [".filler"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
