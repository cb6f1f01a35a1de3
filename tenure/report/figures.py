"""The report's own figures, drawn with matplotlib from aggregates and inlined as SVG data URIs.

Every figure here is drawn from tables whose size does not grow with the number of
customers (the periods table, per-segment counts, a fit's summary and draws), so a report
stays small for any run. Colours are the Okabe-Ito palette, safe for colour-blind readers.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tenure.plotting import MONEY, OKABE_ITO, plain_numbers, rc

__all__ = ["MONEY", "OKABE_ITO", "Figure", "figure", "svg_uri"]
#: Fixed margins (inches) of a one-axis figure: room for tick labels such as 1,000,000 and a title.
_LEFT, _RIGHT, _BOTTOM, _TOP = 0.85, 0.15, 0.5, 0.35


def margins(width: float, height: float, left: float = _LEFT, right: float = _RIGHT) -> dict[str, float]:
    return {"left": left / width, "right": 1 - right / width, "bottom": _BOTTOM / height, "top": 1 - _TOP / height}


@dataclass
class Figure:
    """A figure of the report: its title, the image as a data URI, and a one-line caption on how to read it."""

    title: str
    src: str
    caption: str
    alt: str = ""


def data_uri_file(path: Path) -> str:
    """A PNG or SVG file as a data URI (the figures the commands already wrote)."""
    kind = "svg+xml" if path.suffix == ".svg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


@contextmanager
def figure(width: float = 8.0, height: float = 3.6, nrows: int = 1, ncols: int = 1,
           margins: dict[str, float] | None = None, **kw: Any) -> Iterator[Any]:
    """A matplotlib figure and axes in the report's style; read its SVG with :func:`svg_uri` inside the block.

    With ``margins`` (``subplots_adjust`` fractions) the layout is fixed, which draws several times faster
    than the constrained layout used otherwise (grids of panels).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({**rc(), "font.size": 9, "axes.titlesize": 10}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), constrained_layout=margins is None, **kw)
        if margins is not None:
            fig.subplots_adjust(**margins)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def svg_uri(fig: Any) -> str:
    """The figure as an SVG data URI (no date in it: the same data give the same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thousands(ax: Any, axis: str = "y") -> None:
    """Plain numbers with thousands separators on an axis (no 1e6 offset)."""
    plain_numbers(ax.yaxis if axis == "y" else ax.xaxis)


def lines(x: np.ndarray, series: dict[str, np.ndarray], *, title: str, xlabel: str, ylabel: str,
          bands: dict[str, tuple[np.ndarray, np.ndarray]] | None = None, ylim: tuple[float, float] | None = None,
          width: float = 8.0, height: float = 3.4, hline: float | None = None) -> str:
    """One axis of lines over ``x`` (with optional bands), as an SVG data URI."""
    with figure(width, height, margins=margins(width, height)) as (fig, ax):
        for i, (label, y) in enumerate(series.items()):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(x, y, color=colour, label=label, lw=1.6)
            if bands and label in bands:
                lo, hi = bands[label]
                ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
        if hline is not None:
            ax.axhline(hline, color="#555555", lw=0.8, ls="--")
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        thousands(ax)
        if len(series) > 1:
            ax.legend(fontsize="small", frameon=False, loc="best")
        return svg_uri(fig)


def stacked_shares(x: np.ndarray, shares: dict[str, np.ndarray], *, title: str, xlabel: str) -> str:
    """Shares (0-1) stacked over ``x``, in per cent, legend outside the plot."""
    with figure(8.0, 3.4, margins=margins(8.0, 3.4, right=1.4)) as (fig, ax):
        ax.stackplot(x, [100 * v for v in shares.values()], labels=list(shares), colors=OKABE_ITO[:len(shares)],
                     alpha=0.85)
        ax.set_ylim(0, 100)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of active customers (%)")
        ax.legend(fontsize="small", frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        return svg_uri(fig)


def bars(labels: list[str], groups: dict[str, np.ndarray], *, title: str, ylabel: str,
         errors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> str:
    """Grouped bars, one group per label, optional error bars (low, high)."""
    with figure(8.0, 3.2, margins=margins(8.0, 3.2)) as (fig, ax):
        n = len(groups)
        x = np.arange(len(labels))
        w = 0.8 / max(n, 1)
        for i, (name, v) in enumerate(groups.items()):
            pos = x - 0.4 + w * (i + 0.5)
            yerr = None
            if errors and name in errors:
                lo, hi = errors[name]
                yerr = [np.asarray(v) - lo, hi - np.asarray(v)]
            ax.bar(pos, v, w, label=name, color=OKABE_ITO[i % len(OKABE_ITO)], yerr=yerr, capsize=3)
        ax.set_xticks(x, labels)
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
        thousands(ax)
        if n > 1:
            ax.legend(fontsize="small", frameon=False)
        return svg_uri(fig)


def paired_gain(labels: list[str], mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, p_beats: np.ndarray, *,
                title: str, xlabel: str, unit: str) -> str:
    """The paired difference of each allocation against the current split: mean, 90 % band, zero line."""
    order = np.argsort(mean)
    y = np.arange(len(labels))
    with figure(8.0, 1.2 + 0.28 * len(labels)) as (fig, ax):
        colours = [OKABE_ITO[2] if p_beats[i] >= 0.5 else OKABE_ITO[5] for i in order]
        ax.hlines(y, lo[order], hi[order], color=colours, lw=2.5)
        ax.scatter(mean[order], y, color=colours, zorder=3, s=18)
        ax.axvline(0, color="#333333", lw=1)
        ax.set_yticks(y, [f"{labels[i]}  (P {100 * p_beats[i]:.0f} %)" for i in order])
        ax.set_title(title, loc="left")
        ax.set_xlabel(f"{xlabel} ({unit})")
        thousands(ax, "x")
        return svg_uri(fig)


def prior_posterior(panels: list[tuple[str, np.ndarray, Any]]) -> str:
    """Small multiples: each parameter's posterior draws (histogram) against its prior density (line)."""
    n = len(panels)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    height = 1.9 * rows + 0.3
    # Fixed margins (inches: a title above each panel, an axis label below) draw several times faster than
    # the constrained layout; the panels have no y tick labels, so nothing on their left needs measuring.
    layout = {"left": 0.15 / 8.0, "right": 1 - 0.15 / 8.0, "bottom": 0.45 / height, "top": 1 - 0.3 / height,
              "wspace": 0.12, "hspace": 0.75 / 1.6}
    with figure(8.0, height, rows, cols, margins=layout, squeeze=False) as (fig, axes):
        for ax, (name, draws, prior) in zip(axes.ravel(), panels, strict=False):
            draws = np.asarray(draws, dtype=float)
            draws = draws[np.isfinite(draws)]  # a fit's draws are finite; a file saved by other means may not be
            if draws.size == 0:
                ax.set_title(f"{name}: no finite draw", fontsize=8, loc="left")
                ax.set_yticks([])
                continue
            lo, hi = np.quantile(draws, [0.001, 0.999])
            if prior is not None:
                plo, phi = prior.ppf([0.01, 0.99])
                if np.isfinite(plo) and np.isfinite(phi):
                    lo, hi = min(lo, plo), max(hi, phi)
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            grid = np.linspace(lo, hi, 200)
            # One filled outline per histogram: the same picture as 40 bars, drawn and stored as one path.
            density, edges = np.histogram(draws, bins=40, range=(lo, hi), density=True)
            ax.stairs(density, edges, fill=True, color=OKABE_ITO[0], alpha=0.6, label="posterior")
            if prior is not None:
                ax.plot(grid, prior.pdf(grid), color=OKABE_ITO[1], lw=1.6, label="prior")
            ax.set_title(name, fontsize=8, loc="left")
            ax.set_yticks([])
            ax.set_xlabel("value (model scale)", fontsize=7)
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        axes.ravel()[0].legend(fontsize="x-small", frameon=False)
        return svg_uri(fig)


def pareto_k(k: np.ndarray, *, title: str, xlabel: str) -> str:
    """Pareto k of each observation's leave-one-out predictive fit, with the 0.7 threshold."""
    with figure(8.0, 2.8, margins=margins(8.0, 2.8)) as (fig, ax):
        x = np.arange(k.size)
        bad = k > 0.7
        ax.scatter(x[~bad], k[~bad], s=8, color=OKABE_ITO[0], label="k ≤ 0.7: predicted well enough")
        if bad.any():
            ax.scatter(x[bad], k[bad], s=14, color=OKABE_ITO[5], marker="x", label="k > 0.7: poorly predicted")
        ax.axhline(0.7, color="#333333", lw=0.8, ls="--")
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Pareto k (no unit)")
        ax.legend(fontsize="small", frameon=False)
        return svg_uri(fig)


def predictive_check(check: dict[str, Any]) -> str:
    """A posterior predictive check (:mod:`tenure.models.ppc`): observed dots against the replicated mean and band.

    ``style`` ``"line"``: one line with its 90 % band per group over ``x``; ``"bars"``: a bar per category
    (the mean) with a whisker for the band, the groups' bars side by side.
    """
    rows = check["rows"]
    groups = list(dict.fromkeys(r["group"] for r in rows))
    with figure(8.0, 3.4, margins=margins(8.0, 3.4)) as (fig, ax):
        for i, g in enumerate(groups):
            rs = [r for r in rows if r["group"] == g]
            x = np.array([r["x"] for r in rs])
            mean, lo, hi, obs = (np.array([r[k] for r in rs]) for k in ("mean", "q05", "q95", "observed"))
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            suffix = f" ({g})" if len(groups) > 1 else ""
            if check.get("style") == "bars":  # several groups: side by side within each category
                width = 0.8 / len(groups) if len(groups) > 1 else 0.6
                x = x + (i - (len(groups) - 1) / 2) * width
                ax.bar(x, mean, width * 0.9, color=colour, alpha=0.45, label=f"replicated: mean{suffix}")
                # the whisker spans the band itself: a skewed replicate can put its mean outside the band
                ax.errorbar(x, (lo + hi) / 2, yerr=(hi - lo) / 2, fmt="none", ecolor=colour, capsize=4, lw=1.2,
                            label="replicated: 90 % band" if i == 0 else None)
            else:
                ax.plot(x, mean, color=colour, lw=1.6, label=f"expected{suffix}")
                ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0, label=f"90 % band{suffix}")
            ax.scatter(x, obs, color="#000000" if len(groups) == 1 else colour, edgecolor="#000000", s=22,
                       zorder=3, label=f"observed{suffix}")
        if check.get("style") == "bars":
            ticks = dict(sorted({r["x"]: r["x_label"] for r in rows}.items()))
            ax.set_xticks(list(ticks), list(ticks.values()))
        ax.set_title(check["title"], loc="left")
        ax.set_xlabel(check["x_label"])
        ax.set_ylabel(check["y_label"])
        ax.set_ylim(bottom=0)
        thousands(ax)
        ax.legend(fontsize="small", frameon=False, loc="best", ncols=2 if len(groups) > 1 else 1)
        return svg_uri(fig)
