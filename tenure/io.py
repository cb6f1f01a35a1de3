"""Atomic output files and table reading shared by every command.

An interrupted run must never leave a file that looks whole but is not: every
writer here writes to a temporary name in the destination folder and renames it
into place (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
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
        # mkstemp creates the file readable by its owner only; a result gets the normal permissions
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """Fail before any work if ``path`` cannot be a run folder (a folder, or nothing yet)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: cannot write under {parent}: not a folder")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--out {out}: cannot write to {parent}")
    _probe_write(parent, f"--out {out}")
    return out


def check_out_file(path: str | os.PathLike[str], what: str = "--out") -> tuple[Path, str]:
    """Fail before any work if ``path`` cannot be a table file: its format (by suffix) and a writable folder.

    Returns the path and its format, one of :data:`TABLE_FORMATS`.
    """
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    fmt = "parquet" if fmt == "pq" else fmt
    if fmt not in TABLE_FORMATS:
        raise InputError(f"{what} {out}: unknown table type {out.suffix or '(none)'!r}; use .parquet or .csv")
    if out.is_dir():
        raise InputError(f"{what} {out}: is a folder, expected a file name")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"{what} {out}: cannot write to {parent}")
    _probe_write(parent, f"{what} {out}")
    return out, fmt


def _probe_write(folder: Path, what: str) -> None:
    """Write and remove a small file in ``folder``: a read-only or full file system fails here, before any work."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tenure-probe-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"{what}: cannot write to {folder}: {exc.strerror or exc}") from None


MANIFEST = "manifest.json"

#: What legitimately differs between two runs with the same inputs and seed: wall-clock fields of
#: run.json, manifest.json and the reports, and the creation time ArviZ stamps on a posterior (so the
#: manifest's checksums of those files differ; their contents are compared); a figure's
#: bytes may differ too: figures are not results.
#: The reproducibility test compares everything else (README, "Reproducibility").
NOT_REPRODUCIBLE = frozenset({
    "finished_at", "elapsed_seconds", "wall_seconds", "checkpoint_seconds", "shard_step_seconds",
    "customer_periods_per_second", "seconds", "timings",
})
_STAGING = ".staging-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def run_folder(path: str | os.PathLike[str], command: str, **meta: Any) -> Iterator[Path]:
    """Stage a run's outputs and put them in place only when the run has finished.

    Yields a staging folder beside ``path`` to write into. On success a
    ``manifest.json`` (command, tenure version, ``meta`` such as the seed, every
    file with its size and SHA-256, finish time) is added and the staging folder
    replaces ``path``: afterwards ``path`` holds exactly this run, and files of an
    earlier run that this one did not write are gone. On any exception (an input
    error, an interrupt) the staging folder is removed and ``path`` is untouched.
    A staging folder left by a killed run is removed by the next run in that place.
    """
    from tenure import __version__

    out = check_out_dir(path)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{out.name}{_STAGING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{_STAGING}", dir=parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "command": command,
            "tenure_version": __version__,
            **meta,
            "files": {str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files},
            "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        write_json(manifest, staging / MANIFEST)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the folder ``out`` by ``staging``: two renames, the old run deleted only after."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.absolute().parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
