"""A run stopped by SIGINT or SIGTERM writes nothing and leaves the earlier run as it was."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TENURE = [sys.executable, "-c", "from tenure.cli import main; main()"]


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TENURE, "simulate", "-n", "2000", "-t", "3", "-o", str(out), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_keeps_the_earlier_run(tmp_path: Path, signum: int, code: int):
    out = tmp_path / "run"
    assert _run(out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([*TENURE, "simulate", "-n", "3000000", "-t", "120", "-q", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".run.staging-*")) and time.time() < deadline:  # the run has begun
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines() == ["interrupted: nothing written; any earlier outputs are unchanged"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder or temporary file left
