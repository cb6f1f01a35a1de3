"""What every command shares: one line and exit code 2 for bad input, progress bars, deprecation notes."""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from tenure.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)

COMPILING = "compiling kernels (once)"


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the ``typer.Exit(2)`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code=InputError.exit_code)


def number(x: float | None, digits: int = 0) -> str:
    """A number for a results table: thousands separated, ``n/a`` when missing or not finite."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


def note(message: str) -> None:
    """A one-line note on stderr (an old spelling, for instance), outside the command's results."""
    err_console.print(f"[yellow]note:[/] {message}", highlight=False, soft_wrap=True)


def cli_errors(fn: F) -> F:
    """Decorate a command: :class:`InputError` ends it with one line and exit code 2, SIGINT and SIGTERM
    with one line and 130 or 143, a full or read-only file system with one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise fail(str(exc).replace("[", "\\[")) from None
        except KeyboardInterrupt as exc:
            from tenure.interrupt import exit_code

            err_console.print(INTERRUPTED, highlight=False)
            sys.exit(exit_code(exc))
        except Exception as exc:
            reason = cannot_write(exc)
            if reason is None:
                raise
            raise fail(f"{reason}: nothing written; any earlier outputs are unchanged") from None

    return wrapper  # type: ignore[return-value]


INTERRUPTED = "interrupted: nothing written; any earlier outputs are unchanged"

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def cannot_write(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` is the file system refusing a write (full disk, quota, read-only), else None.

    Writers raise it as :class:`OSError` or, from Polars and HDF5, as their own exceptions carrying the
    OS message; the staged run has been removed by then, so it ends like an interruption.
    """
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            where = f" ({e.filename})" if e.filename else ""
            return f"cannot write{where}: {e.strerror or os.strerror(e.errno)}"
    text = str(exc)
    for code in _WRITE_ERRNOS:
        message = os.strerror(code)
        if message in text or f"os error {code})" in text:
            return f"cannot write: {message}"
    return None


@contextlib.contextmanager
def progress(label: str, unit: str, quiet: bool, total: int | None = None,
             done: int = 0) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal, fed as ``progress(done, total)``; ``None`` when quiet or not a terminal.

    Until the first step is done the bar says the kernels are compiling: the first run in a process
    compiles the Numba kernels (or loads them from the cache), which can take longer than every later
    step. The time remaining is estimated from the steps after it.
    """
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(COMPILING, total=total, completed=done)
        start = done

        def update(n: int, of: int) -> None:
            if n > start and bar.tasks[0].description == COMPILING:
                started = bar.tasks[0].start_time
                bar.reset(task, total=of, completed=n, description=label)  # the speed and ETA count from here
                bar.tasks[0].start_time = started  # the elapsed time from the start
            else:
                bar.update(task, total=of, completed=n)

        yield update


@contextlib.contextmanager
def output_folder(out: Path | None, command: str, quiet: bool, *, report: bool = True,
                  **meta: Any) -> Iterator[Path | None]:
    """The folder to write a run's outputs into: staged by :func:`tenure.io.run_folder`, ``None`` without --out.

    Enter it before the run: --out is checked first, and the folder is replaced as a whole (with its
    manifest) only when the run has finished; then its report is written (unless ``report`` is false:
    commands whose outputs are for machines, such as `tenure alarm`'s alert stream) and its files are listed.
    """
    if out is None:
        yield None
        return
    from tenure.io import run_folder

    with run_folder(out, command, **meta) as folder:
        yield folder
    if report:
        write_run_report(out)
    if not quiet:
        console.print(f"wrote [bold]{out}[/]: " + ", ".join(sorted(p.name for p in out.iterdir())), highlight=False)


def run_meta(sc: Any) -> dict[str, Any]:
    """What a run folder's manifest records of the market a run simulated."""
    return {"market": sc.name, "source": sc.source, "customers": sc["run"]["customers"],
            "periods": sc["run"]["periods"], "seed": sc["run"]["seed"]}


def write_run_report(out: Path) -> Path | None:
    """Write ``report.html`` of a finished run (a run folder, or a calibrated market file) from its files.

    The report is rendered once the run is in place, from the files as written and checked against
    their manifest, exactly as `tenure report` renders it again later; it is written atomically and is
    not in the manifest (a view of the run, which `tenure report` may replace, not one of its results).
    A report that fails to render does not fail the run, which is complete: one warning line says so
    and how to render it again, and ``None`` is returned.
    """
    from rich.markup import escape

    from tenure.report import write_report

    try:
        return write_report(out)
    except Exception as exc:  # the run is in place and whole; only its view failed
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = escape(str(out))
        err_console.print(f"[bold yellow]warning:[/] the run in {where} is complete, but its report was not written "
                          f"({escape(cause)}); `tenure report {where}` renders it again",
                          highlight=False, soft_wrap=True)
        return None
