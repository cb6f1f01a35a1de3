"""Plain-language lines for effects on the log-odds or log-rate scale.

A coefficient b on the logit (or log) scale multiplies the odds (or rate) by e^b per
unit of its covariate. The line reports the posterior median of the percentage
change 100·(e^b − 1) and its equal-tailed interval, in words a manager can act on:
"one point more trust lowers the monthly odds of churning by 18 % (90 % interval 12–24 %)".
"""

from __future__ import annotations

import numpy as np


def equal_tailed(draws: np.ndarray, prob: float = 0.9) -> tuple[float, float]:
    """The central ``prob`` interval of the draws (quantiles (1 − prob)/2 and (1 + prob)/2)."""
    lo, hi = np.quantile(np.ravel(draws), [(1.0 - prob) / 2.0, (1.0 + prob) / 2.0])
    return float(lo), float(hi)


def _pct(x: float) -> str:
    """A percentage with sensible precision: 18, 4.2, 0.35."""
    a = abs(x)
    if a >= 10:
        return f"{a:.0f}"
    if a >= 1:
        return f"{a:.1f}"
    return f"{a:.2f}"


def ratio_line(log_ratio_draws: np.ndarray, subject: str, quantity: str, prob: float = 0.9) -> str:
    """One sentence for a multiplicative effect from draws of its logarithm.

    Parameters
    ----------
    log_ratio_draws
        Posterior draws of the coefficient on the log-odds or log-rate scale.
    subject
        What changes, e.g. ``"one point more trust"``.
    quantity
        What it acts on, e.g. ``"the monthly odds of churning"``.
    prob
        Probability of the equal-tailed interval.

    Examples
    --------
    >>> import numpy as np
    >>> ratio_line(np.log(np.linspace(0.75, 0.89, 101)), "one point more trust", "the monthly odds of churning")
    'one point more trust lowers the monthly odds of churning by 18 % (90 % interval 12–24 %)'
    """
    change = 100.0 * np.expm1(np.ravel(log_ratio_draws))
    mid = float(np.median(change))
    lo, hi = equal_tailed(change, prob)
    level = f"{100 * prob:.0f} %"
    if hi < 0:
        return f"{subject} lowers {quantity} by {_pct(mid)} % ({level} interval {_pct(hi)}–{_pct(lo)} %)"
    if lo > 0:
        return f"{subject} raises {quantity} by {_pct(mid)} % ({level} interval {_pct(lo)}–{_pct(hi)} %)"
    sign = "+" if mid >= 0 else "−"
    return (f"{subject} changes {quantity} by {sign}{_pct(mid)} % ({level} interval −{_pct(lo)} to "
            f"+{_pct(hi)} %): the data do not settle the direction")
