"""The customer panel: read, validate, carry scores forward, compress to sufficient statistics.

One row per customer per period while the customer is active (the format is in
``docs/models-panel.md``). Survey scores are discrete, so every likelihood in the
panel models depends on the rows only through counts per distinct covariate cell:

- the discrete-time hazard through *at-risk* rows and *events* (churns) per cell
  (segment, tenure band, trust, enthusiasm, satisfaction);
- the cross-selling Poisson through *exposure* (customer-periods), *events* (products
  added) and Σ log(y!) per cell (segment, trust, enthusiasm, products held).

:func:`hazard_cells` and :func:`count_cells` build these tables with one polars
group-by; fitting then costs O(cells), not O(rows).

Row numbers in error messages count data rows from 1 in file order (a CSV header
is not counted).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import gammaln

from tenure.errors import InputError
from tenure.io import read_table
from tenure.panel_format import (  # noqa: F401  (the format's names, re-exported for the panel models)
    ANSWER_COLUMNS,
    IMPORTANCE_COLUMNS,
    MISSING_POLICIES,
    NPS_SCALE,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SCORE_COLUMNS,
    SCORE_SCALE,
    SINGLE_SEGMENT,
    TENURE_BANDS,
    TRIM_COLUMNS,
    tenure_band_labels,
)

# -- reading and validation -----------------------------------------------------------


def read_panel(
    source: str | os.PathLike[str] | pl.DataFrame,
    *,
    segment_col: str | None = None,
    optional: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Read and validate a panel from CSV, Parquet or a polars frame.

    Parameters
    ----------
    source
        Path to a ``.csv`` or ``.parquet`` file, or a polars DataFrame.
    segment_col
        Column holding the segment. ``None`` uses ``segment`` if present, otherwise
        every customer is in one segment ``"all"``. A name given but absent is an error.
    optional
        Optional columns to keep and validate (from :data:`OPTIONAL_COLUMNS`); ``None``
        keeps all that are present. Only the columns kept are read from Parquet.

    Returns
    -------
    polars.DataFrame
        Sorted by (customer_id, period), with normalised types (period Int32, churned
        Boolean, scores Int8, counts Int32), a String column ``segment`` and a column
        ``tenure`` (periods since the customer's first row in the panel).

    Raises
    ------
    InputError
        Missing required columns, wrong types, duplicate (customer_id, period), rows
        after churn, negative counts, scores off their scale or an empty file; the
        message names the column and the first offending row.
    """
    where = "panel" if isinstance(source, pl.DataFrame) else str(source)
    seg = segment_col or "segment"
    keep_optional = [c for c in (OPTIONAL_COLUMNS if optional is None else optional) if c != "segment"]
    wanted = [*REQUIRED_COLUMNS, seg, *keep_optional]
    df = source if isinstance(source, pl.DataFrame) else _read(Path(source), wanted)
    if df.height == 0:
        raise InputError(f"{where}: file has no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{where}: missing required column {missing[0]!r} (required: {', '.join(REQUIRED_COLUMNS)})")
    if segment_col is not None and segment_col not in df.columns:
        raise InputError(f"{where}: --segment-col {segment_col!r}: no such column")
    if seg in df.columns:
        _check_segment_column(df, seg, where)
    present_optional = [c for c in keep_optional if c in df.columns]
    df = df.select([*REQUIRED_COLUMNS, *([seg] if seg in df.columns else []), *present_optional])
    df = df.with_row_index("_row", offset=1)
    return _validate(df, where, seg)


#: Columns that only :func:`read_panel` adds: a frame holding them has been validated.
_VALIDATED = frozenset({"_cust", "tenure"})


def as_panel(
    source: str | os.PathLike[str] | pl.DataFrame,
    *,
    segment_col: str | None = None,
    optional: Sequence[str] | None = None,
) -> pl.DataFrame:
    """``source`` validated as :func:`read_panel` does, unless it already is its output.

    This is what every panel model's constructor calls, so a raw frame in Python meets the
    checks of the command line: a bad frame raises :class:`~tenure.errors.InputError`
    naming the column and the first offending row.
    """
    if isinstance(source, pl.DataFrame) and _VALIDATED <= set(source.columns):
        return source
    if not isinstance(source, pl.DataFrame | str | os.PathLike):
        raise InputError(f"panel: expected a polars DataFrame or a file path, found {type(source).__name__}")
    return read_panel(source, segment_col=segment_col, optional=optional)


def _read(path: Path, wanted: Sequence[str]) -> pl.DataFrame:
    """Read a panel file; Parquet reads only the wanted columns."""
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file() and path.stat().st_size > 0:
        try:
            schema = pl.read_parquet_schema(path)
            cols = [c for c in schema if c in set(wanted)]
            return pl.read_parquet(path, columns=cols)
        except Exception as exc:  # polars raises several exception types for malformed files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: cannot read: {first}") from exc
    return read_table(path)


def _first_bad(df: pl.DataFrame, col: str, bad: pl.Series) -> tuple[int, Any]:
    """Row number and value of the first row flagged in ``bad`` (in file order)."""
    rows = df["_row"].filter(bad)
    i = int(rows.arg_min())
    return int(rows[i]), df[col].filter(bad)[i]


def _as_integer(df: pl.DataFrame, col: str, where: str, *, nullable: bool) -> pl.Series:
    """The column as Int64, or an error naming the first value that is not a whole number."""
    s = df[col]
    if s.dtype == pl.Boolean:
        raise InputError(f"{where}: column {col!r}: expected whole numbers, found true/false values")
    if s.dtype == pl.String:
        text = s.str.strip_chars()
        out = text.cast(pl.Int64, strict=False)
        bad = s.is_not_null() & (text != "") & out.is_null()
    elif s.dtype.is_float():
        out = s.cast(pl.Int64, strict=False)
        bad = s.is_not_null() & (s.is_nan() | s.is_infinite() | (s != s.round()) | out.is_null())
    elif s.dtype.is_integer():
        out = s.cast(pl.Int64, strict=False)  # beyond 64 bits becomes null, reported below
        bad = s.is_not_null() & out.is_null()
    elif s.dtype == pl.Null:
        out, bad = s.cast(pl.Int64), None
    else:
        raise InputError(f"{where}: column {col!r}: expected whole numbers, found type {s.dtype}")
    if bad is not None and bad.any():
        row, value = _first_bad(df, col, bad)
        raise InputError(f"{where}: column {col!r}: expected a whole number, found {value!r} at row {row}")
    if not nullable and out.null_count():
        row, _ = _first_bad(df, col, out.is_null())
        raise InputError(f"{where}: column {col!r}: missing value at row {row}")
    return out.alias(col)


def _in_range(df: pl.DataFrame, values: pl.Series, col: str, where: str, lo: float, hi: float | None,
              what: str) -> None:
    """Raise naming the first value outside [lo, hi]."""
    bad = (values < lo) if hi is None else ((values < lo) | (values > hi))
    bad = bad.fill_null(False)
    if bad.any():
        row, value = _first_bad(df.with_columns(values), col, bad)
        raise InputError(f"{where}: column {col!r}: {value} is {what} at row {row}")


def _as_bool(df: pl.DataFrame, col: str, where: str) -> pl.Series:
    """A Boolean column; 0/1 integers and true/false text are accepted."""
    s = df[col]
    if s.dtype == pl.Boolean:
        out, bad = s, None
    elif s.dtype.is_integer():
        bad = s.is_not_null() & ~s.is_in([0, 1])
        out = s.cast(pl.Boolean, strict=False)
    elif s.dtype == pl.String:
        low = s.str.strip_chars().str.to_lowercase()
        mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        out = low.replace_strict(mapping, default=None, return_dtype=pl.Boolean)
        bad = s.is_not_null() & out.is_null()
    else:
        raise InputError(f"{where}: column {col!r}: expected true/false, found type {s.dtype}")
    if bad is not None and bad.any():
        row, value = _first_bad(df, col, bad)
        raise InputError(f"{where}: column {col!r}: expected true/false, found {value!r} at row {row}")
    if out.null_count():
        row, _ = _first_bad(df, col, out.is_null())
        raise InputError(f"{where}: column {col!r}: missing value at row {row}")
    return out.alias(col)


def _check_segment_column(df: pl.DataFrame, seg: str, where: str) -> None:
    """A segment column holds labels: not a named panel column (ids, answers, counts), not numbers or true/false."""
    named = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    if seg != "segment" and seg in named:
        raise InputError(f"{where}: --segment-col {seg!r}: a panel column with its own meaning, not a segment")
    dtype = df[seg].dtype
    if dtype.is_float() or dtype == pl.Boolean:
        raise InputError(f"{where}: --segment-col {seg!r}: expected segment labels, found type {dtype}")


def _validate(df: pl.DataFrame, where: str, seg: str) -> pl.DataFrame:
    cid = df["customer_id"]
    if not (cid.dtype.is_integer() or cid.dtype == pl.String):
        raise InputError(f"{where}: column 'customer_id': expected integers or text, found type {cid.dtype}")
    if cid.null_count():
        row, _ = _first_bad(df, "customer_id", cid.is_null())
        raise InputError(f"{where}: column 'customer_id': missing value at row {row}")
    cols: list[pl.Series] = [cid]
    period = _as_integer(df, "period", where, nullable=False)
    cols.append(period.cast(pl.Int32))
    cols.append(_as_bool(df, "churned", where))
    for c in SCORE_COLUMNS:
        v = _as_integer(df, c, where, nullable=True)
        _in_range(df, v, c, where, *SCORE_SCALE, what=f"off the {SCORE_SCALE[0]}–{SCORE_SCALE[1]} scale")
        cols.append(v.cast(pl.Int8))
    products = _as_integer(df, "products", where, nullable=False)
    _in_range(df, products, "products", where, 1, None, what="below 1 (products held must be at least 1)")
    cols.append(products.cast(pl.Int32))
    xs = _as_integer(df, "cross_sold", where, nullable=False)
    _in_range(df, xs, "cross_sold", where, 0, None, what="a negative count")
    cols.append(xs.cast(pl.Int32))
    if seg in df.columns:
        s = df[seg].cast(pl.String)
        if s.null_count():
            row, _ = _first_bad(df, seg, s.is_null())
            raise InputError(f"{where}: column {seg!r}: missing segment at row {row}")
        cols.append(s.alias("segment"))
    else:
        cols.append(pl.repeat(SINGLE_SEGMENT, df.height, dtype=pl.String, eager=True).alias("segment"))
    if "nps" in df.columns:
        v = _as_integer(df, "nps", where, nullable=True)
        _in_range(df, v, "nps", where, *NPS_SCALE, what=f"off the {NPS_SCALE[0]}–{NPS_SCALE[1]} scale")
        cols.append(v.cast(pl.Int8))
    for c in TRIM_COLUMNS:
        if c in df.columns:
            v = _as_integer(df, c, where, nullable=True)
            _in_range(df, v, c, where, *SCORE_SCALE, what=f"off the {SCORE_SCALE[0]}–{SCORE_SCALE[1]} scale")
            cols.append(v.cast(pl.Int8))
    for c in (*IMPORTANCE_COLUMNS, "revenue"):
        if c in df.columns:
            cols.append(_as_float(df, c, where, positive=c != "revenue"))
    cols.append(df["_row"])
    out = pl.DataFrame(cols)
    if not _is_sorted(out):
        out = out.sort(["customer_id", "period"], maintain_order=True)
    return _check_sequence(out, where)


def _as_float(df: pl.DataFrame, col: str, where: str, *, positive: bool) -> pl.Series:
    s = df[col]
    if s.dtype == pl.String:
        out = s.str.strip_chars().cast(pl.Float64, strict=False)
        bad = s.is_not_null() & (s.str.strip_chars() != "") & out.is_null()
        if bad.any():
            row, value = _first_bad(df, col, bad)
            raise InputError(f"{where}: column {col!r}: expected a number, found {value!r} at row {row}")
    elif s.dtype.is_numeric() or s.dtype == pl.Null:
        out = s.cast(pl.Float64)
    else:
        raise InputError(f"{where}: column {col!r}: expected numbers, found type {s.dtype}")
    if positive:
        _in_range(df, out, col, where, np.nextafter(0.0, 1.0), None, what="not positive")
    return out.alias(col)


def _is_sorted(df: pl.DataFrame) -> bool:
    """True when rows are already ordered by (customer_id, period) with customers contiguous."""
    if df.height < 2:
        return True
    flags = df.select(
        cid_up=(pl.col("customer_id") >= pl.col("customer_id").shift(1)).all(),
        ok=((pl.col("customer_id") != pl.col("customer_id").shift(1))
            | (pl.col("period") >= pl.col("period").shift(1))).all(),
    )
    return bool(flags["cid_up"][0]) and bool(flags["ok"][0])


def _check_sequence(df: pl.DataFrame, where: str) -> pl.DataFrame:
    """Duplicate (customer_id, period) and rows after churn, on rows sorted by customer and period."""
    same = pl.col("customer_id") == pl.col("customer_id").shift(1)
    flags = df.select(
        dup=(same & (pl.col("period") == pl.col("period").shift(1))).fill_null(False),
        after=(same & pl.col("churned").shift(1)).fill_null(False),
        new=(~same).fill_null(True),
    )
    for name in ("dup", "after"):
        bad = flags[name]
        if not bad.any():
            continue
        rows = df["_row"].filter(bad)
        i = int(rows.arg_min())
        bad_rows = df.filter(bad)
        cust, per = bad_rows["customer_id"][i], bad_rows["period"][i]
        if name == "dup":
            raise InputError(f"{where}: columns 'customer_id', 'period': duplicate row for customer {cust!r}, "
                             f"period {per} at row {rows[i]}")
        raise InputError(f"{where}: column 'churned': customer {cust!r} churned earlier but has a row for "
                         f"period {per} at row {rows[i]}")
    return (df.with_columns(_new=flags["new"])
            .with_columns(tenure=(pl.col("period")
                                  - pl.when(pl.col("_new")).then(pl.col("period")).forward_fill()).cast(pl.Int32),
                          _cust=pl.col("_new").cum_sum().cast(pl.Int32))
            .drop("_new", "_row"))


# -- missing scores -------------------------------------------------------------------


@dataclass(frozen=True)
class MissingReport:
    """What happened to missing survey scores."""

    policy: str
    rows_in: int
    filled: int
    dropped_no_answer_yet: int
    dropped_missing: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for the data summary."""
        return dict(self.__dict__)


def prepare_scores(
    df: pl.DataFrame, columns: Sequence[str] = SCORE_COLUMNS, missing: str = "carry"
) -> tuple[pl.DataFrame, MissingReport]:
    """Fill or drop missing survey scores in ``columns``.

    ``"carry"`` (default) replaces a null score by the customer's last earlier answer
    (scores are measured only in surveyed periods and assumed to persist until the
    next answer). Rows before a customer's first answer have nothing to carry and are
    dropped: guessing from later answers would use the future. ``"drop"`` drops every
    row with a null score instead.
    """
    if missing not in MISSING_POLICIES:
        raise InputError(f"--missing: unknown policy {missing!r}; use one of {', '.join(MISSING_POLICIES)}")
    n = df.height
    any_null = pl.any_horizontal([pl.col(c).is_null() for c in columns])
    if missing == "drop":
        out = df.filter(~any_null)
        return out, MissingReport("drop", n, 0, 0, n - out.height)
    n_null_cells = int(df.select(pl.sum_horizontal([pl.col(c).is_null() for c in columns]).sum()).item())
    if "_cust" not in df.columns:
        df = df.with_columns(_cust=(pl.col("customer_id") != pl.col("customer_id").shift(1))
                             .fill_null(True).cum_sum().cast(pl.Int32))
    # A global forward fill is valid where the value it brings came from the same customer.
    filled = df.with_columns([
        pl.when(pl.when(pl.col(c).is_not_null()).then(pl.col("_cust")).forward_fill() == pl.col("_cust"))
        .then(pl.col(c).forward_fill()).otherwise(None).alias(c)
        for c in columns
    ])
    still = filled.select(pl.sum_horizontal([pl.col(c).is_null() for c in columns]).sum()).item()
    out = filled.filter(~pl.any_horizontal([pl.col(c).is_null() for c in columns]))
    return out, MissingReport("carry", n, n_null_cells - int(still), n - out.height, 0)


# -- sufficient statistics ------------------------------------------------------------


def _band_expr(bands: Sequence[int]) -> pl.Expr:
    return pl.sum_horizontal([(pl.col("tenure") >= b).cast(pl.Int8) for b in bands[1:]]).cast(pl.Int8)


@dataclass
class HazardCells:
    """At-risk rows and churn events per distinct (segment, tenure band, trust, enthusiasm, satisfaction).

    The Bernoulli log-likelihood of the rows equals Σ_cells [e·log p + (n − e)·log(1 − p)]
    with n at-risk rows and e events in a cell: an exact compression.
    """

    segment: np.ndarray
    band: np.ndarray
    trust: np.ndarray
    enthusiasm: np.ndarray
    satisfaction: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    segments: tuple[str, ...]
    bands: tuple[int, ...] = TENURE_BANDS
    n_customers: int = 0
    missing: dict[str, Any] = field(default_factory=dict)
    customer: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Customer-periods at risk."""
        return int(self.at_risk.sum())

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for the posterior's attributes."""
        return {
            "rows": self.n_rows, "customers": self.n_customers, "churn_events": int(self.events.sum()),
            "cells": int(self.at_risk.size), "segments": list(self.segments),
            "tenure_bands": tenure_band_labels(self.bands), "missing_scores": self.missing,
        }


@dataclass
class CountCells:
    """Exposure, products added and Σ log(y!) per distinct (segment, trust, enthusiasm, products held).

    The Poisson log-likelihood of the rows equals Σ_cells [Y·η − n·exp(η) − Σ log y!]
    with n customer-periods and Y products added in a cell: an exact compression.
    """

    segment: np.ndarray
    trust: np.ndarray
    enthusiasm: np.ndarray
    products: np.ndarray
    exposure: np.ndarray
    events: np.ndarray
    log_factorial: np.ndarray
    segments: tuple[str, ...]
    n_customers: int = 0
    missing: dict[str, Any] = field(default_factory=dict)
    customer: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Customer-periods observed."""
        return int(self.exposure.sum())

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for the posterior's attributes."""
        return {
            "rows": self.n_rows, "customers": self.n_customers, "products_added": int(self.events.sum()),
            "cells": int(self.exposure.size), "segments": list(self.segments), "missing_scores": self.missing,
        }


def _segment_index(names: pl.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    segments = tuple(sorted(names.unique().to_list()))
    lookup = {s: i for i, s in enumerate(segments)}
    return np.array([lookup[s] for s in names.to_list()], dtype=np.int64), segments


def hazard_cells(
    df: pl.DataFrame,
    bands: Sequence[int] = TENURE_BANDS,
    missing: str = "carry",
    by_customer: bool = False,
) -> HazardCells:
    """Compress a validated panel to at-risk rows and churn events per covariate cell.

    The only pass over the rows is one polars group-by (after the missing-score
    policy). ``by_customer`` adds the customer to the cell key (for the joint model)
    and stores each cell's customer number in ``customer``.
    """
    if not bands or bands[0] != 0 or list(bands) != sorted(set(bands)):
        raise InputError("tenure bands must start at 0 and increase")
    d, report = prepare_scores(df, SCORE_COLUMNS, missing)
    if d.height == 0:
        raise InputError("panel: no rows with survey scores left to fit")
    keys = ["segment", "band", *SCORE_COLUMNS, *(["_cust"] if by_customer else [])]
    g = (d.lazy().with_columns(band=_band_expr(bands))
         .group_by(keys).agg(at_risk=pl.len(), events=pl.col("churned").sum())
         .sort(keys).collect())
    seg, segments = _segment_index(g["segment"])
    cells = HazardCells(
        segment=seg, band=g["band"].to_numpy().astype(np.int64),
        trust=g["trust"].to_numpy().astype(float), enthusiasm=g["enthusiasm"].to_numpy().astype(float),
        satisfaction=g["satisfaction"].to_numpy().astype(float),
        at_risk=g["at_risk"].to_numpy().astype(float), events=g["events"].to_numpy().astype(float),
        segments=segments, bands=tuple(bands), n_customers=int(d["_cust"].n_unique()),
        missing=report.as_dict(),
    )
    if by_customer:
        cells.customer = g["_cust"].to_numpy().astype(np.int64)
    return cells


def hazard_rows(df: pl.DataFrame, bands: Sequence[int] = TENURE_BANDS, missing: str = "carry") -> HazardCells:
    """The uncompressed form of :func:`hazard_cells`: one cell per row (at_risk = 1)."""
    d, report = prepare_scores(df, SCORE_COLUMNS, missing)
    d = d.with_columns(band=_band_expr(bands))
    seg, segments = _segment_index(d["segment"])
    return HazardCells(
        segment=seg, band=d["band"].to_numpy().astype(np.int64),
        trust=d["trust"].to_numpy().astype(float), enthusiasm=d["enthusiasm"].to_numpy().astype(float),
        satisfaction=d["satisfaction"].to_numpy().astype(float), at_risk=np.ones(d.height),
        events=d["churned"].to_numpy().astype(float), segments=segments, bands=tuple(bands),
        n_customers=int(d["_cust"].n_unique()), missing=report.as_dict(),
    )


XSELL_COLUMNS = ("trust", "enthusiasm")


def count_cells(df: pl.DataFrame, missing: str = "carry", by_customer: bool = False) -> CountCells:
    """Compress a validated panel to exposure, products added and Σ log(y!) per covariate cell.

    One polars group-by over (cell, products added) gives the count of rows for each
    value y in each cell; exposure, Σ y and Σ log y! per cell follow exactly from
    that small table.
    """
    d, report = prepare_scores(df, XSELL_COLUMNS, missing)
    if d.height == 0:
        raise InputError("panel: no rows with survey scores left to fit")
    keys = ["segment", *XSELL_COLUMNS, "products", *(["_cust"] if by_customer else [])]
    g = (d.lazy().group_by([*keys, "cross_sold"]).agg(n=pl.len())
         .sort([*keys, "cross_sold"]).collect())
    y = g["cross_sold"].to_numpy().astype(float)
    n = g["n"].to_numpy().astype(float)
    key_frame = g.select(keys)
    starts = np.flatnonzero(np.r_[True, ~_rows_equal_previous(key_frame)])
    exposure = np.add.reduceat(n, starts)
    events = np.add.reduceat(n * y, starts)
    log_fact = np.add.reduceat(n * gammaln(y + 1.0), starts)
    first = key_frame[starts]
    seg, segments = _segment_index(first["segment"])
    cells = CountCells(
        segment=seg, trust=first["trust"].to_numpy().astype(float),
        enthusiasm=first["enthusiasm"].to_numpy().astype(float),
        products=first["products"].to_numpy().astype(float), exposure=exposure, events=events,
        log_factorial=log_fact, segments=segments, n_customers=int(d["_cust"].n_unique()),
        missing=report.as_dict(),
    )
    if by_customer:
        cells.customer = first["_cust"].to_numpy().astype(np.int64)
    return cells


def count_rows(df: pl.DataFrame, missing: str = "carry") -> tuple[CountCells, np.ndarray]:
    """The uncompressed form of :func:`count_cells` (exposure 1 per row) and each row's count."""
    d, report = prepare_scores(df, XSELL_COLUMNS, missing)
    seg, segments = _segment_index(d["segment"])
    y = d["cross_sold"].to_numpy().astype(float)
    cells = CountCells(
        segment=seg, trust=d["trust"].to_numpy().astype(float), enthusiasm=d["enthusiasm"].to_numpy().astype(float),
        products=d["products"].to_numpy().astype(float), exposure=np.ones(d.height), events=y,
        log_factorial=gammaln(y + 1.0), segments=segments, n_customers=int(d["_cust"].n_unique()),
        missing=report.as_dict(),
    )
    return cells, y


def _rows_equal_previous(frame: pl.DataFrame) -> np.ndarray:
    """For rows 1.., whether each row equals the one before on every column."""
    if frame.height < 2:
        return np.zeros(0, dtype=bool)
    eq = frame.select(pl.all_horizontal([pl.col(c) == pl.col(c).shift(1) for c in frame.columns]))
    return eq.to_series().to_numpy()[1:].astype(bool)


def covariate_sd(values: np.ndarray, weights: np.ndarray) -> float:
    """Standard deviation of a covariate over rows, from its cell values and row counts."""
    w = np.asarray(weights, dtype=float)
    mean = float(np.sum(w * values) / w.sum())
    return float(np.sqrt(np.sum(w * (values - mean) ** 2) / w.sum()))
