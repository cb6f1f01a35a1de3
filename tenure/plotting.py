"""The figures' shared look: a colour-blind-safe palette, money's unit and plain number formats.

Every figure tenure writes (the engine's trajectories, the models' forest plots, the
commands' comparisons and checks, the report's own figures) takes its colours and number
formats from here, so a colour means the same thing, and reads the same, everywhere.
"""

from __future__ import annotations

from typing import Any

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency;
#: the yellow, faint on white, comes last.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")

#: Money in a scenario has no named currency: every amount is in its currency units.
MONEY = "currency units"


def rc() -> dict[str, Any]:
    """matplotlib settings: the palette, no "1e6" offsets over the axes, SVG text kept as text."""
    import matplotlib

    return {"axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO)), "axes.formatter.useoffset": False,
            "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none", "svg.hashsalt": "tenure"}


def plain_numbers(axis: Any) -> None:
    """Tick labels of ``axis`` (``ax.xaxis`` / ``ax.yaxis``) as plain numbers with thousands separated."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"))
