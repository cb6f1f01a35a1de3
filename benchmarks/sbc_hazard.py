"""Simulation-based calibration (SBC) of the retention hazard model on small panels.

Talts et al. (2018): draw parameters θ* from the prior, simulate data from θ*, fit
the model, and record the rank of θ* among L posterior draws. If the data, the
compression and the sampler are all right, each rank is uniform on 0..L over
replications; a skew shows a biased posterior, a U or a hump over- or
under-confident intervals.

Each replication

1. draws every parameter of :class:`~tenure.models.retention.RetentionModel` from
   the SBC prior below: churn_intercept, the three score slopes, the tenure shift of
   each later band present (3-5 and 6-11 for 12 periods), churn_segment_sd and, with
   more than one segment, standardised segment offsets z_s (a_s = churn_intercept +
   churn_segment_sd · z_s);
2. simulates a panel with the independent generator of the tests
   (``tests/models/panelgen.py``: scores change only in surveyed periods, churn is a
   logistic hazard in the carried-forward scores), so the model is correctly specified;
3. reads it with :func:`~tenure.models.panel.read_panel`, compresses it with
   :func:`~tenure.models.panel.hazard_cells` and fits the model with the same prior by
   NUTS (nutpie, PyTensor C backend: about a second to start), exactly the path of
   ``tenure fit retention``;
4. thins the pooled chains to ``--rank-draws`` (99) equally spaced draws and records
   the rank of each true value among them (0..99), with the divergences and the
   smallest bulk ESS.

The SBC prior is narrower than the model's defaults, so that no replication makes a
panel where nearly everyone leaves in the first month, and is the prior of both the
simulation and the fit (SBC needs only that they agree; the defaults are tested by the
recovery tests): churn_intercept ~ Normal(−3, 0.5), each slope ~ Normal(0, 0.3), each
tenure shift ~ Normal(0, 0.5), churn_segment_sd ~ Gamma(2, 4) (the default until it became Gamma(4, 8)).

Uniformity: ranks binned into ``--bins`` (10) equal bins, Pearson chi-square against
the uniform, one p-value per parameter. Writes to ``--out``: ``sbc_ranks.csv`` (one
row per replication: seed, every true value, every rank, divergences, min ESS),
``sbc_summary.json`` (settings, p-values, bin counts) and ``sbc_ranks.png`` (one rank
histogram per parameter with the 99 % band of a uniform bin count).

Usage::

    python benchmarks/sbc_hazard.py --reps 100 --seed 20251124 --out runs/sbc

Deterministic for a seed (replication r uses the r-th child of ``SeedSequence(seed)``);
``--reps 10`` is a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))

from panelgen import Truth, simulate_panel
from tenure.models.panel import read_panel
from tenure.models.retention import RetentionModel

#: The SBC prior: used to draw the truth and given to the model as its prior.
SBC_PRIORS = {
    "churn_intercept": {"dist": "Normal", "mu": -3.0, "sigma": 0.5},
    "churn_trust": {"dist": "Normal", "mu": 0.0, "sigma": 0.3},
    "churn_enthusiasm": {"dist": "Normal", "mu": 0.0, "sigma": 0.3},
    "churn_satisfaction": {"dist": "Normal", "mu": 0.0, "sigma": 0.3},
    "churn_tenure": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
    "churn_segment_sd": {"dist": "Gamma", "alpha": 2.0, "beta": 4.0},
}
SEGMENT_NAMES = ("s1", "s2", "s3", "s4", "s5")  # sorted as the model sorts them
#: First period of each tenure band in the generator (and the model's default bands).
BANDS = (0, 3, 6, 12, 24)


def draw_truth(rng: np.random.Generator, n_segments: int, n_later_bands: int) -> dict[str, float]:
    """One draw of every parameter from :data:`SBC_PRIORS` (flat names, e.g. ``churn_tenure[0]``)."""
    p = SBC_PRIORS
    truth = {
        "churn_intercept": rng.normal(p["churn_intercept"]["mu"], p["churn_intercept"]["sigma"]),
        **{f"churn_{k}": rng.normal(0.0, p[f"churn_{k}"]["sigma"]) for k in ("trust", "enthusiasm", "satisfaction")},
        **{f"churn_tenure[{j}]": rng.normal(0.0, p["churn_tenure"]["sigma"]) for j in range(n_later_bands)},
    }
    if n_segments > 1:
        sd_spec = p["churn_segment_sd"]
        truth["churn_segment_sd"] = rng.gamma(sd_spec["alpha"], 1.0 / sd_spec["beta"])
        for s in range(n_segments):
            truth[f"churn_segment[{s}]"] = truth["churn_intercept"] + truth["churn_segment_sd"] * rng.normal()
    return {k: float(v) for k, v in truth.items()}


def simulate(truth: dict[str, float], n_segments: int, n_later_bands: int, customers: int, periods: int,
             seed: int) -> pl.DataFrame:
    """A panel from the independent generator with these coefficients."""
    tenure = [truth[f"churn_tenure[{j}]"] for j in range(n_later_bands)]
    tenure += [0.0] * (len(BANDS) - 1 - n_later_bands)  # bands the panel never reaches
    if n_segments > 1:
        offsets = tuple(truth[f"churn_segment[{s}]"] - truth["churn_intercept"] for s in range(n_segments))
    else:
        offsets = (0.0,)
    t = Truth(churn_intercept=truth["churn_intercept"], churn_trust=truth["churn_trust"],
              churn_enthusiasm=truth["churn_enthusiasm"], churn_satisfaction=truth["churn_satisfaction"],
              churn_tenure=tuple(tenure), churn_segment=offsets, xsell_segment=(0.0,) * n_segments,
              segments=SEGMENT_NAMES[:n_segments])
    df, _ = simulate_panel(customers, periods, seed=seed, truth=t, max_start=0)
    return df


def posterior_draws(idata, name: str, n_segments: int) -> np.ndarray:
    """Pooled draws (chain-major) of one flat parameter name."""
    post = idata.posterior
    if "[" in name:
        base, j = name[:-1].split("[")
        values = post[base].values[..., int(j)]
    else:
        values = post[name].values
    return values.reshape(-1)


def one_replication(rep: int, child: np.random.SeedSequence, args: argparse.Namespace) -> dict[str, float]:
    """Draw, simulate, fit and rank; returns one row of ``sbc_ranks.csv``."""
    import arviz as az

    draw_seed, data_seed, fit_seed = (int(s) for s in child.generate_state(3))
    n_later = sum(1 for b in BANDS[1:] if b < args.periods)
    truth = draw_truth(np.random.default_rng(draw_seed), args.segments, n_later)
    panel = read_panel(simulate(truth, args.segments, n_later, args.customers, args.periods, data_seed))
    model = RetentionModel(panel, SBC_PRIORS)
    cells = model.cells
    model.sampler_options = {**model.sampler_options, "backend": "pytensor"}  # C backend: starts in ~1 s
    present = model.coords()["tenure_band"]
    if len(present) != n_later:
        raise RuntimeError(f"replication {rep}: tenure bands present {present}, expected {n_later}")
    idata = model.fit(method="mcmc", draws=args.draws, tune=args.tune, chains=args.chains, seed=fit_seed % 2**31).idata
    row: dict[str, float] = {"rep": rep, "data_seed": data_seed, "rows": cells.n_rows,
                             "events": int(cells.events.sum())}
    for name, value in truth.items():
        draws = posterior_draws(idata, name, args.segments)
        keep = draws[np.linspace(0, draws.size - 1, args.rank_draws).round().astype(int)]
        row[f"true:{name}"] = value
        row[f"rank:{name}"] = int(np.sum(keep < value))
    row["divergences"] = int(idata.sample_stats["diverging"].sum())
    ess = az.ess(idata, var_names=list(RetentionModel.named_parameters))
    row["min_ess_bulk"] = float(min(float(np.min(ess[v])) for v in ess.data_vars))
    return row


def uniformity(ranks: np.ndarray, rank_draws: int, bins: int) -> tuple[float, float, list[int]]:
    """Pearson chi-square of binned ranks (0..rank_draws) against the uniform: (statistic, p, counts)."""
    edges = np.linspace(0, rank_draws + 1, bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    chi2, p = stats.chisquare(counts)
    return float(chi2), float(p), counts.tolist()


def plot(ranks: pl.DataFrame, names: list[str], rank_draws: int, bins: int, pvalues: dict[str, float],
         path: Path) -> None:
    """One rank histogram per parameter, with the 99 % band of a bin count under uniformity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = ranks.height
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
    edges = np.linspace(0, rank_draws + 1, bins + 1)
    for ax, name in zip(axes.ravel(), names, strict=False):
        ax.axhspan(lo, hi, color="0.85")
        ax.axhline(n / bins, color="0.5", lw=0.8)
        ax.hist(ranks[f"rank:{name}"].to_numpy(), bins=edges, color="C0", edgecolor="white")
        ax.set_title(f"{name}\np = {pvalues[name]:.2f}", fontsize=9)
        ax.set_xlim(0, rank_draws + 1)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"SBC of the retention hazard: {n} replications, ranks among {rank_draws} draws "
                 "(grey: 99 % band of a uniform bin)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="replications (at least 100 for the record)")
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--customers", type=int, default=600, help="customers per simulated panel")
    parser.add_argument("--periods", type=int, default=12, help="periods per simulated panel")
    parser.add_argument("--segments", type=int, default=3, help="segments (1: no pooled intercepts)")
    parser.add_argument("--draws", type=int, default=500, help="posterior draws per chain")
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--rank-draws", type=int, default=99, help="thinned draws ranked against the truth")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/sbc"))
    args = parser.parse_args()
    if not 1 <= args.segments <= len(SEGMENT_NAMES):
        parser.error(f"--segments must be 1 to {len(SEGMENT_NAMES)}")
    if (args.rank_draws + 1) % args.bins:
        parser.error("--bins must divide --rank-draws + 1")
    warnings.filterwarnings("ignore", message=".*BLAS.*")
    args.out.mkdir(parents=True, exist_ok=True)
    children = np.random.SeedSequence(args.seed).spawn(args.reps)
    rows = []
    start = time.perf_counter()
    for rep, child in enumerate(children):
        t0 = time.perf_counter()
        rows.append(one_replication(rep, child, args))
        r = rows[-1]
        print(f"rep {rep:3d}: {r['rows']:5d} rows, {r['events']:4d} churns, {r['divergences']} divergences, "
              f"min ESS {r['min_ess_bulk']:.0f}, {time.perf_counter() - t0:.1f} s", flush=True)
    seconds = time.perf_counter() - start
    ranks = pl.DataFrame(rows)
    ranks.write_csv(args.out / "sbc_ranks.csv")
    names = [c.removeprefix("rank:") for c in ranks.columns if c.startswith("rank:")]
    results = {}
    for name in names:
        chi2, p, counts = uniformity(ranks[f"rank:{name}"].to_numpy(), args.rank_draws, args.bins)
        results[name] = {"chi2": chi2, "df": args.bins - 1, "p": p, "counts": counts}
    pvalues = {k: v["p"] for k, v in results.items()}
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sbc_priors": SBC_PRIORS,
        "seconds": seconds,
        "replications_with_divergences": int((ranks["divergences"] > 0).sum()),
        "divergences_total": int(ranks["divergences"].sum()),
        "min_ess_bulk": float(ranks["min_ess_bulk"].min()),
        "median_rows": float(ranks["rows"].median()), "median_events": float(ranks["events"].median()),
        "uniformity": results,
        "min_p": min(pvalues.values()),
        "bonferroni_min_p": min(1.0, min(pvalues.values()) * len(pvalues)),
    }
    (args.out / "sbc_summary.json").write_text(json.dumps(summary, indent=2))
    plot(ranks, names, args.rank_draws, args.bins, pvalues, args.out / "sbc_ranks.png")
    print(f"\n{args.reps} replications in {seconds:.0f} s; median {summary['median_rows']:.0f} rows, "
          f"{summary['median_events']:.0f} churns; divergences in {summary['replications_with_divergences']} "
          f"replications ({summary['divergences_total']} in all); min bulk ESS {summary['min_ess_bulk']:.0f}")
    print(f"chi-square on {args.bins} bins ({args.bins - 1} df), p-value per parameter:")
    for name, r in results.items():
        print(f"  {name:24s} chi2 {r['chi2']:6.2f}  p {r['p']:.3f}  bins {r['counts']}")
    print(f"smallest p {summary['min_p']:.3f}; times {len(pvalues)} parameters (Bonferroni) "
          f"{summary['bonferroni_min_p']:.3f}")
    print(f"wrote {args.out / 'sbc_ranks.csv'}, {args.out / 'sbc_summary.json'}, {args.out / 'sbc_ranks.png'}")


if __name__ == "__main__":
    main()
