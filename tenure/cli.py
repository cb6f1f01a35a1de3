"""The ``tenure`` command line: simulate, fit, compare, decide, calibrate, evaluate, predict, score, alarm, report.

One grammar for every command (tenure/commands/_options.py): the market positional,
``-n/--customers``, ``-t/--periods``, ``-s/--seed``, ``-o/--out``, ``-q/--quiet``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from tenure import __version__
from tenure.commands import alarm as _alarm
from tenure.commands import calibrate as _calibrate
from tenure.commands import compare as _compare
from tenure.commands import decide as _decide
from tenure.commands import evaluate as _evaluate
from tenure.commands import fit_clv as _fit_clv  # noqa: F401  (registers its fit sub-commands)
from tenure.commands import fit_panel as _fit_panel  # noqa: F401  (registers its fit sub-commands)
from tenure.commands import predict as _predict
from tenure.commands import report as _report
from tenure.commands import scenario as _scenario
from tenure.commands import score as _score
from tenure.commands import simulate as _simulate
from tenure.commands.fit import fit_app

app = typer.Typer(
    name="tenure",
    help=(
        "Statistics of customer relationships: simulate customer populations, "
        "estimate how trust and enthusiasm drive retention and cross-selling, "
        "and decide between acquisition and retention spending."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tenure {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Statistics of customer relationships."""


app.command("alarm")(_alarm.alarm_cmd)
app.command("calibrate")(_calibrate.calibrate_cmd)
app.command("compare")(_compare.compare_cmd)
app.command("decide")(_decide.decide_cmd)
app.command("evaluate")(_evaluate.evaluate_cmd)
app.command("predict")(_predict.predict_cmd)
app.command("report")(_report.report_cmd)
app.command("score")(_score.score_cmd)
app.command("simulate")(_simulate.simulate)
app.add_typer(_scenario.scenario_app, name="scenario")
app.add_typer(fit_app, name="fit")


def main() -> None:
    """Entry point of the ``tenure`` console script: :func:`run` on ``sys.argv``, then exit with its code.

    ``--debug`` (or ``TENURE_DEBUG=1``) shows the traceback of an internal error instead of its
    one line, and exits the ordinary way.
    """
    debug = "--debug" in sys.argv[1:] or os.environ.get("TENURE_DEBUG", "") not in ("", "0")
    args = [a for a in sys.argv[1:] if a != "--debug"]
    if debug:
        _prepare()
        app(args)
        return
    _exit_without_teardown(run(args))


def run(args: list[str]) -> int:
    """Run the command line ``args`` (without the program name) and return its exit code.

    The last resort behind every command's own checks: an exception that slipped past
    them ends in one line on stderr and exit code 1.
    """
    _prepare()
    try:
        app(args)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"internal error: {type(exc).__name__}: {first} (run again with --debug or TENURE_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        return 1
    return 0


def _prepare() -> None:
    import warnings

    from tenure import interrupt

    # ArviZ 0.2x announces its 1.0 rewrite on import, in five lines above every fit's output; tenure pins
    # arviz<1, so the notice says nothing to a user of the command line.
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    interrupt.install()


def _exit_code(code: int | str | None) -> int:
    """``SystemExit``'s code as the process's: None is 0, a message is printed and gives 1 (as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit_without_teardown(code: int) -> NoReturn:
    """Exit with ``code`` after the ``atexit`` handlers, skipping the interpreter's teardown of its modules.

    A command has imported NumPy, polars, Numba and, for a fit, SciPy, xarray and matplotlib by the
    time it ends; tearing their modules down object by object took about 1 s of CPU after a warm
    ``tenure fit bgnbd --method map`` (7.0 s against 5.9 s of user time, benchmarks/RESULTS.md), longer
    than the fit itself. Nothing is lost by skipping it: every output file is closed (and renamed into
    place) before the command returns; what the ordinary exit does first still happens here, in its
    order: non-daemon threads are joined, then the ``atexit`` handlers run (logging, Dask's
    clusters, coverage), then the streams are flushed. ``--debug`` keeps the ordinary exit.
    """
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the interpreter's own exit calls the same function
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
