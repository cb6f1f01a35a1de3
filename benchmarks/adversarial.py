"""An adversarial pass over the CLI: about a thousand bad inputs, each expected to end in exit code 2 and one line.

Run ``python benchmarks/adversarial.py [--fits | --fits-only | --new] [--only CLASS]`` (``--fits`` adds the
``tenure fit`` cases, slower as each loads the model code; ``--new`` runs only the cases of the operational
commands: report, score, alarm, evaluate, predict, fit pnbd / mbgnbd). It prints one line per case that
did not end as expected, then a table by class: refused (exit code 2, one line, naming what the
case names, nothing written), internal error or traceback, accepted (exit code 0), other.

**Adding cases.** The pass is a table: ``CASES`` holds :class:`Case` rows (class, the arguments after
``tenure``, and the text the one-line refusal must contain, so that a case refused for another reason
than the one it tests counts as "other"). Arguments may use ``{d}``, the case's scratch folder, which
holds every file of :data:`FILES` (good inputs, and bad variants made from them) and the prepared
outputs of :func:`prepare` (a calibrated market set with its manifest, a fit folder, a checkpoint).
A new command adds its rows with :func:`cases`, e.g.
``CASES += cases("report", ["report", "{d}/fit"], [(["--format", "xls"], "--format")])``:
one row per (extra arguments, expected text) on top of a valid command line.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from tenure.cli import app
from tenure.scenario import SCHEMA


@dataclass(frozen=True)
class Case:
    """One bad input: its class, the arguments after ``tenure``, the text the refusal must contain."""

    klass: str
    args: tuple[str, ...]
    needle: str = ""
    slow: bool = False  # a fit case: run with --fits
    new: bool = False  # a case of report, score, alarm, evaluate, predict, fit pnbd/mbgnbd: run with --new


def cases(klass: str, base: list[str], variants: list[tuple[list[str], str]], slow: bool = False,
          new: bool = False) -> list[Case]:
    """One case per ``(extra arguments, expected text)`` appended to the valid command line ``base``."""
    return [Case(klass, (*base, *extra), needle, slow, new) for extra, needle in variants]


# -- input files: good ones, and bad variants of them -----------------------------------------------------------
PANEL_HEADER = ("customer_id,period,churned,trust,enthusiasm,satisfaction,products,cross_sold,segment,nps,"
                "trim_overall,trim_recommend,trim_repurchase,trim_advantage")


def _panel_rows() -> list[list[str]]:
    rows = []
    for c in range(1, 41):
        last = 2 + c % 3
        for t in range(last + 1):
            churned = "true" if t == last and c % 2 else "false"
            s = str(1 + (c + t) % 5)
            rows.append([str(c), str(t), churned, s, str(1 + (c * 3 + t) % 5), s, str(1 + c % 3), str((c + t) % 2),
                         "ab"[c % 2], str((c * 7 + t) % 11), s, str(1 + c % 5), s, str(1 + t % 5)])
    return rows


def _csv(header: str, rows: list[list[str]]) -> bytes:
    return (header + "\n" + "\n".join(",".join(r) for r in rows) + "\n").encode()


def _with_cell(header: str, rows: list[list[str]], column: str, value: str, row: int = 1) -> bytes:
    i = header.split(",").index(column)
    out = [list(r) for r in rows]
    out[row][i] = value
    return _csv(header, out)


def _without(header: str, rows: list[list[str]], column: str) -> bytes:
    i = header.split(",").index(column)
    return _csv(",".join(h for j, h in enumerate(header.split(",")) if j != i),
                [[v for j, v in enumerate(r) if j != i] for r in rows])


PANEL = _panel_rows()
COHORT_HEADER = "cohort,period,alive"
COHORTS = [["a", "0", "100"], ["a", "1", "80"], ["a", "2", "70"], ["a", "3", "64"]]
RFM_HEADER = "customer_id,frequency,recency,T,monetary_value"
RFM = [[str(i), str(i % 4), str(2.0 * (i % 4)), "10.0", str(5.0 + i)] for i in range(1, 30)]
BGBB_HEADER = "frequency,recency,T,count"
BGBB = [["0", "0", "6", "50"], ["1", "3", "6", "20"], ["3", "5", "6", "10"], ["6", "6", "6", "5"]]
TX_HEADER = "customer_id,date,amount"
TX = [["1", "2024-01-01", "10"], ["1", "2024-02-01", "12"], ["2", "2024-01-03", "3"], ["2", "2024-03-03", "4"]]
PRIORS = {"negative": '[alpha]\ndist = "HalfNormal"\nsigma = -1\n',
          "nan": '[alpha]\ndist = "HalfNormal"\nsigma = nan\n',
          "inf": '[alpha]\ndist = "HalfNormal"\nsigma = inf\n', "unknown": '[alpha]\ndist = "Nope"\n',
          "list": "alpha = [1]\n", "text": '[alpha]\ndist = "HalfNormal"\nsigma = "x"\n',
          "binary": "\x00\xff"}
BAD_CELLS = {"text": "x", "nan": "nan", "inf": "inf", "negative": "-1", "huge": "18446744073709551616",
             "1e300": "1e300", "fraction": "2.5", "empty": ""}

FILES: dict[str, bytes] = {
    "binary.toml": b"\x00\xff\xfe binary",
    "latin1.toml": "[meta]\nname = 'caf\xe9'\n".encode("latin-1"),
    "a_file": b"x",
    "empty.csv": b"",
    "panel.csv": _csv(PANEL_HEADER, PANEL),
    "cohorts.csv": _csv(COHORT_HEADER, COHORTS),
    "rfm.csv": _csv(RFM_HEADER, RFM),
    "bgbb.csv": _csv(BGBB_HEADER, BGBB),
    "tx.csv": _csv(TX_HEADER, TX),
    "tx_negative.csv": _with_cell(TX_HEADER, TX, "amount", "-5"),
    "tx_null_id.csv": _with_cell(TX_HEADER, TX, "customer_id", ""),
    "tx_bad_date.csv": _with_cell(TX_HEADER, TX, "date", "2024-13-45"),
    **{f"priors_{k}.toml": v.encode("latin-1") for k, v in PRIORS.items()},
}
for col in ("customer_id", "period", "churned", "trust", "products", "cross_sold", "nps", "trim_overall"):
    FILES[f"panel_no_{col}.csv"] = _without(PANEL_HEADER, PANEL, col)
    for name, cell in BAD_CELLS.items():
        FILES[f"panel_{col}_{name}.csv"] = _with_cell(PANEL_HEADER, PANEL, col, cell)
for col in ("period", "alive"):
    for name, cell in BAD_CELLS.items():
        FILES[f"cohorts_{col}_{name}.csv"] = _with_cell(COHORT_HEADER, COHORTS, col, cell)
for col in ("frequency", "recency", "T", "monetary_value"):
    for name, cell in BAD_CELLS.items():
        FILES[f"rfm_{col}_{name}.csv"] = _with_cell(RFM_HEADER, RFM, col, cell)
for col in ("frequency", "recency", "T"):
    for name, cell in BAD_CELLS.items():
        FILES[f"bgbb_{col}_{name}.csv"] = _with_cell(BGBB_HEADER, BGBB, col, cell)
FILES["panel_churned_yes.csv"] = _with_cell(PANEL_HEADER, PANEL, "churned", "maybe")


def prepare(d: Path) -> None:
    """Outputs that readers check: a calibrated market set with its manifest, a fit folder, a checkpoint."""
    import polars as pl

    from tenure.io import run_files
    from tenure.scenario import load_scenario

    with run_files(d / "m.toml", "tenure calibrate") as stage:
        (stage / "m.toml").write_text(load_scenario(None).scaled(2_000).to_toml())
        pl.DataFrame({"market": [0, 1, 2], "churn.trust": [-1.5, -2.0, -2.5]}).write_csv(stage / "m.draws.csv")
    for name, change in (("m_cut", "cut"), ("m_gone", "gone"), ("m_edit", "edit")):
        for p in d.glob("m.*"):
            shutil.copy2(p, d / p.name.replace("m.", f"{name}.", 1))
        shutil.copy2(d / "m.manifest.json", d / f"{name}.manifest.json")
        man = (d / f"{name}.manifest.json").read_text().replace('"m.', f'"{name}.')
        (d / f"{name}.manifest.json").write_text(man)
        draws = d / f"{name}.draws.csv"
        if change == "cut":
            draws.write_bytes(draws.read_bytes()[:-8])
        elif change == "gone":
            draws.unlink()
        else:
            (d / f"{name}.toml").write_text((d / f"{name}.toml").read_text() + "\n# edited\n")
    res = CliRunner().invoke(app, ["fit", "sbg", str(d / "cohorts.csv"), "--method", "map", "-o", str(d / "fit")])
    assert res.exit_code == 0, res.output
    shutil.copytree(d / "fit", d / "fit_cut")
    post = d / "fit_cut" / "posterior.nc"
    post.write_bytes(post.read_bytes()[: post.stat().st_size // 2])
    from tenure.engine.simulator import Simulator

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    from tenure.api import load_scenario as api_scenario

    sc = api_scenario("default", run={"customers": 300, "periods": 3, "seed": 5})
    try:
        Simulator(sc, 2, checkpoint_every=1, checkpoint_dir=d / "ck").run(progress=stop)
    except Stop:
        pass
    shutil.copytree(d / "ck", d / "ck_cut")
    shard = sorted((d / "ck_cut").glob("shard-*.npz"))[-1]
    shard.write_bytes(shard.read_bytes()[:-16])
    (d / "ck_garbage").mkdir()
    (d / "ck_garbage" / "driver.pkl").write_bytes(b"not a pickle")
    (d / "empty_dir").mkdir()


# -- the cases -------------------------------------------------------------------------------------------------
BAD_VALUES = ["nan", "inf", "-inf", "1e308", "-1e308", "18446744073709551616", '"text"', "true", "[1, 2]", "-1"]
CASES: list[Case] = []

# scenario keys: every key of the schema with values beyond its type or range (a file per case)
for section, fields in SCHEMA.items():
    for key, field in fields.items():
        values = BAD_VALUES if field.kind in ("int", "float") else ["1e308", "[1, 2]"]
        for value in [v for v in values if v != "-1" or field.bounds[0] >= 0]:
            CASES.append(Case("scenario keys", ("scenario", "validate", f"@{section}.{key}={value}"), section))
CASES += [
    Case("not text", ("scenario", "validate", "{d}/binary.toml"), "UTF-8"),
    Case("not text", ("scenario", "validate", "{d}/latin1.toml"), "UTF-8"),
    Case("not text", ("scenario", "show", "{d}/binary.toml"), "UTF-8"),
    Case("not text", ("simulate", "{d}/latin1.toml", "-n", "50", "-t", "1"), "UTF-8"),
    Case("options", ("scenario", "scale", "default", "0"), ""),
    Case("not text", ("scenario", "scale", "{d}/latin1.toml", "10"), "UTF-8"),
    Case("numbers beyond storage", ("scenario", "scale", "default", str(2**64)), ""),
    Case("output locations", ("scenario", "validate", "{d}"), "folder"),
]

SIM = ["simulate", "-n", "50", "-t", "2", "-q"]
CASES += cases("options", [*SIM, "-o", "{d}/o"], [
    (["--seed", "-1"], "--seed"), (["--seed", str(2**64)], "--seed"), (["-n", "0"], "--customers"),
    (["-t", "0"], "--periods"), (["-t", "100000"], "periods"), (["--panel-sample", "nan"], "--panel-sample"),
    (["--panel-sample", "2"], "--panel-sample"), (["--format", "xls"], "--format"),
    (["--replications", "1"], "--replications"), (["--replications", "2", "--seed", str(2**63 - 1)], "--replications"),
    (["--shards", "0"], "--shards"), (["--checkpoint-every", "0", "--checkpoint-dir", "{d}/ck2"], "--checkpoint-every"),
])
CASES += cases("output locations", SIM, [
    (["-o", "{d}/a_file/o"], "not a folder"), (["-o", "{d}/a_file"], "not a folder")])
CASES += cases("incomplete outputs", ["simulate", "-q", "-o", "{d}/o"], [
    (["--resume", "{d}/empty_dir"], "holds no tenure checkpoint"), (["--resume", "{d}/ck_garbage"], "driver.pkl"),
    (["--resume", "{d}/ck_cut"], "changed since the run wrote it")])

CMP = ["compare", "-n", "50", "-t", "2", "-q", "--acquisition-steps", "2", "--seeds", "1", "--levers", "service"]
CASES += cases("options", CMP, [
    (["--budget", "nan"], "--budget"), (["--budget", "-1"], "--budget"), (["--budget", "inf"], "--budget"),
    (["--seeds", "0"], "--seeds"), (["--acquisition-steps", "0"], "--acquisition-steps"), (["--seed", "-1"], "--seed"),
    (["--seed", str(2**63 - 1), "--seeds", "2"], "--seeds"), (["--mix", "nan,1"], "--mix"),
    (["--mix", "service=-1"], "--mix"), (["--levers", "nope"], "--levers"), (["--cluster", "yarn"], "--cluster")])
CASES += cases("output locations", CMP, [(["-o", "{d}/a_file/o"], "not a folder")])

DEC = ["decide", "{d}/m.toml", "-n", "200", "-t", "2", "-q", "--acquisition-steps", "2", "--seeds", "1",
       "--levers", "service"]
CASES += cases("options", DEC, [
    (["--max-markets", "1"], "--max-markets"), (["--budget", "nan"], "--budget"), (["-n", "10"], "--customers"),
    (["--seed", str(2**63 - 1), "--seeds", "2"], "--seeds"), (["--seed", "-1"], "--seed")])
CASES += [
    Case("incomplete outputs", ("decide", "{d}/m_cut.toml", "-n", "200", "-t", "2", "-q"), "m_cut.draws.csv"),
    Case("incomplete outputs", ("decide", "{d}/m_gone.toml", "-n", "200", "-t", "2", "-q"), "m_gone.draws.csv"),
    Case("incomplete outputs", ("decide", "{d}/m_edit.toml", "-n", "200", "-t", "2", "-q"), "m_edit.toml"),
    Case("not text", ("decide", "{d}/binary.toml", "-n", "200", "-t", "2", "-q"), "UTF-8"),
    Case("output locations", (*DEC, "-o", "{d}/a_file/o"), "not a folder"),
]

CAL = ["calibrate", "default", "{d}/panel.csv", "-o", "{d}/out.toml", "-q"]
CASES += cases("options", CAL, [
    (["--seed", "-1"], "--seed"), (["--markets", "0"], "--markets"),
    (["--simulation-ratio", "nan"], "--simulation-ratio"),
    (["--check-markets", "1"], "--check-markets"), (["--iterations", "0"], "--iterations"),
    (["--panel-periods", "0"], "--panel-periods"), (["--segment-col", "customer_id"], "--segment-col"),
    (["--segment-col", "nope"], "nope")])
CASES += [
    Case("output locations", ("calibrate", "default", "{d}/panel.csv", "-o", "{d}/a_file/x.toml"), "not a folder"),
    Case("output locations", ("calibrate", "default", "{d}/panel.csv", "-o", "{d}/x.csv"), ".toml"),
    Case("output locations", ("calibrate", "default", "{d}/panel.csv", "-o", "{d}"), ".toml"),
    Case("incomplete outputs", ("calibrate", "default", "{d}/fit_cut", "-o", "{d}/out.toml"), "posterior.nc"),
    Case("columns", ("calibrate", "default", "{d}/fit", "-o", "{d}/out.toml"), "a fit of model 'sbg'"),
    Case("not text", ("calibrate", "{d}/latin1.toml", "{d}/panel.csv", "-o", "{d}/out.toml"), "UTF-8"),
    Case("columns", ("calibrate", "default", "{d}/empty.csv", "-o", "{d}/out.toml", "-q"), "empty"),
]
# panel readers: each bad column and cell, through calibrate and every panel fit
PANEL_COMMANDS = {"calibrate": ["calibrate", "default", "{d}/FILE", "-o", "{d}/out.toml", "-q"],
                  **{f: ["fit", f, "{d}/FILE", "--method", "map", "-o", "{d}/f"] for f in ("retention", "cross-sell",
                                                                                             "joint", "nps")},
                  "trim": ["fit", "trim", "{d}/FILE", "--draws", "50", "-o", "{d}/f"]}
USED = {"calibrate": ("customer_id", "period", "churned", "trust", "products", "cross_sold"),
        "retention": ("customer_id", "period", "churned", "trust"),
        "cross-sell": ("customer_id", "period", "products", "cross_sold"),
        "joint": ("customer_id", "period", "churned", "cross_sold"), "nps": ("nps",), "trim": ("trim_overall",)}
ACCEPTED_CELLS = {"empty": {"trust", "nps", "trim_overall"}}  # a null answer is "not surveyed"
for cmd, base in PANEL_COMMANDS.items():
    slow = cmd != "calibrate"
    for col in USED[cmd]:
        CASES.append(Case("columns", tuple(a.replace("FILE", f"panel_no_{col}.csv") for a in base), f"'{col}'", slow))
        for name in BAD_CELLS:
            if col in ACCEPTED_CELLS.get(name, ()) or (col == "customer_id" and name != "empty") or \
                    (col == "period" and name == "negative"):
                continue  # ids may be text, periods need not start at 0 (docs/models-panel.md)
            CASES.append(Case("columns", tuple(a.replace("FILE", f"panel_{col}_{name}.csv") for a in base), f"'{col}'",
                              slow))
CASES.append(Case("columns", tuple(a.replace("FILE", "panel_churned_yes.csv") for a in PANEL_COMMANDS["calibrate"]),
                  "'churned'"))

FIT: list[Case] = []
SBG = ["fit", "sbg", "{d}/cohorts.csv", "--method", "map", "-o", "{d}/f"]
FIT += cases("options", SBG, [(["--discount-rate", r], "--discount-rate") for r in ("-1", "nan", "inf", "-inf")]
             + [(["--seed", "-1"], "--seed"), (["--time-unit", "fortnights"], "--time-unit"),
                (["--method", "magic"], "--method"), (["--draws", "0"], "--draws"), (["--chains", "0"], "--chains"),
                (["--covariates", "nope"], "covariates")], slow=True)
FIT += cases("priors", SBG, [(["--priors", f"{{d}}/priors_{k}.toml"], "priors") for k in PRIORS]
             + [(["--priors", "{d}"], "folder"), (["--priors", "{d}/nope.toml"], "not found")], slow=True)
FIT += cases("output locations", ["fit", "sbg", "{d}/cohorts.csv", "--method", "map"],
             [(["-o", "{d}/a_file/o"], "not a folder"), (["-o", "{d}/a_file"], "not a folder")], slow=True)
for col in ("period", "alive"):
    FIT += [Case("columns", ("fit", "sbg", f"{{d}}/cohorts_{col}_{name}.csv", "--method", "map", "-o", "{d}/f"), col,
                 True) for name in BAD_CELLS]
for fam, monetary in (("bgnbd", False), ("gamma-gamma", True)):
    cols = ("frequency", "recency", "T", *(("monetary_value",) if monetary else ()))
    for col in cols:
        FIT += [Case("columns", ("fit", fam, f"{{d}}/rfm_{col}_{name}.csv", "--method", "map", "-o", "{d}/f"), col,
                     True) for name in BAD_CELLS if not (name == "fraction" and col != "frequency")]
    FIT += [Case("columns", ("fit", fam, "{d}/tx_negative.csv", "--method", "map", "-o", "{d}/f"), "amount", True),
            Case("columns", ("fit", fam, "{d}/tx_null_id.csv", "--method", "map", "-o", "{d}/f"), "customer_id", True),
            Case("columns", ("fit", fam, "{d}/tx_bad_date.csv", "--method", "map", "-o", "{d}/f"), "date", True),
            Case("options", ("fit", fam, "{d}/tx.csv", "--method", "map", "-o", "{d}/f", "--observation-end",
                             "1999-01-01"), "observation_end", True)]
for col in ("frequency", "recency", "T"):
    FIT += [Case("columns", ("fit", "bgbb", f"{{d}}/bgbb_{col}_{name}.csv", "--method", "map", "-o", "{d}/f"), col,
                 True) for name in BAD_CELLS]
FIT += cases("options", ["fit", "trim", "{d}/panel.csv", "--draws", "50", "-o", "{d}/f"], [
    (["--weights", "nan,1,1,1"], "--weights"), (["--weights", "inf,1,1,1"], "--weights"),
    (["--weights", "1,1,1"], "--weights"), (["--weights", "-1,1,1,1"], "--weights"),
    (["--derived", "nope"], "--derived")], slow=True)
FIT += cases("options", ["fit", "retention", "{d}/panel.csv", "--method", "map", "-o", "{d}/f"], [
    (["--missing", "guess"], "--missing"), (["--segment-col", "churned"], "--segment-col")], slow=True)
FIT += cases("options", ["fit", "joint", "{d}/panel.csv", "--method", "map", "-o", "{d}/f"], [
    (["--max-customers", "5"], "at most 5")], slow=True)
CASES += FIT

# -- the operational commands: report, score, alarm, evaluate, predict, fit pnbd / mbgnbd (run with --new) ---------
CUST_HEADER = "customer_id,trust,enthusiasm,satisfaction,tenure,products,segment,margin"
CUST = [[str(c), str(1 + c % 5), str(1 + (c * 3) % 5), str(1 + (c + 1) % 5), str(c % 4), str(1 + c % 3), "ab"[c % 2],
         "20.0"] for c in range(1, 21)]
FB_HEADER = "customer_id,timestamp,touchpoint,nps,satisfaction,complaint,segment"
FB = [[str(i), f"2026-01-{1 + i % 28:02d}T10:00:00", ("call_centre", "shop", "web")[i % 3], str(i % 11),
       str(1 + i % 5), "false", "ab"[i % 2]] for i in range(1, 31)]
LOG_HEADER = "customer_id,date,amount"


def _log_rows(customers: int = 300, seed: int = 7) -> list[list[str]]:
    """A BG/NBD-like transaction log over 2024 (Poisson purchases, geometric dropout), sorted by customer and date."""
    import datetime as dt
    import random

    rng, start, rows = random.Random(seed), dt.date(2024, 1, 1), []
    for c in range(1, customers + 1):
        rate, day = rng.uniform(0.01, 0.08), rng.randrange(0, 120)
        spend, dropout = rng.uniform(5, 40), rng.betavariate(1.0, 4.0)
        while day < 365:
            rows.append([str(c), (start + dt.timedelta(days=day)).isoformat(), f"{spend * rng.uniform(0.5, 1.5):.2f}"])
            if rng.random() < dropout:
                break
            day += 1 + int(rng.expovariate(rate))
    return rows


LOG = _log_rows()
TP = "[touchpoints.call_centre]\nnps_max = 4\n"
RULES = {"binary": "\x00\xff", "nan": "[default]\nnps_max = nan\n", "negative": "[default]\nnps_max = -1\n",
         "huge": "[default]\nnps_max = 1e308\n", "text": '[default]\nnps_max = "x"\n',
         "unknown_key": "[default]\nnps_maxx = 3\n", "window": "[aggregate]\nwindow = 0\n",
         "probability": "[aggregate]\nalarm_probability = 1.5\n",
         "no_default": "[touchpoints.call_centre]\nnps_max = 4\n", "complaint": 'complaint = "yes"\n'}
FILES.update({
    "customers.csv": _csv(CUST_HEADER, CUST),
    "feedback.csv": _csv(FB_HEADER, FB),
    "log.csv": _csv(LOG_HEADER, LOG),
    "rfm_recency_gt_T.csv": _with_cell(RFM_HEADER, RFM, "recency", "12.0"),
    "customers_dup_id.csv": _with_cell(CUST_HEADER, CUST, "customer_id", CUST[0][0]),
    "scores_bad.csv": b"customer_id,rank\n1,x\n",
    **{f"rules_{k}.toml": (v if k in ("binary", "no_default") else v + TP if k == "complaint" else TP + v)
       .encode("latin-1") for k, v in RULES.items()},
    "rules_latin1.toml": "[touchpoints.caf\xe9]\nnps_max = 3\n".encode("latin-1"),
    "rules_empty.toml": b"",
})
FILES["feedback_no_nps_sat.csv"] = _csv("customer_id,timestamp,touchpoint,complaint,segment",
                                        [[r[0], r[1], r[2], r[5], r[6]] for r in FB])
for col in ("customer_id", "trust", "enthusiasm", "satisfaction", "tenure", "products", "margin"):
    FILES[f"customers_no_{col}.csv"] = _without(CUST_HEADER, CUST, col)
    for name, cell in BAD_CELLS.items():
        FILES[f"customers_{col}_{name}.csv"] = _with_cell(CUST_HEADER, CUST, col, cell)
FILES["customers_trust_7.csv"] = _with_cell(CUST_HEADER, CUST, "trust", "7")
for col in ("customer_id", "timestamp", "touchpoint", "nps", "satisfaction", "complaint"):
    FILES[f"feedback_no_{col}.csv"] = _without(FB_HEADER, FB, col)
    for name, cell in BAD_CELLS.items():
        FILES[f"feedback_{col}_{name}.csv"] = _with_cell(FB_HEADER, FB, col, cell)
FILES["feedback_nps_11.csv"] = _with_cell(FB_HEADER, FB, "nps", "11")
FILES["feedback_timestamp_bad.csv"] = _with_cell(FB_HEADER, FB, "timestamp", "2026-13-45T99:00")
FILES["feedback_touchpoint_mars.csv"] = _with_cell(FB_HEADER, FB, "touchpoint", "mars")
for col in ("customer_id", "date", "amount"):
    FILES[f"log_no_{col}.csv"] = _without(LOG_HEADER, LOG, col)
    for name, cell in BAD_CELLS.items():
        FILES[f"log_{col}_{name}.csv"] = _with_cell(LOG_HEADER, LOG, col, cell)


def prepare_new(d: Path) -> None:
    """Fits the operational commands read: retention, BG/NBD, Gamma-Gamma; a tampered and an unlisted fit."""
    runner = CliRunner()
    for args in (["fit", "retention", str(d / "panel.csv"), "--method", "map", "-o", str(d / "fit_ret")],
                 ["fit", "bgnbd", str(d / "log.csv"), "--method", "map", "-o", str(d / "fit_bg")],
                 ["fit", "gamma-gamma", str(d / "log.csv"), "--method", "map", "-o", str(d / "fit_gg")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    for name in ("fit_ret", "fit_bg"):
        shutil.copytree(d / name, d / f"{name}_nomanifest")
        (d / f"{name}_nomanifest" / "manifest.json").unlink()
        shutil.copytree(d / name, d / f"{name}_tampered")
        man = d / f"{name}_tampered" / "manifest.json"
        man.write_text(man.read_text().replace('"bytes": ', '"bytes": 1', 1))
    (d / "fit_bg_binary").mkdir()
    (d / "fit_bg_binary" / "posterior.nc").write_bytes(b"\x00\xff not netcdf")


NEW: list[Case] = []
REP = ["report", "-q"]
NEW += cases("incomplete outputs", REP, [
    (["{d}/fit_bg_nomanifest"], "manifest"), (["{d}/fit_bg_tampered"], "manifest"), (["{d}/fit_cut"], "posterior.nc"),
    (["{d}/m_cut.toml"], "calibration.json"), (["{d}/m_gone.toml"], "calibration.json"),
    (["{d}/m_edit.toml"], "calibration.json"),
    (["{d}/empty_dir"], "manifest"), (["{d}/fit_bg_binary"], "manifest")], new=True)
NEW += cases("output locations", REP, [(["{d}/a_file"], "a_file"), (["{d}/nope"], "nope"),
                                       (["{d}/panel.csv"], "panel.csv")], new=True)
NEW += cases("not text", REP, [(["{d}/binary.toml"], "binary"), (["{d}/latin1.toml"], "latin1")], new=True)

SCORE = ["score", "{d}/fit_ret", "{d}/customers.csv", "-q"]
NEW += cases("options", [*SCORE, "-o", "{d}/s.csv"], [
    (["--horizon", h], "--horizon") for h in ("0", "-1", str(2**64))] + [
    (["--discount-rate", r], "--discount-rate") for r in ("nan", "inf", "-1", "-inf")] + [
    (["--interval", i], "--interval") for i in ("0", "1", "nan", "-0.5", "1.5")] + [
    (["--max-draws", "0"], "--max-draws"), (["--margin", "nan"], "--margin"), (["--margin", "inf"], "--margin"),
    (["--cross-sell", "{d}/fit_bg"], "cross"), (["--cross-sell", "{d}/a_file"], "a_file")], slow=True, new=True)
NEW += cases("output locations", SCORE, [
    (["-o", "{d}/a_file/s.csv"], "not a folder"), (["-o", "{d}/s.xls"], ".xls"),
    (["-o", "{d}/empty_dir"], "empty_dir")],
    slow=True, new=True)
NEW += cases("incomplete outputs", ["score"], [
    (["{d}/fit", "{d}/customers.csv", "-o", "{d}/s.csv"], "sbg"),
    (["{d}/fit_bg", "{d}/customers.csv", "-o", "{d}/s.csv"], "bgnbd"),
    (["{d}/fit_ret_tampered", "{d}/customers.csv", "-o", "{d}/s.csv"], "manifest"),
    (["{d}/a_file", "{d}/customers.csv", "-o", "{d}/s.csv"], "a_file"),
    (["{d}/empty_dir", "{d}/customers.csv", "-o", "{d}/s.csv"], "empty_dir")], slow=True, new=True)
SCORE_COLS = ["score", "{d}/fit_ret", "{d}/FILE", "-o", "{d}/s.csv", "-q"]
for col in ("customer_id", "trust", "enthusiasm", "satisfaction", "tenure", "products", "margin"):
    skip = {"customer_id": {"text", "nan", "inf", "negative", "huge", "1e300", "fraction"}}.get(col, set())
    bad = [n for n in BAD_CELLS if n not in skip]
    if col != "margin":
        NEW.append(Case("columns", tuple(a.replace("FILE", f"customers_no_{col}.csv") for a in SCORE_COLS), col, True,
                        True))
    if col == "margin":
        bad = [n for n in bad if n in ("text", "nan", "inf", "1e300")]
    NEW += [Case("columns", tuple(a.replace("FILE", f"customers_{col}_{n}.csv") for a in SCORE_COLS), col, True, True)
            for n in bad]
NEW += [Case("columns", tuple(a.replace("FILE", f) for a in SCORE_COLS), needle, True, True) for f, needle in (
    ("customers_trust_7.csv", "trust"), ("customers_dup_id.csv", "customer_id"), ("empty.csv", "empty.csv"),
    ("empty_dir", "empty_dir"), ("rfm.csv", "trust"), ("binary.toml", "binary.toml"))]

ALARM = ["alarm", "{d}/feedback.csv", "-q", "-o", "{d}/al"]
NEW += cases("not text", ALARM, [(["--rules", "{d}/rules_binary.toml"], "rules"),
                                 (["--rules", "{d}/rules_latin1.toml"], "UTF-8")], new=True)
NEW += cases("rules", ALARM, [(["--rules", f"{{d}}/rules_{k}.toml"], needle) for k, needle in (
    ("nan", "nps_max"), ("negative", "nps_max"), ("huge", "nps_max"), ("text", "nps_max"), ("unknown_key", "nps_maxx"),
    ("window", "window"), ("probability", "alarm_probability"), ("no_default", "touchpoint"),
    ("complaint", "complaint"))] + [(["--rules", "{d}/empty_dir"], "folder"), (["--rules", "{d}/nope.toml"], "nope")],
    new=True)
NEW += cases("options", ALARM, [
    (["--poll", "0", "--follow"], "--poll"), (["--poll", "nan", "--follow"], "--poll"),
    (["--poll", "-1", "--follow"], "--poll"), (["--idle-exit", "nan", "--follow"], "--idle-exit"),
    (["--idle-exit", "-1", "--follow"], "--idle-exit"), (["--webhook", "http://127.0.0.1:9/x"], "--follow"),
    (["--webhook", "not a url", "--follow", "--idle-exit", "0.1"], "--webhook"),
    (["--scores", "{d}/scores_bad.csv"], "scores_bad.csv"), (["--scores", "{d}/empty_dir"], "empty_dir"),
    (["--scores", "{d}/customers.csv"], "customers.csv")], new=True)
NEW += cases("output locations", ["alarm", "{d}/feedback.csv", "-q"], [
    (["-o", "{d}/a_file/o"], "not a folder"), (["-o", "{d}/a_file"], "not a folder")], new=True)
ALARM_COLS = ["alarm", "{d}/FILE", "-q", "-o", "{d}/al"]
for col in ("customer_id", "timestamp", "touchpoint", "nps", "satisfaction", "complaint"):
    if col in ("customer_id", "timestamp", "touchpoint"):
        NEW.append(Case("columns", tuple(a.replace("FILE", f"feedback_no_{col}.csv") for a in ALARM_COLS), col,
                        new=True))
    bad = {"customer_id": ["empty"], "timestamp": ["text", "empty", "negative"], "touchpoint": ["empty"],
           "nps": ["text", "nan", "inf", "negative", "huge", "1e300", "fraction"],
           "satisfaction": ["text", "nan", "inf", "negative", "huge", "1e300", "fraction"],
           "complaint": ["text", "negative"]}[col]
    NEW += [Case("columns", tuple(a.replace("FILE", f"feedback_{col}_{n}.csv") for a in ALARM_COLS), col, new=True)
            for n in bad]
NEW += [Case("columns", tuple(a.replace("FILE", f) for a in ALARM_COLS), needle, new=True) for f, needle in (
    ("feedback_nps_11.csv", "nps"), ("feedback_timestamp_bad.csv", "timestamp"),
    ("feedback_no_nps_sat.csv", "nps"), ("empty.csv", "empty.csv"), ("binary.toml", "binary.toml"),
    ("nope.csv", "nope.csv"))]
NEW.append(Case("unknown touchpoints", ("alarm", "{d}/feedback_touchpoint_mars.csv", "-q", "-o", "{d}/al", "--rules",
                                        "{d}/rules_no_default.toml"), "mars", new=True))

EVAL = ["evaluate", "{d}/log.csv", "--method", "map", "-o", "{d}/ev"]
NEW += cases("options", EVAL, [
    (["--holdout-start", "2020-01-01"], "--holdout-start"), (["--holdout-start", "2030-01-01"], "--holdout-start"),
    (["--holdout-start", "2024-01-01"], "--holdout-start"), (["--holdout-start", "2024-13-45"], "--holdout-start"),
    (["--holdout-start", "x"], "--holdout-start"),
    (["--holdout-start", "2024-07-01", "--holdout-end", "2024-06-01"], "--holdout-end"),
    (["--holdout-start", "2024-07-01", "--holdout-end", "nope"], "--holdout-end"),
    (["--holdout-start", "2024-07-01", "--holdout-end", "2030-01-01"], "--holdout-end"),
    (["--holdout-start", "2024-07-01", "--models", "nope"], "nope"),
    (["--holdout-start", "2024-07-01", "--models", "sbg"], "sbg"),
    (["--holdout-start", "2024-07-01", "--models", ""], "--models"),
    (["--holdout-start", "2024-07-01", "--time-unit", "fortnights"], "--time-unit"),
    (["--holdout-start", "2024-07-01", "--method", "magic"], "--method"),
    (["--holdout-start", "2024-07-01", "--draws", "0"], "--draws"),
    (["--holdout-start", "2024-07-01", "--seed", "-1"], "--seed"),
    (["--holdout-start", "2024-07-01", "--customer-col", "nope"], "nope"),
    (["--holdout-start", "2024-07-01", "--date-col", "amount"], "amount"),
    (["--holdout-start", "2024-07-01", "--priors", "{d}/priors_nan.toml"], "priors"),
    (["--holdout-start", "2024-07-01", "--priors", "{d}/binary.toml"], "binary.toml")], slow=True, new=True)
NEW += cases("output locations", ["evaluate", "{d}/log.csv", "--method", "map", "--holdout-start", "2024-07-01"], [
    (["-o", "{d}/a_file/o"], "not a folder"), (["-o", "{d}/a_file"], "not a folder")], slow=True, new=True)
EVAL_COLS = ["evaluate", "{d}/FILE", "--method", "map", "--holdout-start", "2024-07-01", "-o", "{d}/ev"]
for col in ("customer_id", "date", "amount"):
    bad = {"customer_id": ["empty"], "date": ["text", "empty", "negative"],
           "amount": ["text", "nan", "inf", "negative", "1e300"]}[col]
    if col != "amount":
        NEW.append(Case("columns", tuple(a.replace("FILE", f"log_no_{col}.csv") for a in EVAL_COLS), col, True, True))
    NEW += [Case("columns", tuple(a.replace("FILE", f"log_{col}_{n}.csv") for a in EVAL_COLS), col, True, True)
            for n in bad]
NEW += [Case("columns", tuple(a.replace("FILE", f) for a in EVAL_COLS), needle, True, True) for f, needle in (
    ("empty.csv", "empty.csv"), ("empty_dir", "empty_dir"), ("rfm.csv", "date"), ("binary.toml", "binary.toml"))]

PRED = ["predict", "{d}/fit_bg", "{d}/rfm.csv", "-q"]
NEW += cases("options", [*PRED, "-o", "{d}/p.csv"], [
    (["--horizon", h], "--horizon") for h in ("nan", "inf", "-1", "0", "1e308")] + [
    (["--discount-rate", r], "--discount-rate") for r in ("nan", "inf", "-1", "-inf")] + [
    (["--margin", m], "--margin") for m in ("0", "2", "nan", "-1")] + [
    (["--max-draws", "0"], "--max-draws"), (["--time-unit", "fortnights"], "--time-unit"),
    (["--spend", "{d}/fit_bg"], "gamma"), (["--spend", "{d}/fit_ret"], "gamma"), (["--spend", "{d}/a_file"], "a_file")],
    slow=True, new=True)
NEW += cases("output locations", PRED, [
    (["-o", "{d}/a_file/p.csv"], "not a folder"), (["-o", "{d}/p.xls"], ".xls"),
    (["-o", "{d}/empty_dir"], "empty_dir")],
    slow=True, new=True)
NEW += cases("incomplete outputs", ["predict"], [
    ([f"{{d}}/{fit}", "{d}/rfm.csv", "-o", "{d}/p.csv"], needle) for fit, needle in (
        ("fit", "sbg"), ("fit_ret", "retention"), ("fit_gg", "gamma"),
        ("fit_bg_tampered", "manifest"), ("fit_bg_binary", "posterior.nc"), ("fit_cut", "posterior.nc"),
        ("a_file", "a_file"), ("empty_dir", "empty_dir"))], slow=True, new=True)
PRED_COLS = ["predict", "{d}/fit_bg", "{d}/FILE", "-o", "{d}/p.csv", "-q"]
for col in ("frequency", "recency", "T"):
    NEW += [Case("columns", tuple(a.replace("FILE", f"rfm_{col}_{n}.csv") for a in PRED_COLS), col, True, True)
            for n in BAD_CELLS if not (n == "fraction" and col != "frequency")]
NEW += [Case("columns", tuple(a.replace("FILE", f) for a in PRED_COLS), needle, True, True) for f, needle in (
    ("rfm_recency_gt_T.csv", "recency"), ("tx_null_id.csv", "customer_id"), ("tx_bad_date.csv", "date"),
    ("tx_negative.csv", "amount"), ("empty.csv", "empty.csv"), ("empty_dir", "empty_dir"), ("panel.csv", "frequency"),
    ("binary.toml", "binary.toml"))]
NEW.append(Case("columns", ("predict", "{d}/fit_bg", "{d}/rfm_monetary_value_nan.csv", "--spend", "{d}/fit_gg", "-o",
                            "{d}/p.csv", "-q"), "monetary_value", True, True))
NEW.append(Case("options", ("predict", "{d}/fit_bg", "{d}/tx.csv", "-o", "{d}/p.csv", "-q", "--observation-end",
                            "1999-01-01"), "observation", True, True))

for fam in ("bgnbd", "pnbd", "mbgnbd"):
    if fam != "bgnbd":
        for col in ("frequency", "recency", "T"):
            NEW += [Case("columns", ("fit", fam, f"{{d}}/rfm_{col}_{n}.csv", "--method", "map", "-o", "{d}/f"), col,
                         True, True) for n in BAD_CELLS if not (n == "fraction" and col != "frequency")]
        NEW += [Case("columns", ("fit", fam, f"{{d}}/{f}", "--method", "map", "-o", "{d}/f"), needle, True, True)
                for f, needle in (("tx_negative.csv", "amount"), ("tx_null_id.csv", "customer_id"),
                                  ("tx_bad_date.csv", "date"), ("empty.csv", "empty.csv"), ("empty_dir", "empty_dir"))]
        NEW += cases("options", ["fit", fam, "{d}/rfm.csv", "--method", "map", "-o", "{d}/f"], [
            (["--seed", "-1"], "--seed"), (["--time-unit", "fortnights"], "--time-unit"),
            (["--method", "magic"], "--method"), (["--draws", "0"], "--draws"),
            (["--priors", "{d}/priors_nan.toml"], "priors"), (["--priors", "{d}/priors_binary.toml"], "priors"),
            (["-o", "{d}/a_file/o"], "not a folder")], slow=True, new=True)
    NEW.append(Case("columns", ("fit", fam, "{d}/rfm_recency_gt_T.csv", "--method", "map", "-o", "{d}/f"), "recency",
                    True, True))
CASES += NEW


def _scenario_file(d: Path, spec: str) -> str:
    """``@section.key=value`` becomes a scenario file setting that key."""
    section, _, rest = spec[1:].partition(".")
    key, _, value = rest.partition("=")
    path = d / "case.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    return str(path)


def classify(case: Case, d: Path, before: set[str]) -> tuple[str, str]:
    """Run one case in the scratch folder ``d`` (holding ``before``): its outcome and the line that says it."""
    args = [_scenario_file(d, a) if a.startswith("@") else a.format(d=d) for a in case.args]
    result = CliRunner().invoke(app, args)
    lines = result.stderr.strip().splitlines()
    written = sorted({p.name for p in d.iterdir()} - before - {"case.toml"})  # outputs, staging folders
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "internal error / traceback", repr(result.exception)
    if any("internal error" in line or "Traceback" in line for line in lines):
        return "internal error / traceback", lines[-1]
    if result.exit_code == 0:
        return "accepted", (lines[-1] if lines else result.stdout.strip().splitlines()[-1:] or [""])[0]
    line = lines[-1] if lines else ""
    if result.exit_code == 2 and len(lines) == 1 and not written and case.needle.lower() in line.lower():
        return "refused (exit 2, one line)", line
    return "other", f"exit {result.exit_code}, {len(lines)} lines, written {written}: {line}"


def run(selected: list[Case]) -> Counter:
    tally: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        for name, content in FILES.items():
            (template / name).write_bytes(content)
        prepare(template)
        if any(c.new for c in selected):
            prepare_new(template)
        before = {p.name for p in template.iterdir()}
        for i, case in enumerate(selected):
            d = Path(tmp) / f"case{i}"
            shutil.copytree(template, d, symlinks=True)
            kind, line = classify(case, d, before)
            tally[(case.klass, kind)] += 1
            if kind != "refused (exit 2, one line)":
                print(f"{kind} [{case.klass}]: tenure {' '.join(case.args)} -> {line[:200]}", flush=True)
            shutil.rmtree(d, ignore_errors=True)
    return tally


def report(tally: Counter) -> str:
    kinds = ["refused (exit 2, one line)", "internal error / traceback", "accepted", "other"]
    classes = sorted({k for k, _ in tally})
    rows = ["| class | cases | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
    for c in [*classes, "all"]:
        counts = [sum(v for (k, kd), v in tally.items() if (c == "all" or k == c) and kd == kind) for kind in kinds]
        rows.append(f"| {c} | {sum(counts)} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if "--new" in sys.argv:  # the operational commands only (their fit cases included)
        chosen = [c for c in CASES if c.new and (only is None or c.klass == only)]
    else:
        chosen = [c for c in CASES if not c.new and ("--fits" in sys.argv or not c.slow)
                  and (only is None or c.klass == only) and ("--fits-only" not in sys.argv or c.slow)]
    print(report(run(chosen)))
