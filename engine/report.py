"""Writing a run's outputs: tables (Parquet or CSV), run.json and the trajectory figure.

Every file is written atomically (temporary name, then rename), so an
interrupted run never leaves a file that looks whole but is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tenure.io import write_atomic, write_json, write_table

if TYPE_CHECKING:
    from tenure.engine.simulator import SimulationResult


def write_outputs(result: SimulationResult, out_dir: str | Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write every table of ``result`` into ``out_dir``; return the paths by name.

    Files: ``periods``, ``cohorts``, ``customers`` (when tracked), ``panel`` (when
    sampled) as ``.parquet`` or ``.csv``; ``run.json`` (the resolved scenario
    and the run's metadata); ``trajectories.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "periods": write_table(result.periods, out / "periods", fmt),
        "cohorts": write_table(result.cohorts, out / "cohorts", fmt),
    }
    if result.customers is not None:
        paths["customers"] = write_table(result.customers, out / "customers", fmt)
    if result.panel is not None:
        paths["panel"] = write_table(result.panel, out / "panel", fmt)
    paths["run"] = write_json({"meta": result.meta, "scenario": result.scenario.data}, out / "run.json")
    paths["figure"] = write_atomic(out / "trajectories.png", lambda p: plot_trajectories(result, p))
    return paths


def plot_trajectories(result: SimulationResult, path: str | Path) -> None:
    """Draw the main trajectories (customers, churn, NPS and index, latent means, stages, profit) as PNG.

    Every axis is labelled with its unit (money in the scenario's currency units); monthly profit
    and cumulative discounted profit have their own axes (left and right, each labelled), and
    numbers are written out (no "1e6" offset). Colours: the colour-blind-safe Okabe-Ito palette.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenure.plotting import MONEY, OKABE_ITO, plain_numbers, rc

    blue, orange, green, purple, sky, red = OKABE_ITO[:6]
    df = result.periods
    t = df["period"].to_numpy()
    month = "period (month)"
    with matplotlib.rc_context({**rc(), "axes.spines.right": True}):
        fig, axes = plt.subplots(2, 3, figsize=(14, 7.6), layout="constrained")
        ax = axes[0, 0]
        ax.plot(t, df["active"], color=blue, label="active at start (left axis)")
        ax.set_ylabel("customers")
        acquired = df["acquired_paid"] + df["acquired_organic"] + df["acquired_referral"]
        ax2 = ax.twinx()
        ax2.bar(t, acquired, alpha=0.45, color=green, label="acquired (right axis)")
        ax2.bar(t, -df["churned"], alpha=0.45, color=red, label="churned (right axis, below 0)")
        ax2.axhline(0, color="#333333", lw=0.6)
        ax2.set_ylabel("customers per month: acquired +, churned −")
        ax.set_zorder(ax2.get_zorder() + 1)  # the line over the bars
        ax.patch.set_visible(False)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize="small", loc="upper left")
        ax.set_title("Customers")
        for a in (ax, ax2):
            plain_numbers(a.yaxis)
        ax = axes[0, 1]
        ax.plot(t, 100 * df["churn_rate"], color=blue, label="observed")
        ax.plot(t, 100 * df["expected_churn_rate"], ls="--", color=orange, label="mean hazard")
        ax.set_title("Monthly churn")
        ax.set_ylabel("churn (% of customers per month)")
        ax.legend(fontsize="small")
        ax = axes[0, 2]
        ax.plot(t, 100 * df["nps"], color=purple, label="NPS")
        ax.fill_between(t, 100 * df["nps_low"], 100 * df["nps_high"], color=purple, alpha=0.2,
                        label="NPS, 95 % interval")
        ax.plot(t, df["trim_index"], color=orange, label="TRI*M-style index (0–100)")
        ax.axhline(0, color="#333333", lw=0.6)
        ax.set_title("NPS and TRI*M-style index")
        ax.set_ylabel("points (NPS −100 to 100; index 0 to 100)")
        ax.legend(fontsize="small")
        ax = axes[1, 0]
        for col, colour in zip(("mean_trust", "mean_enthusiasm", "mean_satisfaction"), (blue, orange, green),
                               strict=True):
            ax.plot(t, df[col], color=colour, label=col.removeprefix("mean_"))
        ax.set_title("Latent means")
        ax.set_ylabel("mean latent score (model scale)")
        ax.legend(fontsize="small")
        ax = axes[1, 1]
        stages = [100 * df[c].to_numpy() for c in ("share_new", "share_satisfied", "share_devoted", "share_partner")]
        ax.stackplot(t, stages, labels=["new", "satisfied", "devoted", "partner"], colors=[sky, blue, orange, green],
                     alpha=0.85)
        ax.set_ylim(0, 100)
        ax.set_title("Loyalty stages")
        ax.set_ylabel("share of active customers (%)")
        ax.legend(fontsize="small", loc="lower left")
        ax = axes[1, 2]
        ax.plot(t, df["profit"], color=blue, label="monthly profit (left axis)")
        ax.axhline(0, color="#333333", lw=0.6)
        ax.set_ylabel(f"profit ({MONEY} per month)")
        ax2 = ax.twinx()
        ax2.plot(t, df["cumulative_discounted_profit"], color=orange, ls="--",
                 label="cumulative discounted profit (right axis)")
        ax2.set_ylabel(f"cumulative discounted profit ({MONEY})")
        for a in (ax, ax2):
            plain_numbers(a.yaxis)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize="small", loc="upper left")
        ax.set_title("Profit")
        for a in axes.ravel():
            a.set_xlabel(month)
        fig.suptitle(f"tenure simulate: {result.scenario.name}, {result.meta.get('customers', '')} customers at the "
                     f"start, {len(t)} months, seed {result.meta.get('seed')}")
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
