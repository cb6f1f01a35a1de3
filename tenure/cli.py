"""The ``tenure`` command line: simulate, fit, compare, decide, calibrate, evaluate, predict, score, alarm, report.

One grammar for every command (tenure/commands/_options.py): the market positional,
``-n/--customers``, ``-t/--periods``, ``-s/--seed``, ``-o/--out``, ``-q/--quiet``.
"""

from __future__ import annotations

import os
import sys

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
    """Entry point of the ``tenure`` console script.

    The last resort behind every command's own checks: an exception that slipped past
    them ends in one line and exit code 1, and ``--debug`` (or ``TENURE_DEBUG=1``)
    shows its traceback instead.
    """
    import warnings

    from tenure import interrupt

    # ArviZ 0.2x announces its 1.0 rewrite on import, in five lines above every fit's output; tenure pins
    # arviz<1, so the notice says nothing to a user of the command line.
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    interrupt.install()
    debug = "--debug" in sys.argv[1:] or os.environ.get("TENURE_DEBUG", "") not in ("", "0")
    args = [a for a in sys.argv[1:] if a != "--debug"]
    if debug:
        app(args)
        return
    try:
        app(args)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"internal error: {type(exc).__name__}: {first} (run again with --debug or TENURE_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
