"""The panel reader: validation at the boundary, carry-forward, exact compression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from panelgen import simulate_panel
from tenure.models.panel import (
    count_cells,
    count_rows,
    hazard_cells,
    hazard_rows,
    prepare_scores,
    read_panel,
    tenure_band_labels,
)
from typer.testing import CliRunner

import tenure.commands.fit_panel  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app
from tenure.errors import InputError


def tiny_panel() -> pl.DataFrame:
    """Two customers; customer 1 churns at period 3, customer 2 is still active."""
    return pl.DataFrame({
        "customer_id": [1, 1, 1, 1, 2, 2],
        "period": [0, 1, 2, 3, 2, 3],
        "churned": [False, False, False, True, False, False],
        "trust": [None, 4, None, 2, 3, None],
        "enthusiasm": [3, 3, None, 2, 5, 5],
        "satisfaction": [4, 4, 4, None, 2, 2],
        "products": [1, 1, 2, 2, 1, 1],
        "cross_sold": [0, 1, 0, 0, 0, 2],
        "segment": ["a", "a", "a", "a", "b", "b"],
    }, schema_overrides={"trust": pl.Int64, "enthusiasm": pl.Int64, "satisfaction": pl.Int64})


def test_read_sorts_normalises_and_counts_tenure(tmp_path: Path) -> None:
    df = tiny_panel().reverse()
    df.write_csv(tmp_path / "p.csv")
    df.write_parquet(tmp_path / "p.parquet")
    from_csv = read_panel(tmp_path / "p.csv")
    from_parquet = read_panel(tmp_path / "p.parquet")
    assert from_csv.equals(from_parquet)
    assert from_csv["period"].to_list() == [0, 1, 2, 3, 2, 3]
    # Tenure counts periods since the customer's first row in the panel.
    assert from_csv["tenure"].to_list() == [0, 1, 2, 3, 0, 1]
    assert from_csv.schema["trust"] == pl.Int8 and from_csv.schema["churned"] == pl.Boolean


def test_no_segment_column_means_one_segment() -> None:
    out = read_panel(tiny_panel().drop("segment"))
    assert out["segment"].unique().to_list() == ["all"]


def test_carry_forward_stays_within_customer_and_drops_rows_before_first_answer() -> None:
    panel = read_panel(tiny_panel())
    filled, report = prepare_scores(panel)
    # Customer 1, period 0 has no trust answer yet: dropped, not back-filled from the future.
    assert filled.filter(pl.col("customer_id") == 1)["period"].to_list() == [1, 2, 3]
    assert filled.filter(pl.col("customer_id") == 1)["trust"].to_list() == [4, 4, 2]
    assert filled.filter(pl.col("customer_id") == 1)["satisfaction"].to_list() == [4, 4, 4]
    # Customer 2's missing trust comes from customer 2 (3), never from customer 1 (2).
    assert filled.filter(pl.col("customer_id") == 2)["trust"].to_list() == [3, 3]
    assert report.dropped_no_answer_yet == 1
    # Missing cells: trust ×3, enthusiasm ×1, satisfaction ×1; one (trust, period 0) stays missing.
    assert report.filled == 4


def test_drop_policy_drops_every_row_with_a_missing_score() -> None:
    dropped, report = prepare_scores(read_panel(tiny_panel()), missing="drop")
    assert dropped.height == 2 and report.dropped_missing == 4


def test_compression_keeps_every_row_and_event() -> None:
    df, _ = simulate_panel(400, 30, seed=11)
    panel = read_panel(df)
    cells, rows = hazard_cells(panel), hazard_rows(panel)
    assert cells.n_rows == rows.n_rows == panel.height
    assert cells.events.sum() == rows.events.sum() == panel["churned"].sum()
    # 3 segments × 5 bands × 125 score triples bound the cell count, whatever the rows.
    assert cells.at_risk.size <= 3 * 5 * 125 < panel.height
    xs, xrows = count_cells(panel), count_rows(panel)[0]
    assert xs.events.sum() == xrows.events.sum() == panel["cross_sold"].sum()
    np.testing.assert_allclose(xs.log_factorial.sum(), xrows.log_factorial.sum(), rtol=1e-12)


def test_tenure_band_labels() -> None:
    assert tenure_band_labels() == ["0-2", "3-5", "6-11", "12-23", "24+"]


def _csv_with(tmp_path: Path, frame: pl.DataFrame) -> Path:
    path = tmp_path / "panel.csv"
    frame.write_csv(path)
    return path


def _set(frame: pl.DataFrame, col: str, row: int, value: object) -> pl.DataFrame:
    """Replace one value (0-based row) and let the column become text if needed."""
    values = frame[col].to_list()
    values[row] = value
    dtype = pl.String if isinstance(value, str) else pl.Float64 if isinstance(value, float) else frame.schema[col]
    return frame.with_columns(pl.Series(col, values, dtype=dtype, strict=False))


# (mutation, words the message must contain: the column and the first offending row, 1-based)
CASES = {
    "missing column": (lambda f: f.drop("enthusiasm"), ["'enthusiasm'", "missing required column"]),
    "wrong type": (lambda f: _set(f, "trust", 2, "high"), ["'trust'", "'high'", "row 3"]),
    "wrong type bool": (lambda f: _set(f, "churned", 1, "maybe"), ["'churned'", "row 2"]),
    "fractional period": (lambda f: _set(f, "period", 4, 2.5), ["'period'", "2.5", "row 5"]),
    "duplicate": (lambda f: _set(f, "period", 5, 2), ["'customer_id', 'period'", "duplicate", "row 6"]),
    "row after churn": (lambda f: _set(f, "churned", 1, True), ["'churned'", "period 2", "row 3"]),
    "negative count": (lambda f: _set(f, "cross_sold", 3, -1), ["'cross_sold'", "negative", "row 4"]),
    "no products": (lambda f: _set(f, "products", 4, 0), ["'products'", "row 5"]),
    "score off scale": (lambda f: _set(f, "satisfaction", 1, 7), ["'satisfaction'", "1–5", "row 2"]),
    "missing id": (lambda f: _set(f, "customer_id", 2, None), ["'customer_id'", "row 3"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_errors_exit_2_name_column_and_row_write_nothing(tmp_path: Path, case: str) -> None:
    mutate, words = CASES[case]
    path = _csv_with(tmp_path, mutate(tiny_panel()))
    out = tmp_path / "out"
    result = CliRunner().invoke(fit_app, ["retention", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in result.output
    assert not out.exists()


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header = tmp_path / "header.csv"
    header.write_text(",".join(tiny_panel().columns) + "\n")
    for path, words in ((empty, "file is empty"), (header, "no rows")):
        result = CliRunner().invoke(fit_app, ["retention", str(path), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and words in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_optional_columns_validated_when_used() -> None:
    bad = tiny_panel().with_columns(nps=pl.Series([1, 2, 11, 3, 4, 5]))
    with pytest.raises(InputError, match=r"column 'nps': 11 is off the 0–10 scale at row 3"):
        read_panel(bad, optional=("nps",))
    read_panel(bad, optional=())  # retention does not read nps


def test_unknown_segment_column() -> None:
    with pytest.raises(InputError, match="--segment-col 'region'"):
        read_panel(tiny_panel(), segment_col="region")
