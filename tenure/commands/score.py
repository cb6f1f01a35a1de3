"""`tenure score FIT_DIR CUSTOMERS -o scores.parquet`: churn, remaining margin, value at risk and the call list."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.commands._common import cli_errors, console, err_console, number
from tenure.commands._options import Quiet
from tenure.errors import InputError

FitDir = Annotated[Path, typer.Argument(help="A retention fit folder (`tenure fit retention PANEL -o DIR`).")]
CustomersFile = Annotated[Path, typer.Argument(
    help="Customer table (.csv or .parquet): customer_id, trust, enthusiasm, satisfaction (latest answers, 1-5), "
    "tenure (months), products, optional segment and margin; see docs/operations.md.")]
ScoresOut = Annotated[Path, typer.Option(
    "--out", "-o", help="Score table to write: scores.parquet or scores.csv (one row per customer).",
    show_default=False)]


def load_fit(path: Path, family: str, what: str) -> Any:
    """A saved fit of ``family``; a fit of another model is a one-line error naming the folder."""
    from tenure.models import load

    result = load(path)
    if result.model_name != family:
        raise InputError(f"{what} {path}: a fit of model {result.model_name!r}, expected a {family} fit "
                         f"(tenure fit {family} PANEL -o DIR)")
    return result


@cli_errors
def score_cmd(
    fit_dir: FitDir,
    customers: CustomersFile,
    out: ScoresOut,
    cross_sell: Annotated[Path | None, typer.Option(
        "--cross-sell", help="A cross-sell fit folder: adds the expected cross-sales over the horizon.",
        show_default=False)] = None,
    margin: Annotated[float | None, typer.Option(
        "--margin", help="Margin per customer per month (currency), for a customer table without a margin column.",
        show_default=False)] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Months of the remaining margin and cross-sales.")] = 36,
    discount_rate: Annotated[float, typer.Option(
        "--discount-rate", help="Monthly discount rate of the remaining margin.")] = 0.01,
    interval: Annotated[float, typer.Option(
        "--interval", help="Probability of each equal-tailed posterior interval.")] = 0.9,
    max_draws: Annotated[int, typer.Option(
        "--max-draws", help="Posterior draws used at most, evenly spaced over the chains.")] = 1000,
    quiet: Quiet = False,
) -> None:
    """Score current customers from a retention fit: churn risk, remaining margin and the call list.

    For each customer: the monthly churn probability with its interval, the expected remaining margin
    over the horizon (discounted), the value at risk (churn probability x remaining margin) and each
    customer's rank in the call list (1 = highest value at risk). With --cross-sell, also the expected
    cross-sales. Posterior draws are reduced per group of equal customers as they are computed.
    """
    from tenure.checks import discount_rate as check_discount_rate
    from tenure.checks import in_range, whole
    from tenure.io import check_out_table, write_table
    from tenure.models.scoring import MAX_MARGIN, CrossSellDraws, HazardDraws, read_customers, score_customers

    out, fmt = check_out_table(out)
    whole(horizon, "--horizon", 1, 1200)
    check_discount_rate(discount_rate)
    in_range(interval, "--interval", 0.0, 1.0, open_low=True, open_high=True)
    if margin is not None:
        in_range(margin, "--margin", -MAX_MARGIN, MAX_MARGIN)
    whole(max_draws, "--max-draws", 2, 10**7)
    hazard = HazardDraws.from_fit(load_fit(fit_dir, "retention", "FIT_DIR"))
    xsell = None if cross_sell is None else CrossSellDraws.from_fit(load_fit(cross_sell, "cross-sell", "--cross-sell"))
    table = read_customers(customers)
    with contextlib.nullcontext() if quiet else console.status("scoring customers"):
        result = score_customers(table, hazard, xsell, margin=margin, horizon_months=horizon,
                                 discount_rate_monthly=discount_rate, interval=interval, max_draws=max_draws)
    for line in result.warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    write_table(result.table, out, fmt=fmt)
    if not quiet:
        console.print(call_list(result.table))
        console.print(f"wrote [bold]{out}[/]: {result.table.height:,} customers", highlight=False)


def call_list(scores: Any, rows: int = 10) -> Table:
    """The top of the call list: the customers with the highest value at risk."""
    top = scores.sort("call_rank").head(rows)
    t = Table(title=f"call list (top {min(rows, scores.height)} of {scores.height:,})")
    for col in ("rank", "customer", "churn / month", "remaining margin", "value at risk"):
        t.add_column(col, justify="right")
    for r in top.iter_rows(named=True):
        t.add_row(str(r["call_rank"]), str(r["customer_id"]), f"{100 * r['churn_probability_monthly']:.1f} %",
                  number(r["remaining_margin"], 2), number(r["value_at_risk"], 2))
    return t
