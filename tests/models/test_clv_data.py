"""Inputs of the customer-base models: transaction logs, summaries, cohort tables, and the CLI's checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.clv_data import (
    cohort_to_durations,
    compress_summary,
    convert_periods,
    summary_from_transactions,
    validate_cohort_table,
    validate_summary,
)
from typer.testing import CliRunner

import tenure.commands.fit_clv  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app
from tenure.errors import InputError

DATA = Path(__file__).resolve().parents[1] / "data"


def read_cdnow_master() -> pl.DataFrame:
    """CDNOW_master.txt is whitespace-aligned: id, YYYYMMDD, number of CDs, dollars."""
    rows = [line.split() for line in (DATA / "CDNOW_master.txt").read_text().splitlines()[1:] if line.strip()]
    ids, dates, _, amounts = zip(*rows, strict=True)
    return pl.DataFrame({"customer_id": np.array(ids, dtype=np.int64), "date": list(dates),
                         "amount": np.array(amounts, dtype=float)})


def test_summary_from_a_small_log_by_hand():
    log = pl.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b"],
        "date": ["2024-01-01", "2024-01-01", "2024-01-15", "2024-01-29", "2024-01-08"],
        "amount": [10.0, 5.0, 20.0, 40.0, 7.0],
    })
    s = summary_from_transactions(log, time_unit="weeks", observation_end="2024-02-05").sort("customer_id")
    # a: purchase days 1, 15, 29 Jan -> 2 repeat days; recency 28 days = 4 weeks; T 35 days = 5 weeks;
    # mean repeat spend (20 + 40)/2 = 30 (the first day's 15 excluded, same-day purchases summed).
    assert s.row(0, named=True) == {"customer_id": "a", "frequency": 2, "recency": 4.0, "T": 5.0,
                                    "monetary_value": 30.0}
    assert s.row(1, named=True) == {"customer_id": "b", "frequency": 0, "recency": 0.0, "T": 4.0,
                                    "monetary_value": 0.0}
    days = summary_from_transactions(log, time_unit="days", observation_end="2024-02-05").sort("customer_id")
    assert days["T"].to_list() == [35.0, 28.0]
    months = summary_from_transactions(log, time_unit="months", observation_end=dt.date(2024, 2, 5))
    assert months.sort("customer_id")["T"][0] == pytest.approx(35 / (365.25 / 12))


def test_summary_of_the_cdnow_cohort():
    s = summary_from_transactions(read_cdnow_master(), time_unit="weeks", observation_end="1997-09-30")
    # Fader, Hardie & Lee (2005): 23,570 customers who first bought in Q1 1997.
    assert s.height == 23_570
    first = s.filter(pl.col("customer_id") == 1).row(0, named=True)
    # Customer 1 first bought on 1997-01-01: T = 272 days = 38.86 weeks, the calibration period's end.
    assert first["T"] == pytest.approx(272 / 7)
    assert first["frequency"] == 0
    # Customer 2 bought twice on 1997-01-12: one purchase day, no repeat purchase.
    assert s.filter(pl.col("customer_id") == 2)["frequency"].item() == 0
    # Customer 3: 1997-01-02, then 03-30 and 04-02 in the calibration period (11-15 and later are after it).
    third = s.filter(pl.col("customer_id") == 3).row(0, named=True)
    assert third["frequency"] == 2
    assert third["recency"] == pytest.approx(90 / 7)
    assert third["T"] == pytest.approx(271 / 7)
    assert third["monetary_value"] == pytest.approx((20.76 + 19.54) / 2)
    assert (s["recency"] <= s["T"]).all()


def test_validate_summary_accepts_the_papers_names_and_counts():
    raw = pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")
    s = validate_summary(raw, monetary=True)
    # The customer key (CDNOW's ID) is kept, first, so that predictions can name their customers.
    assert s.columns == ["customer_id", "frequency", "recency", "T", "count", "monetary_value"]
    assert int(s["count"].sum()) == 2357


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"frequency": [1], "recency": [2.0]}), "missing column 'T'"),
        (pl.DataFrame({"frequency": ["1", "two"], "recency": [1.0, 2.0], "T": [3.0, 3.0]}),
         "column 'frequency' must be numeric; row 2 has 'two'"),
        (pl.DataFrame({"frequency": [1, -1], "recency": [1.0, 0.0], "T": [3.0, 3.0]}),
         "row 2: column 'frequency' must be 0 or more"),
        (pl.DataFrame({"frequency": [1, 1, 2], "recency": [1.0, 2.0, 5.0], "T": [3.0, 3.0, 4.0]}),
         "row 3: column 'recency' must not exceed T"),
        (pl.DataFrame({"frequency": [1.5], "recency": [1.0], "T": [3.0]}), "column 'frequency' must hold whole"),
        (pl.DataFrame({"frequency": [0], "recency": [1.0], "T": [3.0]}), "must be 0 when frequency is 0"),
        (pl.DataFrame({"frequency": [1], "recency": [None], "T": [3.0]}, schema_overrides={"recency": pl.Float64}),
         "column 'recency' has a missing value in row 1"),
    ],
)
def test_validate_summary_names_column_and_row(frame, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        validate_summary(frame, where="s.csv")


def test_compression_is_exact_and_keeps_totals():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, 1000)
    df = pl.DataFrame({"frequency": x, "recency": np.where(x > 0, rng.integers(1, 4, 1000), 0).astype(float),
                       "T": np.full(1000, 5.0)})
    c = compress_summary(validate_summary(df))
    assert c.height <= 7  # 1 row for x = 0, at most 3 recencies for x = 1 and for x = 2
    assert int(c["count"].sum()) == 1000
    assert float((c["frequency"] * c["count"]).sum()) == float(x.sum())


def test_cohort_table_to_churn_records():
    # Fader & Hardie (2007), regular customers, years 0-3.
    table = pl.DataFrame({"period": [0, 1, 2, 3], "alive": [1000, 631, 468, 382]})
    rec = cohort_to_durations(validate_cohort_table(table))
    churned = rec.filter(pl.col("churned") == 1)
    assert churned["count"].to_list() == [369, 163, 86]
    assert rec.filter(pl.col("churned") == 0).row(0, named=True)["count"] == 382
    assert int(rec["count"].sum()) == 1000


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"period": [0, 1, 2], "alive": [10, 12, 5]}), "column 'alive': row 2: survivors cannot increase"),
        (pl.DataFrame({"period": [1, 2], "alive": [10, 5]}), "column 'period': row 1: each cohort must start"),
        (pl.DataFrame({"period": [0, 2], "alive": [10, 5]}), "column 'period': row 2: periods must be consecutive"),
    ],
)
def test_cohort_table_errors(frame, message):
    with pytest.raises(InputError, match=message):
        validate_cohort_table(frame)


def test_time_unit_conversion():
    assert convert_periods(1.0, "weeks", "days") == 7.0
    assert convert_periods(12.0, "months", "years") == pytest.approx(1.0)
    with pytest.raises(InputError, match="unknown time unit 'fortnights'"):
        convert_periods(1.0, "fortnights", "days")


@pytest.mark.parametrize(
    ("command", "content", "extra", "message"),
    [
        ("bgnbd", "frequency,recency,T\n1,2.0,3.0\n-1,0.0,3.0\n", [], "row 2: column 'frequency' must be 0 or more"),
        ("bgnbd", "frequency,recency,T\n1,4.0,3.0\n", [], "row 1: column 'recency' must not exceed T"),
        ("bgnbd", "frequency,recency\n1,2.0\n", [], "missing column 'T'"),
        ("bgnbd", "frequency,recency,T\nx,2.0,3.0\n", [], "column 'frequency' must be numeric; row 1"),
        ("bgnbd", "", [], "file is empty"),
        ("bgnbd", "frequency,recency,T\n1,2.0,3.0\n", ["--time-unit", "fortnights"], "unknown time unit"),
        ("gamma-gamma", "frequency,recency,T\n1,2.0,3.0\n", [], "missing column 'monetary_value'"),
        ("bgbb", "frequency,recency,T\n1,2.5,3\n", [], "column 'recency' must hold whole numbers"),
        ("sbg", "period,alive\n0,10\n1,12\n", [], "survivors cannot increase"),
        ("bgnbd", "frequency,recency,T\n1,2.0,3.0\n", ["--method", "nuts"], "unknown method 'nuts'"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, command, content, extra, message):
    data = tmp_path / "data.csv"
    data.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(fit_app, [command, str(data), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) <= 3  # one message, wrapped by the terminal at most
    assert not out.exists()


def test_gamma_gamma_from_a_log_leaves_out_zero_spend_repeat_buyers(tmp_path):
    """CDNOW's log has such a customer; the command names it, fits the others, and counts them."""
    rng = np.random.default_rng(3)
    rows = ["customer_id,date,amount"]
    for c in range(1, 61):
        for k in range(1 + c % 4):
            rows.append(f"{c},2020-01-{1 + 7 * k:02d},{0.0 if c == 7 else round(rng.gamma(6.0, 5.0), 2)}")
    data = tmp_path / "log.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(fit_app, ["gamma-gamma", str(data), "--out", str(out), "--method", "map"])
    assert result.exit_code == 0, result.output
    assert "1 repeat buyer(s) with zero mean spend left out (customer 7)" in " ".join(result.output.split())
    import json

    import arviz as az

    attrs = az.from_netcdf(out / "posterior.nc").attrs
    assert json.loads(attrs["tenure_data_summary"])["repeat_buyers"] == 44  # 45 repeat buyers less customer 7
