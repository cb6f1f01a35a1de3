"""What each kind of report says: the answer first (sentences and numbers), then the evidence.

One function per kind of run reads the checked files of a :class:`~tenure.report.runs.Run`
and returns the template's context: ``headline`` (the verdict, one sentence each),
``numbers`` (key figures with units), ``sections`` (titled groups of figures and tables),
``settings`` (the scenario or settings behind the run, in full). The page itself is the
template's (``templates/*.html.j2``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import polars as pl

from tenure.errors import InputError
from tenure.report import figures as fg
from tenure.report.figures import MONEY, Figure
from tenure.report.runs import Run

MONTH = "period (month)"


def num(x: Any, digits: int = 0) -> str:
    """A number with thousands separated; 'n/a' when missing or not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:,.{digits}f}" if math.isfinite(v) else "n/a"


def _finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (``None``, the JSON form of a missing value, is not)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _f(x: Any, spec: str, scale: float = 1.0) -> str:
    """``x`` (times ``scale``) formatted with ``spec``; 'n/a' when missing (JSON null) or not finite."""
    if not _finite(x):
        return "n/a"
    return format(scale * float(x), spec)


def pct(x: Any, digits: int = 1, sign: bool = False) -> str:
    """A share (0-1) in per cent."""
    try:
        v = 100 * float(x)
    except (TypeError, ValueError):
        return "n/a"
    return (f"{v:+.{digits}f} %" if sign else f"{v:.{digits}f} %") if math.isfinite(v) else "n/a"


def money(x: Any, digits: int = 0) -> str:
    """An amount in the scenario's currency units, millions shortened."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    return f"{v / 1e6:,.2f} M" if abs(v) >= 1e6 else f"{v:,.{digits}f}"


def table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> dict[str, Any]:
    """A table of the report: title, column headers (with units), rows of strings, a note."""
    return {"title": title, "columns": columns, "rows": [[str(c) for c in r] for r in rows], "note": note}


def section(title: str, intro: str = "", figures: list[Figure] | None = None,
            tables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"title": title, "intro": intro, "figures": figures or [], "tables": tables or []}


def _read(run: Run, stem: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    """A table of the run (Parquet or CSV), only the columns asked for; None when the run has none."""
    for name in (f"{stem}.parquet", f"{stem}.csv"):
        if name in run.files:
            path = run.files[name]
            try:
                if name.endswith(".parquet"):
                    return pl.read_parquet(path, columns=columns)
                return pl.read_csv(path, columns=columns, infer_schema_length=10_000)
            except Exception as exc:  # polars raises several types on a damaged file
                raise InputError(f"{path}: cannot read: {str(exc).splitlines()[0]}") from None
    return None


def _embedded(run: Run, name: str, title: str, caption: str) -> list[Figure]:
    """A figure the command wrote, inlined; nothing when the run has none."""
    path = run.files.get(name)
    return [Figure(title, fg.data_uri_file(path), caption, title)] if path is not None else []


def _settings(title: str, obj: Any) -> dict[str, Any]:
    return {"title": title, "text": json.dumps(obj, indent=2, ensure_ascii=False, default=str)}


# ---------------------------------------------------------------------------------------------- simulate


def simulate(run: Run) -> dict[str, Any]:
    """Customers, churn, NPS, TRI*M index and profit over the run; the strategic, tactical, operational levels."""
    from tenure.metrics import TRIM_BANDS

    df = _read(run, "periods")
    if df is None:
        raise InputError(f"{run.path}: no periods table (periods.parquet or periods.csv)")
    doc = run.json("run.json")
    meta, scenario = doc.get("meta", {}), doc.get("scenario", {})
    first, last = df.row(0, named=True), df.row(-1, named=True)
    t = df["period"].to_numpy()
    months = df.height
    acquired = int(df["acquired_paid"].sum() + df["acquired_organic"].sum() + df["acquired_referral"].sum())
    churned = int(df["churned"].sum())
    change = last["active_end"] / first["active"] - 1 if first["active"] else math.nan
    headline = [
        f"Over {months} months the base went from {num(first['active'])} to {num(last['active_end'])} customers "
        f"({pct(change, sign=True)}): {num(acquired)} acquired, {num(churned)} churned "
        f"(mean monthly churn {pct(df['churn_rate'].mean(), 2)}).",
        f"NPS in the last month {_f(last['nps'], '+.1f', 100)} (95 % interval {_f(last['nps_low'], '+.1f', 100)} to "
        f"{_f(last['nps_high'], '+.1f', 100)}), against {_f(first['nps'], '+.1f', 100)} "
        f"in the first; TRI*M-style index "
        f"{_f(last['trim_index'], '.1f')} ({_band(last['trim_index'])}), from {_f(first['trim_index'], '.1f')}.",
        f"Profit over the run {money(df['profit'].sum())} {MONEY}; cumulative discounted profit "
        f"{money(last['cumulative_discounted_profit'])} {MONEY}.",
    ]
    numbers = [("customers at start → end", f"{num(first['active'])} → {num(last['active_end'])}"),
               ("mean monthly churn", pct(df["churn_rate"].mean(), 2)),
               ("NPS, last month", _f(last['nps'], '+.1f', 100)),
               ("TRI*M-style index, last month", _f(last['trim_index'], '.1f')),
               (f"profit over the run ({MONEY})", money(df["profit"].sum()))]

    zones = [(lo, min(hi, 100.0), name) for lo, hi, name in TRIM_BANDS]
    strategic = section("Strategic: the relationship", "Index, typology, recommendation and loyalty stages of "
                        "the whole base, month by month.", [
        Figure("TRI*M-style index", _trim_figure(t, df["trim_index"].to_numpy(), zones),
               "Index on 0–100 of the surveyed customers each month; shaded bands: below 40 endangered, 40–70 open "
               "to competitors, above 70 bound."),
        Figure("Typology of customers", fg.stacked_shares(t, {
            "apostles": df["share_apostles"].to_numpy(), "mercenaries": df["share_mercenaries"].to_numpy(),
            "hostages": df["share_hostages"].to_numpy(), "terrorists": df["share_terrorists"].to_numpy()},
            title="TRI*M typology shares", xlabel=MONTH),
            "Share of surveyed customers in each typology; apostles are satisfied and loyal, terrorists neither."),
        Figure("Net Promoter Score", fg.lines(t, {"NPS": 100 * df["nps"].to_numpy()},
                                               bands={"NPS": (100 * df["nps_low"].to_numpy(),
                                                              100 * df["nps_high"].to_numpy())},
                                               title="NPS with 95 % interval", xlabel=MONTH,
                                               ylabel="NPS (points, −100 to 100)", hline=0.0),
               "Promoters minus detractors among respondents; the band is the 95 % interval of the survey sample."),
        Figure("Loyalty stages", fg.stacked_shares(t, {
            "new": df["share_new"].to_numpy(), "satisfied": df["share_satisfied"].to_numpy(),
            "devoted": df["share_devoted"].to_numpy(), "partner": df["share_partner"].to_numpy()},
            title="Loyalty-stage shares", xlabel=MONTH),
            "Share of active customers at each stage of the loyalty ladder; a growing top band is a maturing base."),
    ])
    tactical = section("Tactical: segments and channels", "", _tactical(run, df, t))
    operational = section("Operational: incidents and recovery", "", [
        Figure("Incidents", fg.lines(t, {"incidents": df["incidents"].to_numpy(),
                                         "detected": df["incidents_detected"].to_numpy(),
                                         "repaired": df["incidents_repaired"].to_numpy()},
                                     title="Service incidents per month", xlabel=MONTH,
                                     ylabel="incidents (count per month)"),
               "Incidents suffered, detected by the alarm system and repaired; the gaps are unresolved incidents."),
        Figure("Alarm coverage", fg.lines(t, {"coverage": 100 * df["alarm_coverage"].to_numpy()},
                                          title="Alarm-system coverage", xlabel=MONTH,
                                          ylabel="customers covered (%)", ylim=(0, 100)),
               "Share of customers whose incidents the feedback system can detect."),
        Figure("Cost of recovery", fg.lines(t, {"recovery": df["cost_recovery"].to_numpy()},
                                            title="Cost of service recovery", xlabel=MONTH,
                                            ylabel=f"{MONEY} per month"),
               "What repairing detected incidents cost each month."),
    ])
    economics = section("Economics", "", [
        Figure("Monthly profit", fg.lines(t, {"revenue": df["revenue"].to_numpy(),
                                              "costs": df["cost_total"].to_numpy(),
                                              "profit": df["profit"].to_numpy()},
                                          title="Revenue, costs and profit", xlabel=MONTH,
                                          ylabel=f"{MONEY} per month", hline=0.0),
               "Monthly amounts, undiscounted."),
        Figure("Cumulative discounted profit", fg.lines(t, {"cumulative": df["cumulative_discounted_profit"]
                                                              .to_numpy()},
                                                        title="Cumulative discounted profit", xlabel=MONTH,
                                                        ylabel=MONEY, hline=0.0),
               "Profit discounted at the market's monthly rate and summed from the first month."),
    ], [table(f"Costs over the run ({MONEY})", ["cost", f"total ({MONEY})", "share of costs"],
              _cost_rows(df))])
    overview = section("Overview", "", _embedded(run, "trajectories.png", "Trajectories (trajectories.png)",
                                                  "The figure the run wrote: six panels of the main trajectories."))
    return {"kind": "simulate", "title": f"tenure simulate: {scenario.get('meta', {}).get('name', '')}",
            "subtitle": f"{num(meta.get('customers'))} customers, {months} months, seed {meta.get('seed')}",
            "headline": headline, "numbers": numbers,
            "sections": [strategic, tactical, operational, economics, overview],
            "settings": [_settings("Scenario (run.json: scenario)", scenario), _settings("Run (run.json: meta)", meta),
                         _settings("Manifest", run.manifest)]}


def _band(index: float) -> str:
    from tenure.metrics import trim_band

    return trim_band(float(index)) if _finite(index) else "n/a"


def _trim_figure(t: np.ndarray, index: np.ndarray, zones: list[tuple[float, float, str]]) -> str:
    with fg.figure(8.0, 3.2, margins=fg.margins(8.0, 3.2)) as (fig, ax):
        shades = ["#F4CCCC", "#FFF2CC", "#D9EAD3"]
        for (lo, hi, name), shade in zip(zones, shades, strict=False):
            ax.axhspan(lo, hi, color=shade, alpha=0.7, lw=0)
            ax.text(t[0], (lo + hi) / 2, f" {name}", va="center", fontsize=7, color="#444444")
        ax.plot(t, index, color=fg.OKABE_ITO[0], lw=1.8)
        ax.set_ylim(0, 100)
        ax.set_title("TRI*M-style index with its interpretation bands", loc="left")
        ax.set_xlabel(MONTH)
        ax.set_ylabel("index (0–100)")
        return fg.svg_uri(fig)


def _cost_rows(df: pl.DataFrame) -> list[list[str]]:
    cols = [c for c in df.columns if c.startswith("cost_") and c != "cost_total"]
    total = float(df["cost_total"].sum()) or math.nan
    return [[c.removeprefix("cost_"), num(df[c].sum()), pct(df[c].sum() / total)] for c in cols]


def _tactical(run: Run, df: pl.DataFrame, t: np.ndarray) -> list[Figure]:
    """Acquisition by channel (periods table); active customers and churn by segment and channel (customers)."""
    out = [Figure("Acquisition by channel", fg.lines(t, {
        "paid": df["acquired_paid"].to_numpy(), "organic": df["acquired_organic"].to_numpy(),
        "referral": df["acquired_referral"].to_numpy()}, title="New customers by channel", xlabel=MONTH,
        ylabel="customers acquired (per month)"),
        "Paid campaigns, organic arrivals and referrals by promoters, each month.")]
    cust = _read(run, "customers", ["cohort", "tenure", "churned", "segment", "channel"])
    if cust is None:
        return out
    periods = pl.DataFrame({"period": t.astype(np.int64)})
    for by, what in (("segment", "segment"), ("channel", "acquisition channel")):
        active, churn = _by_group(cust, periods, by)
        out.append(Figure(f"Active customers by {what}", fg.lines(t, active, title=f"Active customers by {what}",
                                                                   xlabel=MONTH, ylabel="customers at the start"),
                          f"Customers active at the start of each month, by {what} (from customers.*)."))
        out.append(Figure(f"Churn by {what}", fg.lines(t, churn, title=f"Monthly churn by {what}", xlabel=MONTH,
                                                        ylabel="churn rate (% per month)"),
                          f"Customers leaving in the month over those active at its start, by {what}."))
    return out


def _by_group(cust: pl.DataFrame, periods: pl.DataFrame,
              by: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Active customers and churn rate per period for each value of ``by``: counts of the per-customer rows."""
    start = pl.col("cohort").cast(pl.Int64).clip(lower_bound=0)
    end = (pl.col("cohort") + pl.col("tenure")).cast(pl.Int64)  # first period no longer active
    horizon = int(periods["period"].max()) + 1
    rows = cust.select(pl.col(by).cast(pl.String), start.alias("start"), end.alias("end"),
                       pl.col("churned").cast(pl.Boolean))
    joins = rows.group_by(by, "start").len().rename({"start": "period", "len": "joins"})
    leaves = rows.group_by(by, "end").agg(pl.len().alias("leaves"),
                                          pl.col("churned").sum().alias("churns")).rename({"end": "period"})
    active: dict[str, np.ndarray] = {}
    churn: dict[str, np.ndarray] = {}
    for g in sorted(rows[by].unique().to_list()):
        grid = periods.join(joins.filter(pl.col(by) == g).drop(by), on="period", how="left") \
            .join(leaves.filter(pl.col(by) == g).drop(by), on="period", how="left").fill_null(0).sort("period")
        # a customer counts from the period ``start`` and is gone from the period ``end`` on
        a = np.cumsum(grid["joins"].to_numpy().astype(np.int64) - grid["leaves"].to_numpy().astype(np.int64))
        # churns counted in the period they take effect: a customer whose last active month is t churned in t
        c = np.roll(grid["churns"].to_numpy().astype(np.int64), -1)
        c[-1] = int(leaves.filter((pl.col(by) == g) & (pl.col("period") == horizon))["churns"].sum())
        active[g] = a
        churn[g] = 100 * np.divide(c, a, out=np.zeros(len(a)), where=a > 0)
    return active, churn


# ---------------------------------------------------------------------------------------------- compare


def _paired(runs: pl.DataFrame, key: tuple[float, str], current: pl.DataFrame, by: list[str]) -> np.ndarray:
    """Customer equity of the allocation ``key`` minus the current split's, paired by ``by`` (seed, market)."""
    a = runs.filter((pl.col("acquisition_share") == key[0]) & (pl.col("mix") == key[1])
                    & (pl.col("stage") != "current"))
    a = a.group_by(by).agg(pl.col("customer_equity").first())
    d = a.join(current, on=by, suffix="_current")
    return (d["customer_equity"] - d["customer_equity_current"]).to_numpy()


def _gains(runs: pl.DataFrame, points: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    current = runs.filter(pl.col("stage") == "current").group_by(by).agg(pl.col("customer_equity").first())
    rows = []
    for r in points.iter_rows(named=True):
        d = _paired(runs, (r["acquisition_share"], r["mix"]), current, by)
        if d.size == 0:
            continue
        rows.append({"acquisition_share": r["acquisition_share"], "mix": r["mix"], "gain": float(d.mean()),
                     "gain_q05": float(np.quantile(d, 0.05)), "gain_q95": float(np.quantile(d, 0.95)),
                     "p_beats": float((d > 0).mean()), "pairs": int(d.size)})
    return pl.DataFrame(rows)


def _gain_figure(g: pl.DataFrame, what: str) -> Figure:
    labels = [f"{100 * a:.0f} % acq., {m}" for a, m in zip(g["acquisition_share"], g["mix"], strict=True)]
    src = fg.paired_gain(labels, g["gain"].to_numpy(), g["gain_q05"].to_numpy(), g["gain_q95"].to_numpy(),
                         g["p_beats"].to_numpy(), title="Gain over the current split, paired",
                         xlabel="customer equity minus the current split's", unit=MONEY)
    return Figure("Paired gain over the current split", src,
                  f"Each allocation against the current split on the same {what} (common random numbers): dot the "
                  "mean gain, line its 90 % band, P the probability it beats the current split; right of the zero "
                  "line is better.")


def _five(ratio: float) -> str:
    """Whether a cost ratio bears out the 'five times' rule (4 to 6, as tenure.simulations.compare judges it)."""
    if not _finite(ratio):
        return "cannot be judged"
    return "holds" if 4.0 <= ratio <= 6.0 else "does not hold"


def _q90(x: dict[str, Any], digits: int = 2) -> str:
    """A 90 % band 'low–high' of a {mean, q05, q95} summary."""
    return f"{num(x.get('q05'), digits)}–{num(x.get('q95'), digits)}"


def _cost_sentences(m: dict[str, Any], over: str) -> list[str]:
    """The marginal costs to acquire and to retain one more customer, and the 'five times' rule at the margin and
    on average, from :func:`tenure.simulations.compare.marginal_analysis` (compare and decide alike)."""
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    ratio = num(m["marginal_cost_ratio"], 2)
    if _finite(m.get("marginal_cost_ratio_q05")):
        band = _q90({"q05": m["marginal_cost_ratio_q05"], "q95": m["marginal_cost_ratio_q95"]})
        ratio += f" (90 % over {over}: {band})"
    return [f"One more customer costs {num(mca['mean'], 2)} {MONEY} to acquire (90 % over {over}: {_q90(mca)}) "
            f"against {num(mcr['mean'], 2)} to retain ({_q90(mcr)}): a marginal ratio of {ratio}.",
            f"“Acquiring costs five times as much as retaining” {_five(m['marginal_cost_ratio'])} here at the "
            f"margin and {_five(m['average_cost_ratio'])} on average (average ratio "
            f"{num(m['average_cost_ratio'], 2)}: {num(m['average_cost_to_acquire'], 2)} to acquire against "
            f"{num(m['average_cost_to_keep_for_a_lifetime'], 2)} to keep a customer for a lifetime)."]


def _cost_numbers(m: dict[str, Any]) -> list[tuple[str, str]]:
    """The two cost ratios for the page's key figures."""
    return [("marginal cost ratio, acquire / retain", num(m["marginal_cost_ratio"], 2)),
            ("average cost ratio", num(m["average_cost_ratio"], 2))]


def _cost_table(m: dict[str, Any], over: str) -> dict[str, Any]:
    """Marginal and average costs per customer, with the 90 % bands of the marginal ones."""
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    ratio_band = _q90({"q05": m.get("marginal_cost_ratio_q05"), "q95": m.get("marginal_cost_ratio_q95")})
    return table(f"Marginal and average costs ({MONEY} per customer; ratios without unit; 90 % bands over {over})",
                 ["measure", "mean", "90 % band"], [
                     ["marginal cost to acquire one more customer", num(mca["mean"], 2), _q90(mca)],
                     ["marginal cost to retain one more customer", num(mcr["mean"], 2), _q90(mcr)],
                     ["marginal cost ratio, acquire / retain", num(m["marginal_cost_ratio"], 2),
                      ratio_band if "marginal_cost_ratio_q05" in m else ""],
                     ["average cost to acquire (paid)", num(m["average_cost_to_acquire"], 2), ""],
                     ["average cost to keep a customer for a lifetime",
                      num(m["average_cost_to_keep_for_a_lifetime"], 2), ""],
                     ["average cost ratio", num(m["average_cost_ratio"], 2), ""]],
                 "The “five times” rule holds where a ratio lies between 4 and 6.")


def compare(run: Run) -> dict[str, Any]:
    """The best split, its paired gain over the current one, marginal and average costs, the five-times rule."""
    doc = run.json("compare.json")
    s, b, c, m = doc["settings"], doc["best"], doc["current"], doc["marginal"]
    runs = _read(run, "compare")
    points = pl.DataFrame(doc["points"])
    seeds = len(s.get("seeds", []))
    g = _gains(runs, points, ["seed"]) if runs is not None else pl.DataFrame()
    best = g.filter((pl.col("acquisition_share") == b["acquisition_share"]) & (pl.col("mix") == b["mix"])) \
        if g.height else g
    horizon = f"{s['periods']} months"
    headline = [f"Best split: {pct(b['acquisition_share'])} of the budget of {money(s['total_budget_per_period'])} "
                f"{MONEY} a month to acquisition, retention mix '{b['mix']}' (customer equity "
                f"{money(b['customer_equity'])} {MONEY} over {horizon}, {num(s['customers'])} customers at the start)."]
    if best.height:
        r = best.row(0, named=True)
        headline.append(f"Against the current split ({pct(c['acquisition_share'])} to acquisition) it gains "
                        f"{money(r['gain'])} {MONEY} of customer equity (90 % band {money(r['gain_q05'])} to "
                        f"{money(r['gain_q95'])}); it beats the current split in {pct(r['p_beats'], 0)} of "
                        f"{r['pairs']} paired seeds.")
    headline += _cost_sentences(m, "seeds")
    numbers = [("best split: share to acquisition", pct(b["acquisition_share"])),
               (f"gain over the current split ({MONEY})", money(best.row(0, named=True)["gain"]) if best.height
                else "n/a"),
               ("P(beats the current split)", pct(best.row(0, named=True)["p_beats"], 0) if best.height else "n/a"),
               *_cost_numbers(m)]
    figs = _embedded(run, "compare.png", "Customer equity by allocation (compare.png)",
                     "Customer equity over the share of the budget going to acquisition, one line per retention mix, "
                     "with 90 % bands over seeds; the star is the best split, the square the current one.")
    if g.height:
        figs.append(_gain_figure(g, "seeds"))
    returns = {"acquisition": m["return_on_acquisition"], "retention": m["return_on_retention"],
               **m.get("return_on_lever", {})}
    figs.append(Figure("Return on the next unit of budget", fg.bars(
        list(returns), {"return": np.array([v["mean"] for v in returns.values()])}, title="Return per extra unit "
        "of spend", ylabel=f"customer equity per {MONEY} spent",
        errors={"return": (np.array([v["q05"] for v in returns.values()]),
                           np.array([v["q95"] for v in returns.values()]))}),
        "Customer equity gained per extra currency unit spent on each lever at the best split, with 90 % bands; "
        "above zero the lever pays."))
    alloc = table(f"Allocations, best first (customer equity in {MONEY}, 90 % bands over {seeds} seeds)",
                  ["acquisition (%)", "retention mix", f"customer equity ({MONEY})", "customers at the end",
                   "NPS (points)", "churn (% per month)", f"paid CAC ({MONEY})"],
                  [[pct(r["acquisition_share"]), r["mix"], f"{money(r['customer_equity'])} ("
                    f"{money(r['customer_equity_q05'])}–{money(r['customer_equity_q95'])})", num(r["customers_end"]),
                    _f(r['nps'], '+.1f', 100), pct(r["churn_rate"], 2), num(r["acquisition_cost_paid"], 2)]
                   for r in points.sort("customer_equity", descending=True).head(15).iter_rows(named=True)])
    marg = _cost_table(m, f"{seeds} seeds")
    sections = [section("The allocations", "", figs, [alloc, marg])]
    cf = doc.get("closed_form")
    if cf:
        sections.append(section("Blattberg-Deighton closed form", "", [], [table(
            "Closed-form optimum", ["item", "value"],
            [[k, json.dumps(v) if isinstance(v, list | dict) else v] for k, v in cf.items()])]))
    return {"kind": "compare", "title": f"tenure compare: {s.get('scenario', '')}",
            "subtitle": f"budget {money(s['total_budget_per_period'])} {MONEY} per month, {horizon}, "
                        f"{num(s['customers'])} customers, {seeds} seeds",
            "headline": headline, "numbers": numbers, "sections": sections,
            "settings": [_settings("Settings (compare.json: settings)", s), _settings("Manifest", run.manifest)]}


def decide(run: Run) -> dict[str, Any]:
    """The split with the least expected loss across calibrated markets, its paired gain and P(beats current)."""
    doc = run.json("uncertainty.json")
    s, b, c = doc["settings"], doc["best"], doc["current"]
    points = pl.DataFrame(doc["points"])
    runs = _read(run, "uncertainty")
    headline = [
        f"Best choice (least expected loss across {s['markets']} calibrated markets): {pct(b['acquisition_share'], 0)} "
        f"of the budget of {money(s['total_budget_per_period'])} {MONEY} a month to acquisition, retention mix "
        f"'{b['mix']}'.",
        f"Against the current split ({pct(c['acquisition_share'], 0)} to acquisition) it gains "
        f"{money(b['gain_vs_current'])} {MONEY} of customer equity on average over {s['periods']} months (90 % band "
        f"{money(b['gain_vs_current_q05'])} to {money(b['gain_vs_current_q95'])}, paired by market and seed); the "
        f"probability that it beats the current split is {pct(b['p_beats_current'], 0)}.",
        f"Expected loss of choosing it: {money(b['expected_loss'])} {MONEY}; probability it is the best allocation: "
        f"{pct(b['p_best'], 0)}.",
    ]
    m = doc.get("marginal")
    if m:
        headline += _cost_sentences(m, "markets and seeds")
    else:
        headline.append("Marginal costs to acquire and to retain, and the “five times” rule: not in this run (written "
                        "by an earlier tenure); run `tenure decide` again for them.")
    numbers = [("best split: share to acquisition", pct(b["acquisition_share"], 0)),
               (f"gain over the current split ({MONEY})", money(b["gain_vs_current"])),
               ("P(beats the current split)", pct(b["p_beats_current"], 0)),
               (f"expected loss ({MONEY})", money(b["expected_loss"])), *(_cost_numbers(m) if m else [])]
    figs = _embedded(run, "uncertainty.png", "Gain over the current split (uncertainty.png)",
                     "The figure the command wrote: the paired gain of each allocation over the current split with "
                     "its 90 % band across markets and seeds, and the probability it beats the current split.")
    if runs is not None:
        g = _gains(runs, points, ["market", "seed"])
        if g.height:
            figs.append(_gain_figure(g, "calibrated markets and seeds"))
    t = table(f"Allocations by expected loss ({MONEY}; 90 % bands over markets and seeds)",
              ["acquisition (%)", "retention mix", f"customer equity ({MONEY})", f"gain vs current ({MONEY})",
               "P(beats current)", f"expected loss ({MONEY})", "P(best)"],
              [[pct(r["acquisition_share"], 0), r["mix"],
                f"{money(r['customer_equity'])} ({money(r['customer_equity_q05'])}–{money(r['customer_equity_q95'])})",
                f"{money(r['gain_vs_current'])} ({money(r['gain_vs_current_q05'])} to "
                f"{money(r['gain_vs_current_q95'])})", pct(r["p_beats_current"], 0), money(r["expected_loss"]),
                pct(r["p_best"], 0)] for r in points.sort("expected_loss").head(15).iter_rows(named=True)])
    return {"kind": "decide", "title": f"tenure decide: {s.get('scenario', '')}",
            "subtitle": f"{s['markets']} calibrated markets × {len(s['seeds'])} seeds, {num(s['sample_customers'])} "
                        f"customers simulated per market, {s['periods']} months",
            "headline": headline, "numbers": numbers,
            "sections": [section("The allocations", "", figs,
                                 [t, *([_cost_table(m, "markets and seeds")] if m else [])])],
            "settings": [_settings("Settings (uncertainty.json: settings)", s), _settings("Manifest", run.manifest)]}


# ---------------------------------------------------------------------------------------------- calibrate


def calibrate(run: Run) -> dict[str, Any]:
    """Whether the calibrated markets fit the panel, and which statistics miss."""
    doc = run.json("calibration.json")
    chk = doc.get("check") or {}
    conv = "converged" if doc.get("converged") else "stopped at the iteration limit"
    if chk.get("done"):
        verdict = (f"The calibrated markets fit the panel: {pct(chk['share_inside_90'], 0)} of "
                   f"{len(chk['statistics'])} check statistics inside their 90 % intervals, none beyond 3.5 "
                   "predictive sd." if chk["fits"] else
                   f"The calibrated markets do not fit the panel on {len(chk['misses'])} statistics (beyond 3.5 "
                   f"predictive sd): {', '.join(chk['misses'])}.")
    else:
        verdict = f"No predictive check: {chk.get('reason', 'switched off')}."
    miss_target = doc.get("misses") or []
    headline = [verdict,
                f"Gauss-Newton {conv} after {doc.get('iterations')} iterations on {len(doc['statistics'])} targeted "
                f"statistics and {len(doc['parameters'])} parameters; {doc.get('markets')} calibrated markets."]
    if miss_target:
        headline.append("Targeted statistics the calibration misses: " + ", ".join(map(str, miss_target)) + ".")
    numbers = [("verdict", "fits" if chk.get("fits") else ("misses" if chk.get("done") else "not checked")),
               ("check statistics inside 90 %", pct(chk.get("share_inside_90"), 0) if chk.get("done") else "n/a"),
               ("calibrated markets", num(doc.get("markets")))]
    figs = _embedded(run, "check.png", "Predictive check (check.png)",
                     "Panel (black) against the calibrated markets' mean and 90 % band, statistic by statistic.")
    st = doc["statistics"]
    figs.append(Figure("Targeted statistics", _z_figure([x["name"] for x in st], np.array([x["z"] for x in st])),
                       "Each statistic the calibration matches: how far the calibrated market lies from the panel, in "
                       "standard errors of the panel's statistic (z); beyond ±2 (dashed) the market misses it."))
    hist = doc.get("objective_history") or []
    if len(hist) > 1:
        figs.append(Figure("Convergence", fg.lines(np.arange(len(hist)), {"objective": np.array(hist, float)},
                                                   title="Calibration objective by iteration", xlabel="iteration",
                                                   ylabel="objective (weighted squared z, no unit)"),
                           "The distance between panel and simulated statistics; flat at the end means converged."))
    params = table("Calibrated parameters (model units, 90 % intervals)", ["parameter", "base", "calibrated",
                                                                            "90 % interval"],
                   [[p["key"], _f(p['base'], '.4g'), _f(p['estimate'], '.4g'),
                    f"{_f(p['q05'], '.4g')} to {_f(p['q95'], '.4g')}"]
                    for p in doc["parameters"]])
    stats = table("Targeted statistics (rates per month, shares, regression coefficients)",
                  ["statistic", "panel", "calibrated market", "z"],
                  [[x["name"], _f(x['observed'], '.4g'), _f(x['calibrated'], '.4g'), _f(x['z'], '+.1f')] for x in st])
    tables = [params, stats]
    if chk.get("done"):
        tables.append(table(f"Predictive check over {chk['markets']} calibrated markets", ["statistic", "panel",
                            "markets: mean", "90 % interval", "z (predictive sd)"],
                            [[x["name"], _f(x['observed'], '.4g'), _f(x['mean'], '.4g'),
                              f"{_f(x['q05'], '.4g')} to {_f(x['q95'], '.4g')}",
                               _f(x['z'], '+.1f')] for x in chk["statistics"]]))
    market = run.files["market.toml"].read_text(encoding="utf-8")
    return {"kind": "calibrate", "title": f"tenure calibrate: {run.path.name}",
            "subtitle": f"calibrated on {doc.get('source')}: {num(doc.get('panel_customers'))} customers, "
                        f"{doc.get('panel_periods')} months",
            "headline": headline, "numbers": numbers,
            "sections": [section("Fit to the panel", "", figs, tables)],
            "settings": [{"title": f"Calibrated market ({run.path.name})", "text": market},
                         _settings("Calibration (without statistics)",
                                   {k: v for k, v in doc.items() if k not in ("statistics", "check")})]}


def _z_figure(names: list[str], z: np.ndarray) -> str:
    with fg.figure(8.0, 3.4, margins={"left": 0.08, "right": 0.99, "bottom": 0.42, "top": 0.9}) as (fig, ax):
        x = np.arange(len(names))
        colours = [fg.OKABE_ITO[5] if abs(v) > 2 else fg.OKABE_ITO[0] for v in z]
        ax.bar(x, z, color=colours)
        for level in (-2, 2):
            ax.axhline(level, color="#333333", lw=0.8, ls="--")
        ax.axhline(0, color="#333333", lw=0.6)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        ax.set_title("Targeted statistics: calibrated market against the panel", loc="left")
        ax.set_ylabel("z (standard errors)")
        return fg.svg_uri(fig)


# ---------------------------------------------------------------------------------------------- fit


class PriorDensity:
    """A prior's density, quantile function and mean in closed form (``scipy.special``, not ``scipy.stats``).

    The report draws every prior as a curve; ``scipy.stats`` would do the same but takes about 0.9 s to
    import, a third of what a MAP fit's whole run should take. Parameters follow PyMC's conventions
    (Gamma's ``beta`` a rate, Weibull's ``alpha`` the shape and ``beta`` the scale).
    """

    def __init__(self, dist: str, p: dict[str, float]) -> None:
        self.dist, self.p = dist, p
        self._check()

    @property
    def _sp(self) -> Any:
        """``scipy.special``, imported when a curve needs it (0.4 s, which a flat-prior fit's report does not)."""
        from scipy import special

        return special

    def _check(self) -> None:
        need = {"Gamma": ("alpha", "beta"), "Beta": ("alpha", "beta"), "Weibull": ("alpha", "beta")}
        missing = [k for k in need.get(self.dist, ()) if k not in self.p]
        positive = [v for k, v in self.p.items() if k != "mu" and not v > 0]
        if self.dist not in _PRIOR_DEFAULTS or missing or positive:
            raise ValueError(f"{self.dist}: cannot draw this prior")

    def _get(self, key: str) -> float:
        return self.p.get(key, _PRIOR_DEFAULTS[self.dist].get(key, 0.0))

    def pdf(self, x: Any) -> np.ndarray:
        """The density at ``x`` (0 outside the support)."""
        sp, d, x = self._sp, self.dist, np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if d in ("Normal", "HalfNormal"):
                mu, sigma = (0.0 if d == "HalfNormal" else self._get("mu")), self._get("sigma")
                out = np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
                return np.where(x >= 0, 2 * out, 0.0) if d == "HalfNormal" else out
            if d == "StudentT":
                nu, mu, sigma = self._get("nu"), self._get("mu"), self._get("sigma")
                z = (x - mu) / sigma
                log = (sp.gammaln((nu + 1) / 2) - sp.gammaln(nu / 2) - 0.5 * math.log(nu * math.pi)
                       - math.log(sigma) - (nu + 1) / 2 * np.log1p(z * z / nu))
                return np.exp(log)
            if d == "HalfCauchy":
                beta = self._get("beta")
                return np.where(x >= 0, 2 / (math.pi * beta * (1 + (x / beta) ** 2)), 0.0)
            pos = x > 0
            safe = np.where(pos, x, 1.0)
            if d == "Gamma":
                a, b = self.p["alpha"], self.p["beta"]
                log = (a - 1) * np.log(safe) - b * safe + a * math.log(b) - sp.gammaln(a)
            elif d == "Exponential":  # its support includes 0
                lam = self._get("lam")
                pos, safe = x >= 0, np.where(x >= 0, x, 0.0)
                log = math.log(lam) - lam * safe
            elif d == "Beta":
                a, b = self.p["alpha"], self.p["beta"]
                pos = pos & (x < 1)
                safe = np.where(pos, x, 0.5)
                log = (a - 1) * np.log(safe) + (b - 1) * np.log1p(-safe) - sp.betaln(a, b)
            elif d == "LogNormal":
                mu, sigma = self._get("mu"), self._get("sigma")
                log = (-0.5 * ((np.log(safe) - mu) / sigma) ** 2 - np.log(safe) - math.log(sigma)
                       - 0.5 * math.log(2 * math.pi))
            else:  # Weibull
                a, b = self.p["alpha"], self.p["beta"]
                log = math.log(a / b) + (a - 1) * np.log(safe / b) - (safe / b) ** a
            return np.where(pos, np.exp(log), 0.0)

    def ppf(self, q: Any) -> np.ndarray:
        """The quantiles of probabilities ``q``."""
        sp, d, q = self._sp, self.dist, np.asarray(q, dtype=float)
        if d == "Normal":
            return self._get("mu") + self._get("sigma") * sp.ndtri(q)
        if d == "HalfNormal":
            return self._get("sigma") * sp.ndtri((1 + q) / 2)
        if d == "StudentT":
            return self._get("mu") + self._get("sigma") * sp.stdtrit(self._get("nu"), q)
        if d == "HalfCauchy":
            return self._get("beta") * np.tan(math.pi * q / 2)
        if d == "Gamma":
            return sp.gammaincinv(self.p["alpha"], q) / self.p["beta"]
        if d == "Exponential":
            return -np.log1p(-q) / self._get("lam")
        if d == "Beta":
            return sp.betaincinv(self.p["alpha"], self.p["beta"], q)
        if d == "LogNormal":
            return np.exp(self._get("mu") + self._get("sigma") * sp.ndtri(q))
        return self.p["beta"] * (-np.log1p(-q)) ** (1 / self.p["alpha"])  # Weibull

    def mean(self) -> float:
        """The mean (``inf`` for the half-Cauchy, ``nan`` for a Student t with ν ≤ 1)."""
        d = self.dist
        if d in ("Normal",):
            return self._get("mu")
        if d == "HalfNormal":
            return self._get("sigma") * math.sqrt(2 / math.pi)
        if d == "StudentT":
            return self._get("mu") if self._get("nu") > 1 else math.nan
        if d == "HalfCauchy":
            return math.inf
        if d == "Gamma":
            return self.p["alpha"] / self.p["beta"]
        if d == "Exponential":
            return 1 / self._get("lam")
        if d == "Beta":
            return self.p["alpha"] / (self.p["alpha"] + self.p["beta"])
        if d == "LogNormal":
            return math.exp(self._get("mu") + self._get("sigma") ** 2 / 2)
        return self.p["beta"] * math.gamma(1 + 1 / self.p["alpha"])  # Weibull


#: The distributions the report draws, with PyMC's defaults for the parameters a spec may omit.
_PRIOR_DEFAULTS: dict[str, dict[str, float]] = {
    "Normal": {"mu": 0.0, "sigma": 1.0}, "HalfNormal": {"sigma": 1.0}, "Gamma": {}, "Exponential": {"lam": 1.0},
    "Beta": {}, "HalfCauchy": {"beta": 1.0}, "StudentT": {"nu": 3.0, "mu": 0.0, "sigma": 1.0},
    "LogNormal": {"mu": 0.0, "sigma": 1.0}, "Weibull": {},
}


def _prior(spec: dict[str, Any]) -> PriorDensity | None:
    """The density of a prior spec ({'dist': 'Normal', 'mu': 0, 'sigma': 1}); None if not drawable."""
    d = spec.get("dist")
    p = {k: float(v) for k, v in spec.items() if k != "dist" and isinstance(v, int | float)}
    try:
        return PriorDensity(str(d), p)
    except ValueError:
        return None


def fit(run: Run) -> dict[str, Any]:
    """Each effect as a sentence with its interval, the diagnostics' verdict, forest, predictive check, priors."""
    from tenure.models import load

    if "posterior.nc" not in run.files:
        raise InputError(f"{run.path}: no posterior.nc in this fit folder")
    result = load(run.files["posterior.nc"])
    summary = result.summary()
    warnings = result.warnings()
    if result.method == "mcmc":
        verdict = ("Diagnostics: no divergences and every R-hat at most 1.01; the chains agree." if not warnings
                   else "Diagnostics: " + "; ".join(warnings) + ".")
    else:
        verdict = (f"Diagnostics: fitted by {result.method}, which has no chains to compare (R-hat and ESS are "
                   "for MCMC); intervals come from " + {"map": "the Laplace approximation at the mode.",
                                                        "bayesian-bootstrap": "the Bayesian bootstrap of the "
                                                                              "respondents."}.get(
                                                            result.method, "the fitted approximation."))
    headline = [*result.effects, verdict] if result.effects else [
        "This model reports no plain-language effects; the estimates are in the table below.", verdict]
    check = result.predictive_check
    parts = [] if check is None else check.get("parts", [check])  # the joint model saves two checks as one
    for part in parts:
        headline.insert(len(headline) - 1, _check_sentence(part))
    ds = result.data_summary
    numbers = [(k.replace("_", " "), num(v)) for k, v in ds.items()
               if isinstance(v, int | float) and not isinstance(v, bool)][:5]
    figs = _embedded(run, "forest.png", "Estimates (forest.png)",
                     "Each parameter's estimate (dot) and 90 % interval (line), intercepts, slopes and scale "
                     "parameters on their own axes; an interval crossing the zero line leaves the sign unsettled.")
    for name in sorted(n for n in run.files if n.endswith(".png") and n != "forest.png"):
        figs += _embedded(run, name, f"{name}", _OTHER_FIGURES.get(name, "A figure the fit wrote."))
    for part in parts:
        figs.append(Figure("Posterior predictive check", fg.predictive_check(part), part["caption"], part["title"]))
    if not parts:  # no aggregate check for this family: the leave-one-out check from the pointwise log-likelihood
        loo = _loo_figure(result)
        if loo is not None:
            figs.append(loo)
        elif result.method == "bayesian-bootstrap":
            headline.insert(len(headline) - 1, "No posterior predictive check: the Bayesian bootstrap reweights the "
                            "respondents themselves, so data replicated under it are the data by construction; the "
                            "index is descriptive, and its intervals are the bootstrap's.")
    figs.append(_prior_figure(result))
    est = "mode" if "mode" in summary.columns else "mean"
    cols = [c for c in ("r_hat", "ess_bulk") if c in summary.columns]
    est_table = table(f"Estimates ({est}, model scale: log-odds, log-rates or natural units)",
                      ["parameter", est, "sd", "90 % interval", *cols],
                      [[r["parameter"], _f(r[est], '.4g'), _f(r['sd'], '.3g'),
                        f"{_f(r['eti90_low'], '.4g')} to {_f(r['eti90_high'], '.4g')}",
                         *(_f(r[c], '.3g') for c in cols)]
                       for r in summary.iter_rows(named=True)])
    tables = [est_table]
    for part in parts:
        rows = part["rows"]
        several = len({r["group"] for r in rows}) > 1
        tables.append(table(f"{part['title']} ({part['y_label']}; 90 % band over {part['draws']} posterior draws)",
                            [*(["group"] if several else []), part["x_label"], "observed", "expected (mean)",
                             "90 % band", "observed inside the band"],
                            [[*([r["group"]] if several else []), r["x_label"],
                              num(r["observed"], 0 if float(r["observed"]).is_integer() else 1),
                              num(r["mean"], 1), f"{num(r['q05'], 1)} to {num(r['q95'], 1)}",
                              "yes" if r["q05"] <= r["observed"] <= r["q95"] else "no"] for r in rows]))
    data_table = table("Data the model was fitted on", ["item", "value"],
                       [[k.replace("_", " "), _data_value(v)] for k, v in ds.items()])
    return {"kind": "fit", "title": f"{run.manifest.get('command', 'tenure fit')}: {result.model_name}",
            "subtitle": f"method {result.method}, seed {run.manifest.get('seed')}"
                        + (f", time unit {result.time_unit}" if result.time_unit else ""),
            "headline": headline, "numbers": numbers,
            "sections": [section("Estimates and checks", "", figs, tables), section("Data", "", [], [data_table])],
            "settings": [_settings("Model configuration (priors, options, fit settings)", result.config),
                         _settings("Manifest", run.manifest)]}


def _check_sentence(check: dict[str, Any]) -> str:
    """The predictive check's verdict: how many observed values lie inside their 90 % band, and which do not."""
    rows = check["rows"]
    several = len({r["group"] for r in rows}) > 1
    out = [r for r in rows if not r["q05"] <= r["observed"] <= r["q95"]]
    what = check["title"].split(":")[0]
    text = (f"Posterior predictive check ({what.lower()}): {len(rows) - len(out)} of {len(rows)} observed values lie "
            f"inside their 90 % band over {check['draws']} posterior draws")
    if not out:
        return text + "; the fit reproduces the data on this check."
    axis = check["x_label"].split(" (")[0] + " " if check.get("style") == "line" else ""
    named = ", ".join(f"{axis}{r['x_label']}" + (f" ({r['group']})" if several else "") for r in out[:6])
    return text + f"; outside: {named}{', …' if len(out) > 6 else ''} (see the figure)."


def _data_value(v: Any) -> str:
    """An item of a fit's data summary as the table shows it: yes/no, a number, a list or mapping as JSON."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return num(v) if isinstance(v, int | float) else str(v)


#: Captions of the figures a model family writes besides forest.png.
_OTHER_FIGURES = {"grid.png": "TRI*M-style grid: each item's stated importance (mean answer) against its derived "
                  "importance (correlation with the index of the other items), coloured by its quadrant; the dashed "
                  "lines at the item means split the four quadrants."}


def _loo_figure(result: Any) -> Figure | None:
    """Leave-one-out predictive check: Pareto k per observation, from the saved pointwise log-likelihood."""
    import warnings

    if "log_likelihood" not in result.data.groups():
        return None
    import arviz as az

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = az.loo(result.idata, pointwise=True)
    except Exception:  # a likelihood ArviZ cannot read: no check rather than no report
        return None
    k = np.ravel(np.asarray(loo.pareto_k))
    bad = int((k > 0.7).sum())
    src = fg.pareto_k(k, title=f"Leave-one-out check: {bad} of {k.size} observations poorly predicted",
                      xlabel="observation (cell or row of the fitted data)")
    return Figure("Leave-one-out check", src,
                  "How well each observation is predicted by the fit to the others (PSIS-LOO); points above the "
                  f"dashed 0.7 line are poorly predicted or influential. Expected log predictive density "
                  f"{loo.elpd_loo:,.1f} (se {loo.se:,.1f}).")


def _prior_figure(result: Any) -> Figure:
    priors = result.config.get("priors", {})
    post = result.posterior_arrays
    panels = []
    for name in result.var_names:
        if name not in post:
            continue
        dims, values = post.draws(name)
        spec = priors.get(name)
        dist = _prior(spec) if isinstance(spec, dict) else None
        if not dims:
            panels.append((name, np.asarray(values).ravel(), dist))
        elif len(dims) == 1:  # one panel per element (per cohort, per covariate), the same prior on each
            for i, label in enumerate(post.labels(dims[0])):
                panels.append((f"{name}[{label}]", np.asarray(values[:, :, i]).ravel(), dist))
    src = fg.prior_posterior(panels[:12]) if panels else fg.lines(np.arange(1), {}, title="no scalar parameter",
                                                                  xlabel="", ylabel="")
    return Figure("Prior against posterior", src,
                  "For each parameter (each element of a vector): the posterior draws (bars) and the prior density "
                  "(line; none for a flat prior); a posterior "
                  "much narrower than its prior means the data, not the prior, set the estimate.")


# ---------------------------------------------------------------------------------------------- replications


def replications(run: Run) -> dict[str, Any]:
    """Totals over replications with their 90 % intervals over seeds, and the monthly bands."""
    doc = run.json("replications.json")
    totals = doc.get("totals", {})

    def band(key: str, scale: float = 1.0, digits: int = 0) -> str:
        v = totals.get(key) or {}
        return (f"{num(scale * v.get('mean', math.nan), digits)} (90 %: {num(scale * v.get('q05', math.nan), digits)}"
                f" to {num(scale * v.get('q95', math.nan), digits)})")

    n = doc.get("replications")
    headline = [f"Over {n} replications (seeds) of the market {doc.get('scenario')}: {band('customers_end')} "
                f"customers at the end, {band('acquired')} acquired and {band('churned')} churned; mean monthly "
                f"churn {band('mean_churn_rate', 100, 2)} %.",
                f"NPS in the last month {band('nps_last', 100, 1)}; profit over the run {band('profit')} {MONEY}."]
    rows = [[k, *(num(v.get(q), 2) if isinstance(v, dict) else num(v, 2) for q in ("mean", "q05", "q95"))]
            for k, v in totals.items()]
    figs = []
    summ = _read(run, "replications_summary")
    if summ is not None and summ.height:
        t = summ["period"].to_numpy()
        for col, title, unit, scale in (("active_end", "Customers at the end of each month", "customers", 1.0),
                                        ("churn_rate", "Monthly churn", "churn (% per month)", 100.0),
                                        ("nps", "Net Promoter Score", "NPS (points, −100 to 100)", 100.0),
                                        ("profit", "Monthly profit", f"{MONEY} per month", 1.0)):
            if {col, f"{col}_q05", f"{col}_q95"} <= set(summ.columns):
                figs.append(Figure(title, fg.lines(t, {col: scale * summ[col].to_numpy()}, bands={col: (
                    scale * summ[f"{col}_q05"].to_numpy(), scale * summ[f"{col}_q95"].to_numpy())}, title=title,
                    xlabel=MONTH, ylabel=unit), f"Mean over the {n} replications with the 90 % band over seeds."))
    return {"kind": "replications", "title": f"tenure simulate --replications: {doc.get('scenario', '')}",
            "subtitle": f"{n} replications", "headline": headline,
            "numbers": [("replications", num(n)), ("customers at the end (mean)",
                                                   num((totals.get("customers_end") or {}).get("mean")))],
            "sections": [section("Over the replications", "", figs,
                                 [table("Totals over the run (units as named; shares 0-1)",
                                        ["total", "mean", "5 %", "95 %"], rows)])],
            "settings": [_settings("replications.json", {k: v for k, v in doc.items() if k != "per_seed"}),
                         _settings("Manifest", run.manifest)]}


# ---------------------------------------------------------------------------------------------- evaluate


def _loo(r: dict[str, Any]) -> str:
    return "n/a" if not _finite(r["elpd_loo"]) else f"{_f(r['elpd_loo'], ',.1f')} (se {_f(r['elpd_loo_se'], ',.1f')})"


def _evaluate_verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Which model predicts the holdout best: per customer (MAE), in total (error %), and by LOO when present."""
    def told(r: dict[str, Any]) -> str:
        return (f"{r['model']} predicts {num(r['holdout_predicted'], 1)} against {num(r['holdout_actual'])} actual "
                f"({num(r['holdout_error_percent'], 1)} %), MAE {_f(r['mae'], '.3f')} "
                f"and RMSE {_f(r['rmse'], '.3f')} transactions "
                "per customer")

    if len(rows) == 1:
        return [f"One model evaluated: {told(rows[0])}; fit other models with --models to compare."]
    by_mae = sorted(rows, key=lambda r: r["mae"])
    best, runner_up = by_mae[0], by_mae[1]
    out = [f"Best at predicting each customer's holdout purchases: {best['model']} (lowest MAE, "
           f"{_f(best['mae'], '.3f')} "
           f"against {_f(runner_up['mae'], '.3f')} for {runner_up['model']}, the next).",
           "; ".join(told(r) for r in rows) + "."]
    total = min(rows, key=lambda r: abs(r["holdout_error_percent"]) if _finite(r["holdout_error_percent"])
                else math.inf)
    out.append(f"Closest on the holdout total: {total['model']} ({num(total['holdout_error_percent'], 1)} %)"
               + (", the same model." if total["model"] == best["model"] else
                  "; the totals and the per-customer errors disagree, so weigh what the forecast is for."))
    loo = [r for r in rows if _finite(r["elpd_loo"])]
    if len(loo) > 1:
        top = max(loo, key=lambda r: r["elpd_loo"])
        out.append(f"On the calibration period, PSIS-LOO prefers {top['model']} (elpd {_loo(top)}; higher is better).")
    return out


def evaluate(run: Run) -> dict[str, Any]:
    """Which transaction model predicts the holdout best, then the tracking, period and conditional figures."""
    ev = _read(run, "evaluation")
    if ev is None or ev.height == 0:
        raise InputError(f"{run.path}: no evaluation table (evaluation.csv)")
    rows = ev.to_dicts()
    for r in rows:
        for k in ("holdout_error_percent", "elpd_loo", "elpd_loo_se", "p_loo"):
            r[k] = math.nan if r.get(k) is None else float(r[k])
    m = run.manifest
    first = rows[0]
    unit = first["time_unit"]
    best = min(rows, key=lambda r: r["mae"])
    holdout = f"{m.get('holdout_start')} to {m.get('holdout_end')} ({_f(first['holdout_length'], '.4g')} {unit})"
    headline = [f"Holdout {holdout}: {num(first['customers'])} customers who first bought before "
                f"{m.get('holdout_start')} made {num(first['holdout_actual'])} repeat transactions (purchase days).",
                *_evaluate_verdict(rows)]
    numbers = [("best model (lowest MAE)" if len(rows) > 1 else "model (the only one)", best["model"]),
               ("holdout repeat transactions, actual", num(first["holdout_actual"])),
               (f"predicted by {best['model']} (error)",
                f"{num(best['holdout_predicted'], 1)} ({num(best['holdout_error_percent'], 1)} %)"),
               ("MAE / RMSE (transactions per customer)", f"{_f(best['mae'], '.3f')} / {_f(best['rmse'], '.3f')}"),
               ("customers", num(first["customers"]))]
    figs = [
        *_embedded(run, "tracking.png", "Tracking (tracking.png)",
                   f"Repeat transactions of the whole cohort per {unit.rstrip('s')} (left) and cumulated (right): the "
                   "actual line against each model's expectation; left of the dotted line the models saw the data "
                   "(calibration), right of it they forecast (holdout). A model whose line stays on the actual one "
                   "after the dotted line forecasts the total well."),
        *_embedded(run, "period_transactions.png", "Period transactions (period_transactions.png)",
                   "Customers by their number of repeat transactions in the calibration period (0 to 7+), actual "
                   "against simulated from each fitted population: bars of like height mean the model reproduces "
                   "the spread of buying, not only its mean (an in-sample check)."),
        *_embedded(run, "conditional_expectations.png", "Conditional expectations (conditional_expectations.png)",
                   "Mean holdout transactions per customer, grouped by calibration repeat transactions: the actual "
                   "means against each model's; a model close to the actual points at every frequency ranks "
                   "light and heavy buyers right, which is what the per-customer MAE scores."),
    ]
    eval_table = table("Holdout evaluation (transactions are repeat purchase days; holdout "
                       f"{_f(first['holdout_length'], '.4g')} {unit}; MAE and RMSE per customer)",
                       ["model", "method", "actual (transactions)", "predicted (transactions)", "error (%)",
                        "MAE (transactions per customer)", "RMSE (transactions per customer)",
                        "elpd LOO (se; MCMC only)"],
                       [[r["model"], r["method"], num(r["holdout_actual"]), num(r["holdout_predicted"], 1),
                         num(r["holdout_error_percent"], 1), _f(r['mae'], '.3f'), _f(r['rmse'], '.3f'), _loo(r)]
                        for r in rows],
                       "error % is (predicted − actual) / actual of the holdout total; LOO is n/a for MAP and VI fits.")
    fits = []
    est_tables = []
    for r in rows:
        name = r["model"]
        fits += _embedded(run, f"{name}/forest.png", f"{name}: estimates ({name}/forest.png)",
                          f"The {name} fit on the calibration period: each parameter's estimate (dot) and 90 % "
                          "interval (line).")
        summ = _read(run, f"{name}/summary")
        if summ is not None:
            est = "mode" if "mode" in summ.columns else "mean"
            est_tables.append(table(f"{name}: estimates ({est}; rates per {unit.rstrip('s')})",
                                    ["parameter", est, "sd", "90 % interval"],
                                    [[p["parameter"], _f(p[est], '.4g'), _f(p['sd'], '.3g'),
                                      f"{_f(p['eti90_low'], '.4g')} to {_f(p['eti90_high'], '.4g')}"]
                                     for p in summ.iter_rows(named=True)]))
    sections = [section("Holdout against the models", "The calibration fits forecast the holdout period they did "
                        "not see.", figs, [eval_table]),
                section("The fits", "One fit folder per model (posterior.nc, summary.csv, forest.png).", fits,
                        est_tables)]
    return {"kind": "evaluate", "title": f"tenure evaluate: {', '.join(r['model'] for r in rows)}",
            "subtitle": f"holdout {holdout}, method {first['method']}, seed {m.get('seed')}",
            "headline": headline, "numbers": numbers, "sections": sections,
            "settings": [_settings("Settings (manifest.json)", {k: v for k, v in m.items() if k != "files"}),
                         _settings("Manifest", m)]}


BUILDERS = {"simulate": simulate, "compare": compare, "decide": decide, "calibrate": calibrate, "fit": fit,
            "replications": replications, "evaluate": evaluate}
