"""`tenure predict`: a table of per-customer predictions from a saved transaction-model fit.

``tenure predict FIT_DIR DATA --horizon 52 -o clv.parquet`` reads the fit of ``tenure fit bgnbd``
(or of any transaction model), the customers' RFM summary or transaction log, and writes one
row per customer: P(alive), expected purchases in the next ``--horizon`` units and, with
``--spend`` (a ``tenure fit gamma-gamma`` folder), expected spend per purchase and CLV, each with
its 90 % equal-tailed interval (:func:`tenure.models.clv_table.customer_table`). The file is
written atomically; bad input ends with one line and exit code 2, nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenure.commands._common import cli_errors, console
from tenure.commands.fit_clv import AmountCol, CustomerCol, DateCol, ObservationEnd, SummaryData

FitDir = Annotated[Path, typer.Argument(help="Folder of a transaction-model fit (tenure fit bgnbd -o FOLDER) or its "
                                        "posterior.nc.")]
OutFile = Annotated[Path, typer.Option("--out", "-o", help="Output file: .parquet or .csv, written atomically.",
                                       show_default=False)]


@cli_errors
def predict_cmd(
    fit_dir: FitDir,
    data: SummaryData,
    out: OutFile,
    horizon: Annotated[float, typer.Option("--horizon", help="Prediction window, in --time-unit (default: the "
                                           "fit's unit).")] = 52.0,
    time_unit: Annotated[str | None, typer.Option("--time-unit", help="Unit of --horizon and of a summary's "
                                                  "recency and T: days, weeks or months. Default: the fit's unit.",
                                                  show_default=False)] = None,
    spend: Annotated[Path | None, typer.Option("--spend", help="Folder of a Gamma-Gamma fit (tenure fit "
                                               "gamma-gamma); adds spend per purchase and CLV. DATA then needs "
                                               "monetary_value or amounts.", show_default=False)] = None,
    discount_rate: Annotated[float, typer.Option("--discount-rate", help="Discount rate a year for CLV (0.1 = "
                                                 "10 % a year), applied continuously.")] = 0.1,
    margin: Annotated[float, typer.Option("--margin", help="Share of spend kept as profit, in (0, 1]; 1 gives CLV "
                                          "as revenue.")] = 1.0,
    max_draws: Annotated[int, typer.Option("--max-draws", help="Posterior draws used for the intervals (evenly "
                                           "thinned).")] = 500,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    observation_end: ObservationEnd = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary.")] = False,
) -> None:
    """Per-customer P(alive), expected purchases, spend and CLV with 90 % intervals from a saved fit."""
    import polars as pl

    from tenure.errors import InputError
    from tenure.io import check_out_dir, read_table, write_table
    from tenure.models import load, model_class
    from tenure.models.clv_data import SUMMARY_ALIASES, check_time_unit, convert_periods, summary_from_transactions
    from tenure.models.clv_table import annual_rate_per_unit, customer_table, describe_columns, model_for_prediction
    from tenure.models.evaluate import TRANSACTION_MODEL_METHODS

    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"--out {out}: use a .parquet or .csv file name")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; name a file")
    check_out_dir(out.parent if str(out.parent) else Path("."))
    if max_draws < 1:
        raise InputError(f"--max-draws: must be at least 1, found {max_draws}")
    if not 0 < margin <= 1:
        raise InputError(f"--margin: must be in (0, 1] (a share of spend), found {margin:g}")
    annual_rate_per_unit(discount_rate, "weeks")
    result = load(fit_dir)
    unit = check_time_unit(time_unit or result.time_unit or "weeks")
    cls = model_class(result.model_name)
    if result.time_unit is None or not all(hasattr(cls, m) for m in TRANSACTION_MODEL_METHODS):
        raise InputError(f"{fit_dir}: a {result.model_name} fit; name a transaction-model fit (bgnbd, ...)")
    spend_result = load(spend) if spend is not None else None
    if spend_result is not None and spend_result.model_name != "gamma-gamma":
        raise InputError(f"--spend {spend}: a {spend_result.model_name} fit; name a gamma-gamma fit")
    raw = read_table(data)
    if {"frequency", "recency", "T"} <= {SUMMARY_ALIASES.get(c, c) for c in raw.columns} or date_col not in raw.columns:
        # An RFM summary, in --time-unit: expressed in the fit's unit.
        summary = raw.rename({a: n for a, n in SUMMARY_ALIASES.items() if a in raw.columns and n not in raw.columns})
        factor = convert_periods(1.0, unit, result.time_unit)
        if factor != 1.0:
            summary = summary.with_columns(*(pl.col(c).cast(pl.Float64, strict=False) * factor
                                             for c in ("recency", "T") if c in summary.columns))
    else:
        summary = summary_from_transactions(raw, time_unit=result.time_unit, customer_col=customer_col,
                                            date_col=date_col, amount_col=amount_col if amount_col in raw.columns
                                            else None, observation_end=observation_end, where=str(data))
    model = model_for_prediction(result, summary, where=str(data), max_draws=max_draws)
    spend_model = (model_for_prediction(spend_result, summary, where=str(data), max_draws=max_draws)
                   if spend_result is not None else None)
    with console.status("predicting") if not quiet else _nothing():
        table = customer_table(model, summary, horizon=horizon, time_unit=unit, spend=spend_model,
                               annual_discount_rate=discount_rate, margin=margin, where=str(data))
    write_table(table, out, fmt=suffix[1:])
    if not quiet:
        for line in describe_columns(horizon, unit, spend=spend_model is not None,
                                     annual_discount_rate=discount_rate, margin=margin):
            console.print(f"  • {line}", highlight=False)
        console.print(f"wrote {out}: {table.height:,} customers", highlight=False)


def _nothing():
    import contextlib

    return contextlib.nullcontext()
