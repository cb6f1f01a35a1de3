"""Closed-form curves that the engine, the models and the economics share, written once.

Plain NumPy on scalars or arrays, no argument checks (callers at the boundary
check theirs): the saturating response of a budget, the Blattberg–Deighton
response rates built on it, and the shifted-beta-geometric survival.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special


def saturating(spend: Any, k: Any) -> Any:
    """Share of an effect's maximum reached at ``spend``: 1 − exp(−k · spend), diminishing returns.

    Negative spend counts as none. Returns a float for scalar arguments (through ``math.exp``,
    the form the engine's results were fixed with), an array otherwise. Written 1 − exp rather
    than −expm1, which is more accurate below k · spend ≈ 1e-8 but differs in the last bits.
    """
    if np.ndim(spend) == 0 and np.ndim(k) == 0:
        return 1.0 - math.exp(-float(k) * max(float(spend), 0.0))
    return 1.0 - np.exp(-np.multiply(k, np.maximum(spend, 0.0)))


def response_rate(spend: Any, ceiling: Any, k: Any) -> Any:
    """Blattberg & Deighton (1996) response: c · (1 − exp(−k · x)), for acquisition and retention alike.

    Blattberg & Deighton (1996), "Manage marketing by the customer equity test", Harvard Business
    Review 74(4): a(A) = c_a (1 − e^{−k₁A}) per prospect, r(R) = c_r (1 − e^{−k₂R}) per customer
    and period.
    """
    return np.multiply(ceiling, saturating(spend, k))


def sbg_survival(alpha: Any, beta: Any, t: Any) -> Any:
    """Shifted-beta-geometric survival S(t) = B(α, β+t)/B(α, β); Fader & Hardie (2007), eq. (3).

    Each customer churns at the end of a period with probability θ ~ Beta(α, β); S(t) is
    the beta-mixture of (1 − θ)^t, evaluated through ``betaln`` so large β + t does not
    overflow. Broadcasts over arrays.
    """
    return np.exp(special.betaln(alpha, np.add(beta, t)) - special.betaln(alpha, beta))
