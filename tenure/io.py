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
import sys
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
    _check_writable_above(out, "--out")
    return out


def check_out_table(path: str | os.PathLike[str], what: str = "--out") -> tuple[Path, str]:
    """Fail before any work if ``path`` cannot be a table file: its format (by suffix) and a writable folder.

    Returns the path and its format, one of :data:`TABLE_FORMATS`.
    """
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    fmt = "parquet" if fmt == "pq" else fmt
    if fmt not in TABLE_FORMATS:
        raise InputError(f"{what} {out}: unknown table type {out.suffix or '(none)'!r}; use .parquet or .csv")
    _check_out_path(out, what, "a file name")
    return out, fmt


def _check_out_path(out: Path, what: str, expected: str) -> None:
    """``out`` is not a folder, and the nearest existing folder above it is a writable folder."""
    if out.is_dir():
        raise InputError(f"{what} {out}: is a folder, expected {expected}")
    _check_writable_above(out, what)


def _check_writable_above(out: Path, what: str) -> None:
    """The nearest existing folder above ``out`` is a folder this process can write to (probed)."""
    probe = out.absolute().parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{what} {out}: cannot write under {probe}: not a folder")
    if not os.access(probe, os.W_OK):
        raise InputError(f"{what} {out}: cannot write to {probe}")
    _probe_write(probe, f"{what} {out}")


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
_PREVIOUS = ".previous-"


def sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entries(folder: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": checksum}}`` for ``names`` in ``folder`` (default: every file in it)."""
    if names is None:
        names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256(folder / n)} for n in names}


def check_files(folder: Path, files: Any, listed_in: str) -> None:
    """Refuse, naming the first culprit, when a file listed with its size and SHA-256 is missing or changed.

    ``files`` is a manifest's ``files`` entry; ``listed_in`` names where the list comes from (for the message).
    """
    if not isinstance(files, dict) or not files:
        raise InputError(f"{listed_in}: no file list: not a tenure manifest")
    for name, entry in files.items():
        f = folder / name
        if not isinstance(entry, dict) or not {"bytes", "sha256"} <= entry.keys():
            raise InputError(f"{listed_in}: entry {name!r} has no size and checksum: not a tenure manifest")
        if not f.is_file():
            raise InputError(f"{f}: missing, yet listed in {listed_in}: the run's outputs are incomplete")
        if f.stat().st_size != entry["bytes"] or sha256(f) != entry["sha256"]:
            raise InputError(f"{f}: changed since the run wrote it (its size or SHA-256 differs from "
                             f"{listed_in})")


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``path`` lives: ``DIR/manifest.json`` for a run folder, ``m.manifest.json`` for
    a file set such as ``m.toml`` (:func:`run_files`)."""
    p = Path(path)
    return p / MANIFEST if p.is_dir() else p.with_name(f"{p.stem}.{MANIFEST}")


def verify_manifest(path: str | os.PathLike[str], *, required: bool = True) -> dict[str, Any] | None:
    """Check that a run's outputs are whole and unchanged; return the manifest.

    ``path`` is a run folder (written by :func:`run_folder`, its manifest is ``DIR/manifest.json``)
    or the main file of a file set (written by :func:`run_files`: ``m.toml`` with
    ``m.manifest.json`` beside it). Every file the manifest lists must be there with the size and
    SHA-256 recorded when the run finished, and for a file set ``path`` itself must be listed;
    files the manifest does not list are ignored. A run stopped part-way (even by SIGKILL in the
    middle of putting its files in place) or a file edited since fails here with
    :class:`~tenure.errors.InputError`, one line naming the file. Without a manifest the answer is
    an error when ``required``, else ``None`` (files made by hand or by the Python API, which writes
    no manifest, are then read as they are).

    Readers call it before reading: ``tenure decide MARKET``, ``tenure calibrate`` on fit folders,
    ``tenure.models.load`` on a fit folder, ``--resume``.
    """
    p = Path(path)
    man = manifest_path(p)
    if not man.is_file():
        if required:
            raise InputError(f"{p}: no manifest ({man.name} is missing): not a finished tenure run")
        return None
    try:
        doc = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{man}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    if not isinstance(doc, dict):
        raise InputError(f"{man}: not a tenure manifest")
    files = doc.get("files")
    if not p.is_dir() and isinstance(files, dict) and p.name not in files:
        raise InputError(f"{p}: not listed in {man}: the file set is incomplete or mixed")
    check_files(man.parent, files, str(man))
    return doc


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a staging folder's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_unfinished(parent: Path, name: str) -> list[Path]:
    """Remove the staging (and half-swapped previous) folders of killed runs for ``name`` in ``parent``.

    A run writes ``.NAME.staging-PID-*`` and, while it swaps, ``.NAME.previous-PID-*``; SIGKILL can leave
    them. Those of a process still running (another run into the same place) are left alone. Each
    removal is said in one line on stderr; the removed paths are returned.
    """
    removed = []
    for kind in (_PREVIOUS, _STAGING):
        for stale in sorted(parent.glob(f".{name}{kind}*")):
            pid = stale.name[len(f".{name}{kind}"):].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            if kind == _PREVIOUS and not (parent / name).exists() and _restore(stale, parent, name):
                print(f"restored the earlier {parent / name} that an unfinished run had set aside", file=sys.stderr)
                continue
            shutil.rmtree(stale, ignore_errors=True)
            what = "staging folder" if kind == _STAGING else "set-aside earlier outputs"
            print(f"removed an unfinished run's {what} {stale}", file=sys.stderr)
            removed.append(stale)
    return removed


def _restore(aside: Path, parent: Path, name: str) -> bool:
    """Put back the earlier outputs a run killed while swapping had set aside (the main file was still missing)."""
    if (aside / MANIFEST).is_file():  # a run folder, moved aside whole
        os.replace(aside, parent / name)
        return True
    if not (aside / name).is_file():  # a file set moves its main file aside first
        return False
    for f in sorted(aside.iterdir(), key=lambda f: f.name == name):  # the main file back last
        os.replace(f, parent / f.name)
    aside.rmdir()
    return True


def _staging(parent: Path, name: str) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{name}{_STAGING}{os.getpid()}-", dir=parent))
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def _manifest(command: str, meta: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
    from tenure import __version__

    return {"command": command, "tenure_version": __version__, **meta, "files": files,
            "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


@contextlib.contextmanager
def run_folder(path: str | os.PathLike[str], command: str, **meta: Any) -> Iterator[Path]:
    """Stage a run's outputs and put them in place only when the run has finished.

    Yields a staging folder beside ``path`` to write into. On success a
    ``manifest.json`` (command, tenure version, ``meta`` such as the seed, every
    file with its size and SHA-256, finish time) is added and the staging folder
    replaces ``path``: afterwards ``path`` holds exactly this run, and files of an
    earlier run that this one did not write are gone. On any exception (an input
    error, an interrupt) the staging folder is removed and ``path`` is untouched.
    A staging folder left by a killed run is removed by the next run in that place
    (:func:`remove_unfinished`). :func:`verify_manifest` checks the folder later.
    """
    from tenure.interrupt import pause_point

    out = check_out_dir(path)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_unfinished(parent, out.name)
    staging = _staging(parent, out.name)
    try:
        yield staging
        pause_point("staged")
        write_json(_manifest(command, meta, file_entries(staging)), staging / MANIFEST)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the folder ``out`` by ``staging``: two renames, the old run deleted only after."""
    from tenure.interrupt import pause_point

    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{_PREVIOUS}{os.getpid()}-", dir=out.absolute().parent))
    old.rmdir()
    os.replace(out, old)
    try:
        pause_point("swapping")
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_out_set(path: str | os.PathLike[str], suffix: str) -> Path:
    """Fail before any work if ``path`` cannot be the main file of a file set (see :func:`run_files`)."""
    out = Path(path)
    if out.suffix != suffix:
        raise InputError(f"--out {out}: the file must end in {suffix}")
    _check_out_path(out, "--out", f"a {suffix} file name")
    return out


@contextlib.contextmanager
def run_files(path: str | os.PathLike[str], command: str, **meta: Any) -> Iterator[Path]:
    """Stage a file set ``m.toml``, ``m.*`` and replace the earlier set as one (the twin of :func:`run_folder`).

    Yields a staging folder beside ``path``; write the set there under the final names
    (``staging / path.name`` and its sidecars, whatever they are). When the block ends
    without error a manifest ``m.manifest.json`` (command, version, ``meta``, every
    file with its size and SHA-256, finish time) is added and the set is swapped in:
    the earlier set (the files its manifest lists, and any file the new set replaces)
    is moved aside, the new set moved in (its manifest first, so that a set caught
    half-way never passes :func:`verify_manifest`), and the earlier set deleted.
    Afterwards exactly the new set is there: a sidecar of the earlier set that the
    new run does not write is gone, other files in the folder are untouched. On any
    exception before or during the swap (bad input, SIGINT, SIGTERM, a full disk)
    the earlier set is left, or put back, byte for byte.
    """
    from tenure.interrupt import pause_point

    out = Path(path)
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_unfinished(parent, out.name)
    staging = _staging(parent, out.name)
    try:
        yield staging
        pause_point("staged")
        man = manifest_path(staging / out.name).name
        new = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != man)
        if out.name not in new:
            raise RuntimeError(f"run_files: the run wrote no {out.name}")
        write_json(_manifest(command, meta, file_entries(staging, new)), staging / man)
        # the manifest in first and the main file last: whenever the main file is there, so is the whole set
        _swap_set(staging, parent, out, [man, *[n for n in new if n != out.name], out.name])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previous_set(parent: Path, out: Path, new: list[str]) -> list[str]:
    """The files of the set now in place: those its manifest lists, its manifest, and any the new set replaces."""
    names = {n for n in new if (parent / n).is_file()}
    man = manifest_path(parent / out.name)
    if man.is_file():
        names.add(man.name)
        try:
            listed = json.loads(man.read_text(encoding="utf-8")).get("files", {})
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            listed = {}
        names |= {n for n in listed if isinstance(n, str) and "/" not in n and (parent / n).is_file()}
    return sorted(names)


def _swap_set(staging: Path, parent: Path, out: Path, new: list[str]) -> None:
    """Move the earlier set aside (main file first), the new one in (manifest first, main file last), then
    delete the earlier one: a reader finds no main file, or a main file with the manifest of its own set.

    SIGKILL part-way leaves the set-aside folder, which the next run puts back (:func:`remove_unfinished`).
    An exception part-way puts the earlier set back, with SIGINT and SIGTERM held off meanwhile.
    """
    import signal

    from tenure.interrupt import pause_point

    old = sorted(_previous_set(parent, out, new), key=lambda n: n != out.name)  # the main file aside first
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}{_PREVIOUS}{os.getpid()}-", dir=parent))
    moved: list[str] = []
    placed: list[str] = []
    try:
        for n in old:
            os.replace(parent / n, aside / n)
            moved.append(n)
        pause_point("swapping")
        for n in new:
            os.replace(staging / n, parent / n)
            placed.append(n)
    except BaseException:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for n in placed:
                (parent / n).unlink(missing_ok=True)
            for n in moved:
                os.replace(aside / n, parent / n)
            shutil.rmtree(aside, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    shutil.rmtree(aside, ignore_errors=True)
