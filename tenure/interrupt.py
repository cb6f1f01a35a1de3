"""Stopping a run cleanly: SIGINT and SIGTERM become one exception that unwinds every staged output.

A run writes into a staging folder (:func:`tenure.io.run_folder`) and is put in
place only when it finishes, so stopping it must unwind through the same code
path as an error. Python turns SIGINT into :class:`KeyboardInterrupt` but
SIGTERM ends the process without unwinding; :func:`install` makes both raise
:class:`Interrupted`, which carries the exit code of the signal (130 for SIGINT,
143 for SIGTERM).

Some libraries catch ``KeyboardInterrupt`` themselves and return what they have
(nutpie returns the draws made so far). :func:`raise_if_requested` re-raises
after such a call, so a partial posterior is never taken for a result.
"""

from __future__ import annotations

import signal
from types import FrameType

_requested: list[int] = []


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def _handler(signum: int, frame: FrameType | None) -> None:
    _requested.append(signum)
    raise Interrupted(signum)


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (the CLI calls this once)."""
    _requested.clear()
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def requested() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _requested[-1] if _requested else None


def raise_if_requested() -> None:
    """Raise :class:`Interrupted` if a stop was asked while a library swallowed the interrupt."""
    signum = requested()
    if signum is not None:
        raise Interrupted(signum)


def exit_code(exc: BaseException) -> int:
    """The exit code for an interrupt: the signal's 128 + n, or 130 for a plain KeyboardInterrupt."""
    return getattr(exc, "exit_code", 130)


#: Test-only: ``TENURE_TEST_PAUSE=POINT=FLAGFILE`` makes :func:`pause_point` ``POINT`` create ``FLAGFILE`` and
#: sleep (up to ``TENURE_TEST_PAUSE_SECONDS``, default 120), so that a test can send a signal at that moment.
PAUSE_ENV = "TENURE_TEST_PAUSE"


def pause_point(name: str) -> None:
    """A named moment of a run where the signal tests stop it (test-only; does nothing unless asked).

    Points: ``staged`` (every output written to the staging folder, no manifest yet),
    ``swapping`` (the earlier outputs moved aside, the new ones not yet in place).
    Set ``TENURE_TEST_PAUSE=staged=/tmp/flag``: the run creates ``/tmp/flag`` at the point, then sleeps.
    """
    import os

    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    point, _, flag = spec.partition("=")
    if point != name:
        return
    import time

    if flag:
        with open(flag, "w") as fh:
            fh.write(str(os.getpid()))
    time.sleep(float(os.environ.get("TENURE_TEST_PAUSE_SECONDS", "120")))
