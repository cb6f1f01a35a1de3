"""`tenure scenario`: list, show, validate and scale scenarios."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tenure.commands._common import cli_errors, console
from tenure.commands._options import Market

scenario_app = typer.Typer(help="List, show, validate and scale scenario files.", no_args_is_help=True)


@scenario_app.command("list")
@cli_errors
def list_scenarios() -> None:
    """List the built-in scenarios with their stories."""
    from tenure.scenario import builtin_names, load_scenario

    t = Table(title="built-in scenarios")
    t.add_column("name", style="bold")
    t.add_column("story")
    for name in builtin_names():
        t.add_row(name, load_scenario(name)["meta"]["story"])
    console.print(t)


@scenario_app.command("show")
@cli_errors
def show(market: Market = None) -> None:
    """Print a market as TOML with every default filled in."""
    from tenure.scenario import load_scenario

    typer.echo(load_scenario(market).to_toml())


@scenario_app.command("validate")
@cli_errors
def validate(
    scenario: Annotated[str, typer.Argument(help="A scenario TOML file (or a built-in name).", metavar="MARKET",
                                            show_default=False)],
) -> None:
    """Check a scenario: unknown keys, wrong types and impossible values exit with code 2."""
    from tenure.scenario import load_scenario

    sc = load_scenario(scenario)
    console.print(f"[green]ok[/]: {scenario} is a valid scenario ({sc.name}, {len(sc['segments'])} segments)")


@scenario_app.command("scale")
@cli_errors
def scale(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario TOML file.",
                                            metavar="MARKET", show_default=False)],
    customers: Annotated[int, typer.Argument(help="Initial customers of the scaled market.", metavar="CUSTOMERS",
                                             show_default=False)],
) -> None:
    """Print the same market with CUSTOMERS initial customers, as TOML: market size and budgets scale alike.

    A scaled market keeps spend per customer and per prospect, and behaves the same up to
    sampling noise. It is what `-n/--customers` means on simulate, compare and decide, and the
    market `tenure calibrate` matches a panel against is scaled the same way. Example: `tenure
    scenario scale default 20000 > small.toml`.
    """
    from tenure.scenario import load_scenario

    typer.echo(load_scenario(scenario).scaled(customers, "CUSTOMERS").to_toml())
