"""Reading a run folder for its report: what kind of run it is, checked against its manifest.

A run folder (:func:`tenure.io.run_folder`) carries ``manifest.json``: the command, the
tenure version and every file with its size and SHA-256. Before a report is drawn from a
folder every listed file must be present with that size and checksum, and neither the
manifest's tenure version nor a JSON file's ``schema_version`` may be newer than this
release reads; otherwise :class:`~tenure.errors.InputError` names the file (exit code 2).
A calibrated market (``m.toml`` with ``m.calibration.json`` beside it) is a file set, not a
folder: it has no manifest, and its JSON files are checked for being whole and readable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenure.errors import InputError
from tenure.io import MANIFEST

#: The newest ``schema_version`` this release reads, per JSON file of a run folder.
SCHEMA_VERSIONS = {"compare.json": 1, "uncertainty.json": 1, "replications.json": 1, "calibration.json": 1}

#: The report file of a run folder; a calibrated market ``m.toml`` gets ``m.report.html`` beside it.
REPORT = "report.html"

#: Kinds of report, by the command recorded in the manifest.
KINDS = {"tenure simulate": "simulate", "tenure compare": "compare", "tenure decide": "decide",
         "tenure evaluate": "evaluate"}


@dataclass
class Run:
    """A checked run: its kind, where it lies, its manifest and the files it holds."""

    kind: str
    path: Path
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    def json(self, name: str) -> dict[str, Any]:
        """A JSON file of the run, read (already checked whole)."""
        return read_json(self.files[name])

    def report_path(self) -> Path:
        """Where this run's report goes."""
        if self.kind == "calibrate":
            return self.path.with_name(self.path.stem + ".report.html")
        return self.path / REPORT


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for p in str(v).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or one line naming the file; a ``schema_version`` newer than known refused."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {str(exc).splitlines()[0]} (partly written or corrupted?)") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    known = next((v for k, v in SCHEMA_VERSIONS.items() if path.name.endswith(k)), None)
    version = doc.get("schema_version")
    if known is not None and isinstance(version, int) and version > known:
        raise InputError(f"{path}: schema version {version} is newer than this tenure reads ({known}); "
                         "upgrade tenure")
    return doc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_run(path: str | Path) -> Run:
    """The run in ``path`` (a run folder, or a calibrated market ``.toml``), checked; InputError otherwise."""
    from tenure import __version__

    p = Path(path)
    if p.suffix == ".toml" or p.name.endswith(".calibration.json"):
        return _open_calibration(p)
    if not p.exists():
        raise InputError(f"{p}: not found")
    if not p.is_dir():
        raise InputError(f"{p}: not a run folder nor a calibrated market (.toml)")
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise InputError(f"{mpath}: no run here (no manifest; a folder written by tenure simulate, compare, "
                         "decide, fit or evaluate has one)")
    manifest = read_json(mpath)
    version = manifest.get("tenure_version")
    if not isinstance(version, str) or not isinstance(manifest.get("files"), dict):
        raise InputError(f"{mpath}: not a tenure manifest (no tenure_version or files)")
    if _version_tuple(version) > _version_tuple(__version__):
        raise InputError(f"{mpath}: written by tenure {version}, newer than this tenure {__version__}; upgrade tenure")
    files: dict[str, Path] = {}
    for name, rec in manifest["files"].items():
        f = p / name
        if not f.is_file():
            raise InputError(f"{f}: listed in the manifest but missing (partly written run?)")
        if not isinstance(rec, dict) or f.stat().st_size != rec.get("bytes") or _sha256(f) != rec.get("sha256"):
            raise InputError(f"{f}: size or checksum differs from the manifest (corrupted or changed since the run)")
        files[name] = f
    for name in files:
        if name.endswith(".json"):
            read_json(files[name])  # the schema version of every JSON file
    command = str(manifest.get("command", ""))
    if command.startswith("tenure fit"):
        kind = "fit"
    elif command == "tenure simulate" and "replications.json" in files:
        kind = "replications"
    else:
        kind = KINDS.get(command, "")
    if not kind:
        raise InputError(f"{mpath}: no report for the command {command!r}")
    return Run(kind, p, manifest, files)


def _open_calibration(p: Path) -> Run:
    """A calibrated market file set: ``m.toml``, ``m.calibration.json``, ``m.draws.csv``, ``m.check.png``."""
    stem = p.name.removesuffix(".calibration.json") if p.name.endswith(".calibration.json") else p.stem
    toml = p.with_name(stem + ".toml")
    files = {"market.toml": toml, "calibration.json": p.with_name(stem + ".calibration.json"),
             "draws.csv": p.with_name(stem + ".draws.csv"), "check.png": p.with_name(stem + ".check.png")}
    for key in ("market.toml", "calibration.json"):
        if not files[key].is_file():
            raise InputError(f"{files[key]}: not found (a calibrated market has its .calibration.json beside it)")
    doc = read_json(files["calibration.json"])
    for key in ("parameters", "statistics"):
        if key not in doc:
            raise InputError(f"{files['calibration.json']}: no {key!r} (partly written or not a calibration)")
    present = {k: v for k, v in files.items() if v.is_file()}
    return Run("calibrate", toml, {"command": "tenure calibrate"}, present)
