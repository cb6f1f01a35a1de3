"""Atomic output files and table reading shared by every command.

An interrupted run must never leave a file that looks whole but is not: every
writer here writes to a temporary name in the destination folder and renames it
into place (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from tenure.errors import InputError

TABLE_FORMATS = ("parquet", "csv")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_table(df: pl.DataFrame, path: str | os.PathLike[str], fmt: str = "parquet") -> Path:
    """Write a polars table atomically as Parquet (default) or CSV.

    The file suffix is set from ``fmt``; the final path is returned.
    """
    if fmt not in TABLE_FORMATS:
        raise InputError(f"--format: unknown format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    target = Path(path).with_suffix("." + fmt)
    if fmt == "parquet":
        return write_atomic(target, lambda p: df.write_parquet(p))
    return write_atomic(target, lambda p: df.write_csv(p))


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON atomically; NaN and infinities become null (JSON has neither)."""

    def _write(p: Path) -> None:
        p.write_text(json.dumps(json_safe(obj), indent=2, sort_keys=False, default=_json_default) + "\n")

    return write_atomic(path, _write)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) in nested dicts, lists and tuples replaced by None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_table(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a CSV or Parquet file into polars, with one-line errors naming the file.

    The format is chosen by suffix (``.parquet``/``.pq`` or ``.csv``/``.txt``).
    An empty or unreadable file raises :class:`~tenure.errors.InputError`.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a CSV or Parquet file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pl.read_parquet(p)
        elif suffix in (".csv", ".txt", ".tsv"):
            df = pl.read_csv(p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10_000)
        else:
            raise InputError(f"{p}: unknown file type {suffix!r}; use .csv or .parquet")
    except InputError:
        raise
    except Exception as exc:  # polars raises several exception types for malformed files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read: {first}") from exc
    if df.height == 0:
        raise InputError(f"{p}: file has no rows")
    return df


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` can hold outputs (a folder or nothing yet) and create it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out
