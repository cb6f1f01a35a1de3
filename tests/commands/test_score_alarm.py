"""`tenure score` and `tenure alarm` on the command line: fits, a simulated stream with a known change,
--follow killed and restarted on a folder and on an SQLite table, the webhook against a local server."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tenure.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "models"))
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SMALL_RULES = """
complaint = true
[touchpoints.call_centre]
nps_max = 2
[touchpoints.shop]
nps_max = 2
[aggregate]
window = 50
baseline = 300
"""


def _one_line_error(res, needle):
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


# -- score ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fit_dirs(tmp_path_factory):
    from panelgen import simulate_panel

    d = tmp_path_factory.mktemp("fits")
    panel, _ = simulate_panel(800, 18, seed=4)
    panel.write_parquet(d / "panel.parquet")
    for family in ("retention", "cross-sell"):
        res = runner.invoke(app, ["fit", family, str(d / "panel.parquet"), "-o", str(d / family), "--method", "map",
                                  "--draws", "40", "--chains", "2"])
        assert res.exit_code == 0, res.output
    rng = np.random.default_rng(0)
    n = 300
    pl.DataFrame({"customer_id": np.arange(n), "trust": rng.integers(1, 6, n), "enthusiasm": rng.integers(1, 6, n),
                  "satisfaction": rng.integers(1, 6, n), "tenure": rng.integers(0, 30, n),
                  "products": rng.integers(1, 4, n), "segment": rng.choice(["alpha", "beta", "gamma"], n),
                  "margin": rng.uniform(5, 50, n)}).write_csv(d / "customers.csv")
    customers = pl.read_csv(d / "customers.csv")
    customers.with_columns(pl.when(pl.col("customer_id") == 7).then(1e300).otherwise(pl.col("margin"))
                           .alias("margin")).write_csv(d / "customers_1e300.csv")
    return d


def test_score_writes_one_row_per_customer_and_a_call_list(fit_dirs, tmp_path):
    d = fit_dirs
    out = tmp_path / "scores.parquet"
    res = runner.invoke(app, ["score", str(d / "retention"), str(d / "customers.csv"), "--cross-sell",
                              str(d / "cross-sell"), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    t = pl.read_parquet(out)
    assert t.height == 300 and sorted(t["call_rank"].to_list()) == list(range(1, 301))
    assert t.sort("call_rank")["value_at_risk"].is_sorted(descending=True)
    for q in ("churn_probability_monthly", "remaining_margin", "value_at_risk", "cross_sales"):
        assert (t[f"{q}_lower"] <= t[q]).all() and (t[q] <= t[f"{q}_upper"]).all()
    assert ((t["churn_probability_monthly"] > 0) & (t["churn_probability_monthly"] < 1)).all()


@pytest.mark.parametrize(("args", "needle"), [
    (["{d}/cross-sell", "{d}/customers.csv", "-o", "{tmp}/s.parquet"], "a fit of model 'cross-sell', expected a "
                                                                        "retention fit"),
    (["{d}/retention", "{d}/customers.csv", "--cross-sell", "{d}/retention", "-o", "{tmp}/s.parquet"],
     "a fit of model 'retention', expected a cross-sell fit"),
    (["{d}/retention", "{d}/panel.parquet", "-o", "{tmp}/s.parquet"], "missing required column 'tenure'"),
    (["{d}/retention", "{d}/customers.csv", "-o", "{tmp}/s.txt"], "unknown table type '.txt'"),
    (["{d}/retention", "{d}/customers.csv", "-o", "{tmp}/s.csv", "--horizon", "0"], "--horizon"),
    (["{tmp}", "{d}/customers.csv", "-o", "{tmp}/s.csv"], "not a fit"),
    (["{d}/retention", "{d}/customers_1e300.csv", "-o", "{tmp}/s.csv"], "column 'margin'"),  # was accepted
    (["{d}/retention", "{d}/customers.csv", "-o", "{tmp}/s.csv", "--margin", "1e300"], "--margin"),
])
def test_score_bad_input_is_one_line_and_exit_2(fit_dirs, tmp_path, args, needle):
    res = runner.invoke(app, ["score", *[a.format(d=fit_dirs, tmp=tmp_path) for a in args]])
    _one_line_error(res, needle)
    assert not (tmp_path / "s.parquet").exists() and not (tmp_path / "s.csv").exists()


# -- alarm on the engine's stream with a known change ---------------------------------------


def test_alarm_finds_the_engines_known_change_and_nothing_elsewhere(tmp_path):
    """From month 12 the call centre's NPS answers fall by 2 points (simulate --feedback-change). The detector
    must alarm on the call centre within 250 of its responses after month 12 (docs/operations.md: 90 % of
    such drops within about 100), and not on the shop or the web, whose answers do not change."""
    sim = tmp_path / "sim"
    res = runner.invoke(app, ["simulate", "-n", "10000", "-t", "18", "-s", "3", "--panel-sample", "1",
                              "--feedback", "--feedback-change", "call_centre:12:-2", "-o", str(sim), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["alarm", str(sim / "feedback.parquet"), "-o", str(tmp_path / "al"), "-q"])
    assert res.exit_code == 0, res.output
    fb = pl.read_parquet(sim / "feedback.parquet")
    agg = pl.read_csv(tmp_path / "al" / "aggregate.csv")
    tp = agg.filter(pl.col("group_by") == "touchpoint")
    assert set(tp["group"]) == {"call_centre"}
    first = int(tp["event"].min())
    call = fb.with_row_index("event").filter(pl.col("touchpoint") == "call_centre")
    changed = call.filter(pl.col("period") >= 12)["event"]
    assert first >= changed[0]  # no alarm before the change
    assert int(((changed >= changed[0]) & (changed <= first)).sum()) <= 250
    individual = pl.read_csv(tmp_path / "al" / "individual.csv")
    assert individual.height == fb.filter(pl.col("complaint") | (pl.col("nps") <= 4)
                                          | (pl.col("satisfaction") <= 2)).height


def test_alarm_bad_input(tmp_path):
    (tmp_path / "r.toml").write_text("[touchpoints.shop]\nnps_max = 3\n")
    pl.DataFrame({"customer_id": [1], "timestamp": ["2026-01-01T00:00:00Z"], "touchpoint": ["web"],
                  "nps": [3]}).write_csv(tmp_path / "f.csv")
    _one_line_error(runner.invoke(app, ["alarm", str(tmp_path / "f.csv"), "--rules", str(tmp_path / "r.toml"),
                                        "-o", str(tmp_path / "o")]), "touchpoint 'web' is not in the rules")
    pl.DataFrame({"customer_id": [1], "touchpoint": ["web"], "nps": [3]}).write_csv(tmp_path / "g.csv")
    _one_line_error(runner.invoke(app, ["alarm", str(tmp_path / "g.csv"), "-o", str(tmp_path / "o")]),
                    "missing required column 'timestamp'")
    _one_line_error(runner.invoke(app, ["alarm", str(tmp_path / "f.csv"), "--webhook", "http://127.0.0.1:9",
                                        "-o", str(tmp_path / "o")]), "--webhook: only with --follow")
    assert not (tmp_path / "o").exists()


# -- --follow ---------------------------------------------------------------------------------


def _stream(n: int, seed: int = 5) -> pl.DataFrame:
    """Two touchpoints; the call centre's NPS drops by 3 points half-way; some complaints."""
    rng = np.random.default_rng(seed)
    nps = rng.choice(11, n, p=np.r_[np.full(7, 0.05), [0.15, 0.2, 0.2, 0.1]]).astype(float)
    tp = rng.choice(["call_centre", "shop"], n)
    late = (np.arange(n) >= n // 2) & (tp == "call_centre")
    nps[late] = np.clip(nps[late] - 3, 0, 10)
    return pl.DataFrame({"customer_id": rng.integers(0, 500, n),
                         "timestamp": [(T0 + dt.timedelta(minutes=i)).isoformat() for i in range(n)],
                         "touchpoint": tp, "nps": nps.astype(int), "complaint": rng.random(n) < 0.01})


def _tenure(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tenure.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})


def _cursor_events(out: Path) -> int:
    try:
        with np.load(out / "cursor.npz") as data:
            return json.loads(str(data["cursor"]))["events"]
    except (OSError, ValueError, KeyError):
        return 0


def _wait(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def _batch_ids(events: pl.DataFrame, tmp: Path) -> list[str]:
    events.write_csv(tmp / "all.csv")
    res = runner.invoke(app, ["alarm", str(tmp / "all.csv"), "--rules", str(tmp / "rules.toml"), "-o",
                              str(tmp / "batch"), "-q"])
    assert res.exit_code == 0, res.output
    return [json.loads(line)["id"] for line in (tmp / "batch" / "alerts.jsonl").read_text().splitlines()]


def _followed_ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "alerts.jsonl").read_text().splitlines()]


def _kill_and_restart(write_part, source: Path, tmp: Path, n_parts: int, extra=()) -> Path:
    """Write parts while --follow runs, kill it (SIGKILL) after the first half has been read, restart, finish."""
    out = tmp / "live"
    args = ["alarm", str(source), "--follow", "--rules", str(tmp / "rules.toml"), "-o", str(out), "-q",
            "--poll", "0.05", *extra]
    for i in range(n_parts // 2):
        write_part(i)
    proc = _tenure(*args)
    _wait(lambda: _cursor_events(out) > 0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for i in range(n_parts // 2, n_parts):
        write_part(i)
    proc = _tenure(*args, "--idle-exit", "1.5")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


def test_follow_a_folder_killed_and_restarted_loses_and_doubles_nothing(tmp_path):
    (tmp_path / "rules.toml").write_text(SMALL_RULES)
    events = _stream(6000)
    folder = tmp_path / "in"
    folder.mkdir()
    parts = 6

    def write_part(i: int) -> None:
        part = events.slice(i * 1000, 1000)
        part.write_csv(folder / f".part-{i:03d}.csv")
        os.replace(folder / f".part-{i:03d}.csv", folder / f"part-{i:03d}.csv")  # written, then renamed in place

    out = _kill_and_restart(write_part, folder, tmp_path, parts)
    followed = _followed_ids(out)
    assert len(followed) == len(set(followed))
    expected = _batch_ids(events, tmp_path)
    assert sorted(followed) == sorted(expected) and any(i.startswith("aggregate") for i in expected)


def test_follow_an_sqlite_table_killed_and_restarted_loses_and_doubles_nothing(tmp_path):
    (tmp_path / "rules.toml").write_text(SMALL_RULES)
    events = _stream(6000, seed=6)
    db = tmp_path / "feedback.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE feedback (customer_id INTEGER, timestamp TEXT, touchpoint TEXT, nps INTEGER, "
                    "complaint INTEGER)")

    def write_part(i: int) -> None:
        rows = events.slice(i * 1000, 1000).with_columns(pl.col("complaint").cast(pl.Int64)).rows()
        with sqlite3.connect(db) as con:
            con.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", rows)

    out = _kill_and_restart(write_part, db, tmp_path, 6)
    followed = _followed_ids(out)
    assert len(followed) == len(set(followed))
    assert sorted(followed) == sorted(_batch_ids(events, tmp_path))


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    refuse_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).refuse_first > 0:
            type(self).refuse_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_posts_every_alert_once_after_refusals(tmp_path):
    (tmp_path / "rules.toml").write_text(SMALL_RULES)
    _Hook.received, _Hook.refuse_first = [], 2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = tmp_path / "f.csv"
        _stream(800).write_csv(src)
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        proc = _tenure("alarm", str(src), "--follow", "--rules", str(tmp_path / "rules.toml"), "-o",
                       str(tmp_path / "o"), "-q", "--webhook", url, "--idle-exit", "3")
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "retrying" in err  # the refusals were warned about, and retried
        logged = _followed_ids(tmp_path / "o")
        assert [a["id"] for a in _Hook.received] == logged and logged
    finally:
        server.shutdown()


def test_a_webhook_that_refuses_does_not_block_the_stream(tmp_path):
    (tmp_path / "rules.toml").write_text(SMALL_RULES)
    src = tmp_path / "f.csv"
    _stream(800).write_csv(src)
    proc = _tenure("alarm", str(src), "--follow", "--rules", str(tmp_path / "rules.toml"), "-o", str(tmp_path / "o"),
                   "-q", "--webhook", "http://127.0.0.1:9/none", "--idle-exit", "1")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "warning:" in err and "alerts are kept" in err
    assert _followed_ids(tmp_path / "o")  # every alert is in alerts.jsonl


def test_follow_warns_about_timestamps_that_go_backwards_and_keeps_the_alert(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame({"customer_id": [1, 2], "timestamp": ["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"],
                  "touchpoint": ["web", "web"], "nps": [9, 0]}).write_csv(folder / "a.csv")
    proc = _tenure("alarm", str(folder), "--follow", "-o", str(tmp_path / "o"), "-q", "--idle-exit", "0.5")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "go backwards" in err
    assert _followed_ids(tmp_path / "o") == ["individual:1"]


def test_alarm_on_a_small_file_exits_0_and_writes_its_folder_without_a_report(tmp_path):
    """`tenure alarm` has no report page: writing one after the run made every run end in exit code 2."""
    rows = [(i, f"2026-01-{1 + i % 28:02d}T10:00:00", ("call_centre", "shop", "web")[i % 3], i % 11) for i in range(30)]
    pl.DataFrame(rows, schema=["customer_id", "timestamp", "touchpoint", "nps"], orient="row").write_csv(
        tmp_path / "fb.csv")
    res = runner.invoke(app, ["alarm", str(tmp_path / "fb.csv"), "-o", str(tmp_path / "al"), "-q"])
    assert res.exit_code == 0, res.output
    assert pl.read_csv(tmp_path / "al" / "individual.csv").height == sum(1 for r in rows if r[3] <= 4)
    assert not (tmp_path / "al" / "report.html").exists()


class _SlowHook(http.server.BaseHTTPRequestHandler):
    """Answers after the client's time-out for the first ``stall`` posts (and drops them), then at once."""

    received: ClassVar[list[dict]] = []
    arrivals: ClassVar[list[float]] = []
    stall = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).arrivals.append(time.monotonic())
        if type(self).stall > 0:
            type(self).stall -= 1
            time.sleep(1.0)  # five times the client's 0.2 s time-out: the post times out and is not taken
            return
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_webhook_that_times_out_is_retried_with_back_off_and_loses_no_alert(tmp_path):
    from tenure.commands._follow import ALERTS_FILE, WEBHOOK_FILE, AlertLog, Webhook

    _SlowHook.received, _SlowHook.arrivals, _SlowHook.stall = [], [], 3
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    warnings: list[str] = []
    log = AlertLog(tmp_path / ALERTS_FILE)
    log.append([{"id": f"individual:{i}", "customer_id": i} for i in range(3)])
    hook = Webhook(f"http://127.0.0.1:{server.server_address[1]}/alerts", tmp_path, warnings.append, timeout=0.2)
    hook.start()
    try:
        while len(_SlowHook.arrivals) < 2:  # the first post has timed out and the hook waits to retry
            time.sleep(0.01)
        # the stream goes on while the hook retries: new alerts are appended and kept, none delivered yet
        assert log.append([{"id": f"individual:{i}", "customer_id": i} for i in range(3, 6)])
        assert _SlowHook.received == [] and hook.delivered == 0
        deadline = time.monotonic() + 60
        while hook.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hook.stop.set()
        hook.join(5)
        server.shutdown()
    # every alert once, in order, after three time-outs; retries 0.5, 1 and 2 s after each 0.2 s time-out
    assert [a["id"] for a in _SlowHook.received] == [f"individual:{i}" for i in range(6)]
    gaps = np.diff(_SlowHook.arrivals[:4])
    # the server stamps a post when its handler starts, a little after the client's time-out clock starts (at
    # connect): a gap may fall a few milliseconds short of back-off + time-out (CI saw 0.6991 for 0.7), so 20 ms slack
    assert np.all(gaps >= np.array([0.5, 1.0, 2.0]) + 0.2 - 0.02), gaps
    assert len(warnings) == 1 and "timed out" in warnings[0] and "alerts are kept in alerts.jsonl" in warnings[0]
    saved = json.loads((tmp_path / WEBHOOK_FILE).read_text())
    assert saved["delivered_bytes"] == (tmp_path / ALERTS_FILE).stat().st_size
