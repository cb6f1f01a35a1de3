"""The console script's exit (``tenure.cli.main``): the code, the whole output and the ``atexit`` handlers.

``main`` ends the process with ``os._exit`` after the ``atexit`` handlers instead of tearing the
interpreter's modules down (about 1 s of CPU after a fit); these tests check in a real process that
nothing an ordinary exit gives is lost: the exit code, every byte written to a pipe, a handler
registered before the command, and a non-daemon thread's work.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    marker = Path(sys.argv[1])
    atexit.register(lambda: marker.write_text(marker.read_text() + "atexit ran"))
    def late():
        time.sleep(0.3)
        marker.write_text("thread done; ")
    marker.write_text("")
    threading.Thread(target=late).start()
    sys.argv = ["tenure", *sys.argv[2:]]
    from tenure.cli import main
    main()
    print("not reached")
""")


def _run(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(marker), *args], capture_output=True, text=True,
                          timeout=300)
    return proc, marker.read_text()


def test_a_command_exits_with_its_code_its_whole_output_and_the_atexit_handlers(tmp_path):
    proc, marker = _run(tmp_path, "scenario", "show", "default")
    assert proc.returncode == 0, proc.stderr
    market = tomllib.loads(proc.stdout)  # the whole TOML arrived through the pipe, up to its last line
    assert market and "not reached" not in proc.stdout
    assert marker == "thread done; atexit ran"


def test_a_refused_input_exits_2_after_the_handlers(tmp_path):
    proc, marker = _run(tmp_path, "fit", "bgnbd", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("file not found") and "Traceback" not in proc.stderr
    assert marker == "thread done; atexit ran"
    assert not (tmp_path / "out").exists()
