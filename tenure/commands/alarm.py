"""`tenure alarm FEEDBACK -o alerts/`: individual and aggregate alarms on contact feedback, in batch or --follow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenure.commands._common import cli_errors, console, err_console
from tenure.commands._options import Quiet
from tenure.errors import InputError

if TYPE_CHECKING:
    import polars as pl

FeedbackSource = Annotated[Path, typer.Argument(
    help="Feedback events: a .csv or .parquet file, an append-only folder of them, or an SQLite database "
    "(.db/.sqlite, table --table). Columns customer_id, timestamp, touchpoint, nps and/or satisfaction, "
    "optional complaint and segment; see docs/operations.md.")]
AlertsOut = Annotated[Path, typer.Option(
    "--out", "-o", help="Folder for the alerts: alerts.jsonl (every alert, in event order), individual.csv "
    "(prioritised), aggregate.csv, alarm.json; with --follow also cursor.npz.", show_default=False)]

#: Thresholds without --rules, at every touchpoint (with complaints): an NPS answer of 4 or less, a satisfaction
#: answer of 2 or less.
DEFAULT_THRESHOLDS = {"nps": 4.0, "satisfaction": 2.0}


def warn(message: str) -> None:
    """A one-line warning on stderr: the run goes on."""
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True)


def _rules(path: Path | None) -> Any:
    from tenure.models.alarm import Rules, read_rules

    if path is not None:
        return read_rules(path)
    return Rules(thresholds={}, default=dict(DEFAULT_THRESHOLDS))


@cli_errors
def alarm_cmd(
    feedback: FeedbackSource,
    out: AlertsOut,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Rules TOML: score thresholds per touchpoint, complaints, the aggregate detector's "
        "settings (example: docs/examples/alarm-rules.toml). Default: NPS <= 4, satisfaction <= 2 or a complaint "
        "at any touchpoint.", show_default=False)] = None,
    scores: Annotated[Path | None, typer.Option(
        "--scores", help="A score table from `tenure score`: individual alarms carry the customer's value at risk "
        "and call rank, and are listed highest value at risk first.", show_default=False)] = None,
    table: Annotated[str, typer.Option("--table", help="Table of an SQLite source.")] = "feedback",
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep reading the source as it grows; each alert is appended to alerts.jsonl once, as it "
        "happens; a cursor in the output folder makes a restart miss nothing and repeat nothing.")] = False,
    webhook: Annotated[str | None, typer.Option(
        "--webhook", help="With --follow: POST each alert as JSON to this URL (retried with back-off; the stream "
        "does not wait).", show_default=False)] = None,
    poll: Annotated[float, typer.Option("--poll", help="With --follow: seconds between reads of the source.")] = 0.2,
    idle_exit: Annotated[float | None, typer.Option(
        "--idle-exit", help="With --follow: stop after this many seconds without new events (default: never).",
        show_default=False)] = None,
    quiet: Quiet = False,
) -> None:
    """Raise alarms on contact feedback events.

    Individual alarms: a negative experience of one customer (a score at or below its touchpoint's threshold,
    or a complaint), prioritised by value at risk with --scores. Aggregate alarms: a drop in a touchpoint's or
    segment's NPS, detractor share or mean satisfaction, detected by a sequential Bayesian test of the last
    responses against a rolling baseline (docs/operations.md gives its false-alarm rate and detection delay).
    """
    from tenure.checks import in_range
    from tenure.commands._follow import Source, Webhook

    if webhook is not None and not follow:
        raise InputError("--webhook: only with --follow (a batch run writes its alerts to --out)")
    in_range(poll, "--poll", 0.01, 3600.0)
    if idle_exit is not None:
        in_range(idle_exit, "--idle-exit", 0.0, 1e7)
    rule_set = _rules(rules)
    score_table = _read_scores(scores) if scores is not None else None
    source = Source(feedback, table=table)
    if follow:
        hook = None if webhook is None else Webhook(webhook, out, warn)
        run_follow(source, rule_set, score_table, out, hook, poll=poll, idle_exit=idle_exit, quiet=quiet)
        return
    run_batch(source, rule_set, score_table, out, quiet=quiet)


def _read_scores(path: Path) -> pl.DataFrame:
    from tenure.io import read_table

    df = read_table(path)
    for col in ("customer_id", "value_at_risk", "call_rank"):
        if col not in df.columns:
            raise InputError(f"--scores {path}: missing column {col!r}; expected a table written by `tenure score`")
    return df


def _events(source: Any, cursor: dict[str, Any]) -> list[tuple[pl.DataFrame, str, dict[str, Any]]]:
    from tenure.models.alarm import read_feedback

    return [(read_feedback(raw, where=where), where, after) for raw, where, after in source.read_new(cursor)]


def run_batch(source: Any, rules: Any, scores: pl.DataFrame | None, out: Path, *, quiet: bool) -> None:
    """Read the whole source, raise every alarm and write the alerts folder (a run folder)."""
    from tenure.commands._common import output_folder
    from tenure.commands._follow import ALERTS_FILE, alert_records, json_line
    from tenure.io import check_out_dir, write_atomic, write_json, write_table
    from tenure.models.alarm import alarms

    check_out_dir(out)
    parts = _events(source, source.initial_cursor())
    if not parts:
        raise InputError(f"{source.path}: no feedback events")
    import polars as pl

    events = pl.concat([p[0] for p in parts], how="diagonal_relaxed")
    t0 = time.perf_counter()
    result = alarms(events, rules, scores, where=str(source.path))
    seconds = time.perf_counter() - t0
    for line in result.warnings if rules.thresholds else ():
        warn(line)
    records = alert_records(result.individual, result.aggregate)
    with output_folder(out, "tenure alarm", quiet, report=False, feedback=str(source.path)) as folder:
        write_atomic(folder / ALERTS_FILE, lambda p: p.write_text("".join(json_line(r) for r in records)))
        write_table(result.individual, folder / "individual.csv", fmt="csv")
        write_table(result.aggregate, folder / "aggregate.csv", fmt="csv")
        write_json({"events": events.height, "individual_alarms": result.individual.height,
                    "aggregate_alarms": result.aggregate.height, "warnings": result.warnings,
                    "rules": _rules_summary(rules), "seconds": seconds}, folder / "alarm.json")
    if not quiet:
        console.print(f"{events.height:,} events: {result.individual.height:,} individual alarms, "
                      f"{result.aggregate.height:,} aggregate alarms", highlight=False)


def _rules_summary(rules: Any) -> dict[str, Any]:
    return {"thresholds": rules.thresholds, "default": rules.default, "complaint": rules.complaint,
            "window": rules.window, "baseline": rules.baseline, "alarm_probability": rules.alarm_probability,
            "rearm_probability": rules.rearm_probability, "min_change": rules.min_change}


def run_follow(source: Any, rules: Any, scores: pl.DataFrame | None, out: Path, hook: Any, *, poll: float,
               idle_exit: float | None, quiet: bool) -> None:
    """Follow the source: alarms appended to alerts.jsonl as they happen, the cursor saved after each read."""
    from tenure.commands._follow import ALERTS_FILE, CURSOR_FILE, AlertLog, alert_records, load_cursor, save_cursor
    from tenure.io import check_out_dir
    from tenure.models.alarm import Detector, negative_experiences, prioritise

    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = load_cursor(out / CURSOR_FILE)
    if saved is None:
        cursor = {"source": source.initial_cursor(), "events": 0, "last_timestamp": None}
        detector = Detector(rules)
    else:
        cursor, state = saved
        if cursor["source"].get("kind") != source.kind:
            raise InputError(f"{out / CURSOR_FILE}: a cursor of a {cursor['source'].get('kind')} source, not of "
                             f"{source.path}; remove it or use another --out")
        detector = Detector.from_state(rules, state)
    log = AlertLog(out / ALERTS_FILE)
    warned_touchpoints: set[str] = set()
    if hook is not None:
        hook.start()
    if not quiet:
        console.print(f"following {source.path} (alerts in {out / ALERTS_FILE}; Ctrl-C to stop)", highlight=False)
    last_new = time.monotonic()
    try:
        while True:
            got = False
            for raw, where, after in source.read_new(cursor["source"]):
                got = True
                events = _read_or_warn(raw, where)
                if events is not None and events.height:
                    _check_order(events, cursor, where)
                    unknown = set(events["touchpoint"].unique().to_list()) - set(rules.thresholds)
                    if rules.default is None and unknown - warned_touchpoints:
                        warn(f"{where}: touchpoints not in the rules, complaints only: "
                             f"{', '.join(sorted(unknown - warned_touchpoints))}")
                        warned_touchpoints |= unknown
                    individual = prioritise(negative_experiences(events, rules), scores)
                    aggregate = detector.feed(events, first_event=cursor["events"])
                    new = log.append(alert_records(individual, aggregate, first_event=cursor["events"]))
                    if new and not quiet:
                        console.print(f"{len(new)} new alerts ({where})", highlight=False)
                    cursor["events"] += events.height
                    cursor["last_timestamp"] = events["timestamp"].max().isoformat()
                cursor["source"] = after
                save_cursor(out / CURSOR_FILE, cursor, detector.state())
            now = time.monotonic()
            if got:
                last_new = now
            elif idle_exit is not None and now - last_new >= idle_exit:
                break
            time.sleep(poll)
    finally:
        if hook is not None:
            deadline = time.monotonic() + 2.0
            while hook.pending() and time.monotonic() < deadline:
                time.sleep(0.05)
            hook.stop.set()


def _read_or_warn(raw: pl.DataFrame, where: str) -> pl.DataFrame | None:
    """Validated events, or a warning and ``None`` for a part that cannot be read (the stream goes on)."""
    from tenure.models.alarm import read_feedback

    try:
        return read_feedback(raw, where=where)
    except InputError as exc:
        warn(f"skipped: {exc}")
        return None


def _check_order(events: pl.DataFrame, cursor: dict[str, Any], where: str) -> None:
    """Warn about timestamps that go backwards: the events are still judged, in the order they arrived."""
    ts = events["timestamp"]
    previous = ts.shift(1)
    if cursor.get("last_timestamp"):
        import datetime as dt

        previous = previous.fill_null(dt.datetime.fromisoformat(cursor["last_timestamp"]))
    back = (ts < previous).fill_null(False)
    if back.any():
        i = int(back.arg_max())
        warn(f"{where}: {int(back.sum())} timestamps go backwards (first at row {i + 1}: {ts[i]}); "
             "judged in the order they arrived")
