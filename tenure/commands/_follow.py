"""The I/O of `tenure alarm`: feedback sources, alert records, the --follow loop, its cursor and the webhook.

Sources: a CSV or Parquet file; an append-only folder of such files (read in name order; a writer
should write each file under a temporary name starting with '.' and rename it into place); or a
table of an SQLite database (``.db``, ``.sqlite``, ``.sqlite3``; rows read in ``rowid`` order).

``--follow`` keeps reading the source. Each poll reads what is new, raises the alarms, appends them
to ``alerts.jsonl`` (flushed and synced), then saves the cursor (what has been read, and the
detector's state) atomically. A run killed between the two writes repeats the poll on restart and
regenerates the same alerts with the same ids: ids already in ``alerts.jsonl`` are skipped, so no
alert is lost or doubled. With ``--webhook URL`` a thread posts each line of ``alerts.jsonl`` in
order, retrying with exponential back-off; its progress (a byte offset) is saved in
``webhook.json``, so alerts not yet delivered are posted after a restart, and the stream never waits
for the webhook.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tenure.errors import InputError
from tenure.io import read_table, write_atomic, write_json

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
ALERTS_FILE = "alerts.jsonl"
CURSOR_FILE = "cursor.npz"
WEBHOOK_FILE = "webhook.json"
#: Rows read from a database per poll at most (a long backlog is read in several polls).
DB_BATCH_ROWS = 500_000


# -- sources -----------------------------------------------------------------------------


@dataclass
class Source:
    """Where feedback events come from; ``read_new(cursor)`` returns new raw rows, their label and the new cursor."""

    path: Path
    table: str = "feedback"
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        p = self.path
        if p.is_dir():
            self.kind = "folder"
        elif p.suffix.lower() in SQLITE_SUFFIXES:
            self.kind = "sqlite"
        elif p.suffix.lower() in TABLE_SUFFIXES:
            self.kind = "file"
        else:
            raise InputError(f"{p}: expected a .csv or .parquet file, a folder of them, or an SQLite database "
                             f"({', '.join(SQLITE_SUFFIXES)})")
        if self.kind != "folder" and not p.exists():
            raise InputError(f"{p}: file not found")
        if self.kind == "sqlite":
            self._check_table()

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error as exc:
            raise InputError(f"{self.path}: cannot open the database: {exc}") from None

    def _check_table(self) -> None:
        with self._connect() as con:
            try:
                con.execute(f'SELECT * FROM "{self.table}" LIMIT 0')
            except sqlite3.Error:
                raise InputError(f"{self.path}: no table {self.table!r} (--table)") from None

    def initial_cursor(self) -> dict[str, Any]:
        """The cursor before anything is read."""
        return {"kind": self.kind, "files": [], "rowid": 0}

    def read_new(self, cursor: dict[str, Any]) -> Iterator[tuple[pl.DataFrame, str, dict[str, Any]]]:
        """The new rows since ``cursor`` as raw frames, each with where it came from and the cursor after it."""
        if self.kind == "file":
            if not cursor["files"]:
                yield read_table(self.path), str(self.path), {**cursor, "files": [self.path.name]}
            return
        if self.kind == "folder":
            done = set(cursor["files"])
            names = sorted(p.name for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in TABLE_SUFFIXES and p.name not in done)
            files = list(cursor["files"])
            for name in names:
                files.append(name)
                yield read_table(self.path / name), str(self.path / name), {**cursor, "files": list(files)}
            return
        with self._connect() as con:
            cur = con.execute(f'SELECT rowid, * FROM "{self.table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
                              (int(cursor["rowid"]), DB_BATCH_ROWS))
            rows = cur.fetchall()
            names = [d[0] for d in cur.description]
        if rows:
            columns = list(zip(*rows, strict=True))
            frame = pl.DataFrame({n: list(c) for n, c in zip(names[1:], columns[1:], strict=True)},
                                 infer_schema_length=None)
            yield frame, f"{self.path}:{self.table}", {**cursor, "rowid": int(columns[0][-1])}


# -- alert records -----------------------------------------------------------------------


def _iso(ts: Any) -> str:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else ""


def alert_records(individual: pl.DataFrame, aggregate: pl.DataFrame, first_event: int = 0) -> list[dict[str, Any]]:
    """The alerts as JSON records in event order, each with a stable ``id`` (its kind and stream position)."""
    out = []
    for r in individual.iter_rows(named=True):
        seq = first_event + int(r["event"])
        rec = {"id": f"individual:{seq}", "kind": "individual", "event": seq, "timestamp": _iso(r["timestamp"]),
               "customer_id": r["customer_id"], "touchpoint": r["touchpoint"], "reason": r["reason"],
               "nps": r["nps"], "satisfaction": r["satisfaction"], "complaint": r["complaint"]}
        if "segment" in r:
            rec["segment"] = r["segment"]
        if r.get("value_at_risk") is not None:
            rec["value_at_risk"], rec["call_rank"] = r["value_at_risk"], r["call_rank"]
        out.append(rec)
    for r in aggregate.iter_rows(named=True):
        seq = int(r["event"])
        out.append({"id": f"aggregate:{seq}:{r['group_by']}:{r['group']}:{r['metric']}", "kind": "aggregate",
                    "event": seq, "timestamp": _iso(r["timestamp"]), "group_by": r["group_by"], "group": r["group"],
                    "metric": r["metric"], "probability": r["probability"], "current": r["current"],
                    "baseline": r["baseline"]})
    return sorted(out, key=lambda a: (a["event"], a["kind"] != "individual"))


def json_line(record: dict[str, Any]) -> str:
    """One alert as a JSON line (numbers as numbers, ids of any type as JSON values)."""
    return json.dumps(record, default=lambda o: o.item() if isinstance(o, np.generic) else str(o),
                      separators=(",", ":")) + "\n"


class AlertLog:
    """``alerts.jsonl``: appended, synced; the ids already in it are never written again.

    A line left half-written by a killed run is cut off when the log is opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with path.open("r+b") as f:
                    f.truncate(end)
            for line in data[:end].splitlines():
                if line.strip():
                    self.ids.add(json.loads(line)["id"])

    def append(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the records not written before; returns them."""
        new = [r for r in records if r["id"] not in self.ids]
        if new:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(json_line(r) for r in new))
                f.flush()
                os.fsync(f.fileno())
            self.ids.update(r["id"] for r in new)
        return new


# -- the cursor --------------------------------------------------------------------------


def save_cursor(path: Path, cursor: dict[str, Any], detector_state: dict[str, np.ndarray]) -> None:
    """The cursor (JSON) and the detector's arrays in one file, replaced atomically."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, cursor=np.array(json.dumps(cursor)), **detector_state)

    write_atomic(path, write)


def load_cursor(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The saved cursor and detector state, or ``None`` when there is none."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files if k != "cursor"}
            return json.loads(str(data["cursor"])), state
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: not a cursor of tenure alarm ({exc}); remove it to start from the beginning") \
            from None


# -- the webhook -------------------------------------------------------------------------


class Webhook(threading.Thread):
    """Posts each line of ``alerts.jsonl`` to ``url`` as JSON, in order, retrying with back-off.

    A refused or timed-out post is retried after 0.5, 1, 2, ... seconds (at most ``max_backoff``);
    the lines stay in ``alerts.jsonl`` meanwhile, and the delivered offset is saved after each post.
    """

    def __init__(self, url: str, folder: Path, warn: Callable[[str], None], *, timeout: float = 5.0,
                 max_backoff: float = 30.0) -> None:
        super().__init__(daemon=True, name="tenure-webhook")
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--webhook: expected an http:// or https:// URL, got {url!r}")
        self.url, self.log, self.state = url, folder / ALERTS_FILE, folder / WEBHOOK_FILE
        self.warn, self.timeout, self.max_backoff = warn, timeout, max_backoff
        self.stop = threading.Event()
        self.delivered = 0
        if self.state.exists():
            try:
                saved = json.loads(self.state.read_text())
                self.delivered = int(saved["delivered_bytes"]) if saved.get("url") == url else 0
            except (ValueError, KeyError, TypeError):
                self.delivered = 0

    def _post(self, line: bytes) -> None:
        req = urllib.request.Request(self.url, data=line, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            if not 200 <= resp.status < 300:
                raise urllib.error.HTTPError(self.url, resp.status, "not a 2xx answer", resp.headers, None)

    def pending(self) -> bool:
        """Whether lines of the log are not yet delivered."""
        return self.log.exists() and self.log.stat().st_size > self.delivered

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            if not self.pending():
                self.stop.wait(0.05)
                continue
            with self.log.open("rb") as f:
                f.seek(self.delivered)
                line = f.readline()
            if not line.endswith(b"\n"):
                self.stop.wait(0.05)
                continue
            try:
                self._post(line.rstrip(b"\n"))
            except (OSError, urllib.error.URLError, ValueError) as exc:
                failures += 1
                delay = min(0.5 * 2 ** (failures - 1), self.max_backoff)
                if failures == 1 or failures % 10 == 0:
                    self.warn(f"--webhook {self.url}: {getattr(exc, 'reason', exc)}; retrying in {delay:g} s "
                              f"(attempt {failures}); alerts are kept in {ALERTS_FILE}")
                self.stop.wait(delay)
                continue
            failures = 0
            self.delivered += len(line)
            write_json({"url": self.url, "delivered_bytes": self.delivered}, self.state)
