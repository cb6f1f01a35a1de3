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
    """Draw the main trajectories (customers, churn, NPS, trust and enthusiasm, stages, profit) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = result.periods
    t = df["period"].to_numpy()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(t, df["active"], label="active at start")
    acquired = df["acquired_paid"] + df["acquired_organic"] + df["acquired_referral"]
    ax2 = ax.twinx()
    ax2.bar(t, acquired, alpha=0.25, color="tab:green", label="acquired")
    ax2.bar(t, -df["churned"], alpha=0.25, color="tab:red", label="churned")
    ax.set_title("Customers")
    ax.legend(loc="upper left")
    ax2.legend(loc="lower right", fontsize="small")
    ax = axes[0, 1]
    ax.plot(t, 100 * df["churn_rate"], label="observed")
    ax.plot(t, 100 * df["expected_churn_rate"], ls="--", label="mean hazard")
    ax.set_title("Monthly churn (%)")
    ax.legend()
    ax = axes[0, 2]
    ax.plot(t, 100 * df["nps"], color="tab:purple", label="NPS")
    ax.fill_between(t, 100 * df["nps_low"], 100 * df["nps_high"], color="tab:purple", alpha=0.2, label="95 % interval")
    ax.plot(t, df["trim_index"], color="tab:orange", label="TRI*M-style index")
    ax.set_title("NPS and TRI*M-style index")
    ax.legend(fontsize="small")
    ax = axes[1, 0]
    for col in ("mean_trust", "mean_enthusiasm", "mean_satisfaction"):
        ax.plot(t, df[col], label=col.removeprefix("mean_"))
    ax.set_title("Latent means")
    ax.legend()
    ax = axes[1, 1]
    stages = [df[c].to_numpy() for c in ("share_new", "share_satisfied", "share_devoted", "share_partner")]
    ax.stackplot(t, stages, labels=["new", "satisfied", "devoted", "partner"], alpha=0.8)
    ax.set_ylim(0, 1)
    ax.set_title("Loyalty stages")
    ax.legend(fontsize="small", loc="lower left")
    ax = axes[1, 2]
    ax.plot(t, df["profit"] / 1e3, label="profit")
    ax.plot(t, df["cumulative_discounted_profit"] / 1e6, label="cum. discounted (millions)")
    ax.set_title("Profit (thousands per month)")
    ax.legend()
    for a in axes.ravel():
        a.set_xlabel("period (month)")
    fig.suptitle(f"tenure simulate: {result.scenario.name}, seed {result.meta.get('seed')}")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
