"""Philox4x32-10, a counter-based random number generator (Salmon et al. 2011, Random123).

Every random draw in the engine is a pure function of (seed, customer id, period,
purpose): the 128-bit counter holds the customer id (two words), the period and
the purpose of the draw, and the 64-bit key holds the seed. No state is carried
between draws, so the result of a run does not depend on the number of threads,
shards or workers, nor on the order in which customers are visited.

The functions are Numba ``@njit`` helpers meant to be inlined into the kernels of
:mod:`tenure.engine.kernels`; they are also callable from Python for tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint32, uint64

# Philox4x32 multipliers and Weyl key increments (Random123, philox.h).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85

# Purposes of draws: the fourth counter word. One constant per independent use.
PURPOSE_STEP_A = 1  # experience noise, incident, detection, repair
PURPOSE_STEP_B = 2  # churn, cross-sell, survey sampling, spare
PURPOSE_SURVEY_A = 3  # NPS, TRI*M overall, recommend, repurchase
PURPOSE_SURVEY_B = 4  # TRI*M advantage, trust, enthusiasm, satisfaction items
PURPOSE_INIT_A = 5  # segment, initial tenure, latent start values
PURPOSE_INIT_B = 6  # base churn propensity (gamma variates, rejection loop)
PURPOSE_INIT_C = 7  # initial stage, value and enthusiasm noise
PURPOSE_PANEL = 8  # membership of the panel sample
PURPOSE_GAMMA = 9  # further words for the gamma rejection sampler
PURPOSE_FEEDBACK = 10  # simulated contact feedback: touchpoint, time in the month, rounding, complaint

_INV_2_32 = 1.0 / 4294967296.0


@njit(inline="always", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):  # pragma: no cover - compiled
    """Ten rounds of Philox4x32 on counter (c0..c3) with key (k0, k1); returns four uint32."""
    c0 = uint32(c0)
    c1 = uint32(c1)
    c2 = uint32(c2)
    c3 = uint32(c3)
    k0 = uint32(k0)
    k1 = uint32(k1)
    for _ in range(10):
        p0 = uint64(PHILOX_M0) * uint64(c0)
        p1 = uint64(PHILOX_M1) * uint64(c2)
        hi0 = uint32(p0 >> uint64(32))
        lo0 = uint32(p0 & uint64(0xFFFFFFFF))
        hi1 = uint32(p1 >> uint64(32))
        lo1 = uint32(p1 & uint64(0xFFFFFFFF))
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = uint32(k0 + uint32(PHILOX_W0))
        k1 = uint32(k1 + uint32(PHILOX_W1))
    return c0, c1, c2, c3


@njit(inline="always", cache=True)
def draw4(customer_id, period, purpose, k0, k1):  # pragma: no cover - compiled
    """Four uint32 words for one customer, period and purpose."""
    cid = uint64(customer_id)
    return philox4x32(
        uint32(cid & uint64(0xFFFFFFFF)), uint32(cid >> uint64(32)), uint32(period), uint32(purpose), k0, k1
    )


@njit(inline="always", cache=True)
def to_unit(x):  # pragma: no cover - compiled
    """A uint32 word mapped to a float64 uniform in the open interval (0, 1)."""
    return (float(x) + 0.5) * _INV_2_32


def seed_key(seed: int) -> tuple[int, int]:
    """Split a non-negative integer seed (< 2**64) into the two 32-bit key words."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    s = int(seed)
    return s & 0xFFFFFFFF, s >> 32


@njit(cache=True)
def philox_block(counters, k0, k1):  # pragma: no cover - compiled
    """Philox4x32-10 of an (n, 4) uint32 counter array with one key; for tests and tools."""
    out = np.empty_like(counters)
    for i in range(counters.shape[0]):
        a, b, c, d = philox4x32(counters[i, 0], counters[i, 1], counters[i, 2], counters[i, 3], k0, k1)
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
        out[i, 3] = d
    return out


def normal_table(bits: int = 12) -> np.ndarray:
    """Standard-normal quantiles at the midpoints of 2**bits equal-probability bins.

    A uint32 word's top ``bits`` bits index the table: a normal variate with one
    integer shift and one load, no transcendental in the hot loop. The
    distribution is the normal discretised to 4096 equiprobable values (tails cut
    at ±3.66); the engine uses it for experience and survey noise, where that
    resolution is far below the noise's own uncertainty.
    """
    from scipy.special import ndtri

    n = 1 << bits
    return ndtri((np.arange(n) + 0.5) / n).astype(np.float32)
