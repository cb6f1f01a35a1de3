"""Numba kernels: one period of every customer, and the birth of new customers.

The kernels are pure functions over structure-of-arrays state, a :class:`State`
of arrays (one per attribute, narrow dtypes), plus three parameter vectors built
by the simulator:

- ``g``: global coefficients (dynamics, churn, cross-sell, survey), index ``G_*``;
- ``s``: one row per segment, index ``S_*``;
- ``p``: this period's lever effects, computed once per period from budgets, index ``P_*``.

Customers do not interact inside a kernel: everything they share (word of
mouth, acquisition) goes through the integer aggregates the kernel returns. The
aggregates are summed per fixed block of customers into an int64 array
(latent averages as 2**24 fixed point, money in cents), so totals are exact and
identical for any number of threads, shards or workers. docs/model.md gives the
equations in prose.

Each kernel is one block function (``BLOCK`` customers) called by two drivers
of three lines: one over Numba's thread pool (``prange``), one on this thread
(for small calls, where waking the pool costs more than the work). Both run the
same blocks, so their results are the same bit for bit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic
from tenure.engine.rng import (
    PURPOSE_GAMMA,
    PURPOSE_INIT_A,
    PURPOSE_INIT_B,
    PURPOSE_INIT_C,
    PURPOSE_PANEL,
    PURPOSE_STEP_A,
    PURPOSE_STEP_B,
    PURPOSE_SURVEY_A,
    PURPOSE_SURVEY_B,
    draw4,
    to_unit,
)

from tenure.panel_format import ANSWER_COLUMNS, ENGINE_PANEL_COLUMNS, ENGINE_PANEL_INDEX, TRIM_COLUMNS

BLOCK = 4096  # customers per reduction block: fixed, so totals never depend on threads
FX = 16777216.0  # 2**24: fixed-point scale of latent sums

# -- global coefficients -------------------------------------------------------------
G_QUALITY_NOISE = 0
G_SEVERITY = 1
G_SAT_RATE = 2
G_VALUE_RATE = 3
G_TRUST_GAIN = 4
G_TRUST_LOSS_INC = 5
G_TRUST_LOSS_DIS = 6
G_ENTH_GAIN = 7
G_ENTH_DECAY = 8
G_DELIGHT = 9
G_UP_SAT = 10
G_UP_TRUST0 = 11  # three values: stages new, satisfied, devoted
G_UP_PERIODS = 14
G_DOWN_DIS = 15
G_CH_SAT = 16
G_CH_TRUST = 17
G_CH_ENTH = 18
G_CH_STAGE0 = 19  # four values
G_CH_INC = 23
G_PROTECT = 24
G_REF_TRUST = 25
G_REF_ENTH = 26
G_X_INT = 27
G_X_TRUST = 28
G_X_ENTH = 29
G_X_TE = 30
G_X_PROD = 31
G_SURVEY_RATE = 32
G_ITEM_NOISE = 33
G_NPS_NOISE = 34
G_NPS_INT = 35
G_NPS_SAT = 36
G_NPS_TRUST = 37
G_NPS_ENTH = 38
G_CATALOGUE = 39
G_RESTORE = 40
G_REF_TRUST_BONUS = 41
G_REF_ENTH_BONUS = 42
G_PANEL_FRACTION = 43
G_NPS_LATENT_PROMOTER = 44  # latent recommendation from which a customer counts as a promoter
G_NPS_LATENT_DETRACTOR = 45  # latent recommendation below which a customer counts as a detractor
G_PROMOTER_MIN = 46  # lowest 0-10 answer of a promoter (tenure.metrics)
G_DETRACTOR_MAX = 47  # highest 0-10 answer of a detractor
G_TYPOLOGY_SATISFIED = 48  # lowest overall item of a satisfied respondent (tenure.metrics)
G_TYPOLOGY_LOYAL = 49  # lowest recommend + repurchase of a loyal respondent
N_G = 50

# -- per-segment parameters ----------------------------------------------------------
S_EXPECT = 0
S_PRICE = 1
S_VALUE_W = 2
S_BARRIER = 3
S_MARGIN_CENTS = 4
S_INC_P = 5
S_ALPHA = 6
S_BETA = 7
S_HETERO = 8  # 1: Beta heterogeneity; 0: constant alpha / (alpha + beta)
S_INIT_TRUST = 9
S_INIT_ENTH = 10
S_INIT_SAT = 11
S_INIT_PRODUCTS = 12
S_MIX_CUM0 = 13  # four cumulative stage shares of the initial base
S_SHARE_CUM = 17  # cumulative segment share
S_INIT_TRUST_SD = 18  # spreads of the starting latent values
S_INIT_ENTH_SD = 19
S_INIT_SAT_SD = 20
N_S = 21

# -- this period's inputs ------------------------------------------------------------
P_QUALITY = 0  # product + service quality, lever and shock effects included
P_CONTACT = 1  # enthusiasm contact intensity (loyalty, engagement, employees)
P_COVERAGE = 2  # share of incidents the alarm system detects
P_REPAIR = 3  # probability that a detected incident is repaired
P_SHIFT = 4  # logit shift of churn: competitor pull minus loyalty barrier
P_INC_MULT = 5  # multiplier of incident probabilities (shocks)
N_P = 6

# -- aggregates returned per block (int64) -------------------------------------------
A_ACTIVE = 0
A_CHURNED = 1
A_INCIDENTS = 2
A_DETECTED = 3
A_REPAIRED = 4
A_SURVEYED = 5
A_SURVEY_PROMOTERS = 6
A_SURVEY_DETRACTORS = 7
A_TRIM0 = 8  # four sums of TRI*M-style items (1-5)
A_TRUST_ITEM = 12
A_ENTH_ITEM = 13
A_SAT_ITEM = 14
A_PROMOTERS = 15  # latent promoters among the active (word of mouth)
A_DETRACTORS = 16
A_STAGE0 = 17  # four stage counts after the period's update
A_CROSS_SALES = 21
A_REVENUE_CENTS = 22
A_PRODUCTS = 23
A_TRUST_FX = 24
A_ENTH_FX = 25
A_SAT_FX = 26
A_VALUE_FX = 27
A_APOSTLES = 28
A_MERCENARIES = 29
A_HOSTAGES = 30
A_TERRORISTS = 31
A_NPS_SUM = 32
A_HAZARD_FX = 33  # sum of churn hazards: the expected number of churners
N_A = 34

CH_INITIAL = 0
CH_PAID = 1
CH_ORGANIC = 2
CH_REFERRAL = 3

# -- the panel matrix (columns named in tenure.panel_format) and the survey answers -----
N_PANEL = len(ENGINE_PANEL_COLUMNS)
PC_ACTIVE = ENGINE_PANEL_INDEX["active"]
PC_CHURNED = ENGINE_PANEL_INDEX["churned"]
PC_PRODUCTS = ENGINE_PANEL_INDEX["products"]
PC_CROSS_SOLD = ENGINE_PANEL_INDEX["cross_sold"]
PC_REVENUE_CENTS = ENGINE_PANEL_INDEX["revenue_cents"]
PC_ANSWER0 = ENGINE_PANEL_INDEX[ANSWER_COLUMNS[0]]  # the answers fill the rest, in the order of ``ans`` rows
N_ANS = len(ANSWER_COLUMNS)
R_TRUST = ANSWER_COLUMNS.index("trust")  # rows of a block's answer matrix ``ans``
R_ENTH = ANSWER_COLUMNS.index("enthusiasm")
R_SAT = ANSWER_COLUMNS.index("satisfaction")
R_NPS = ANSWER_COLUMNS.index("nps")
R_TRIM0 = ANSWER_COLUMNS.index(TRIM_COLUMNS[0])  # four TRI*M items, in order


class State(NamedTuple):
    """One shard's customers, one array per attribute (``engine/state.py`` allocates them).

    The tracking arrays (``revenue``, ``purchases``, ``last_purchase``) and ``panel_slot``
    are empty when the shard does not track customers or draw a panel.
    """

    ids: np.ndarray
    alive: np.ndarray
    segment: np.ndarray
    stage: np.ndarray
    streak: np.ndarray
    tenure: np.ndarray
    products: np.ndarray
    satisfaction: np.ndarray
    trust: np.ndarray
    enthusiasm: np.ndarray
    value: np.ndarray
    base_logit: np.ndarray
    channel: np.ndarray
    cohort: np.ndarray
    in_panel: np.ndarray
    revenue: np.ndarray
    purchases: np.ndarray
    last_purchase: np.ndarray
    panel_slot: np.ndarray


class StepInputs(NamedTuple):
    """What one period's :func:`step` reads besides the state: parameters, noise table, keys.

    ``panel_out`` receives the panel rows (columns :data:`tenure.panel_format.ENGINE_PANEL_COLUMNS`).
    """

    panel_out: np.ndarray
    g: np.ndarray
    s: np.ndarray
    p: np.ndarray
    ntab: np.ndarray
    period: np.uint32
    k0: np.uint32
    k1: np.uint32


class BirthInputs(NamedTuple):
    """What one :func:`birth` call reads: where and whom to create, and the parameters."""

    start: int
    count: int
    first_id: np.int64
    channel_bounds: np.ndarray
    cohort_value: int
    initial_base: bool
    age_cdf: np.ndarray
    g: np.ndarray
    s: np.ndarray
    k0: np.uint32
    k1: np.uint32


@njit(inline="always", cache=True)
def _clip(x, lo, hi):  # pragma: no cover - compiled
    return min(max(x, lo), hi)


@njit(inline="always", cache=True)
def _item(latent01, z, noise):  # pragma: no cover - compiled
    """A 1-5 answer: the latent reading on [0, 1] mapped to [1, 5], plus noise, rounded."""
    return np.int64(_clip(math.floor(1.0 + 4.0 * latent01 + noise * z + 0.5), 1.0, 5.0))


@njit(parallel=True, cache=True)
def step(st, inp, out):  # pragma: no cover - compiled
    """Advance every live customer of one shard by one period; block ``b``'s aggregates go to ``out[b]``.

    ``out`` has one row per ``BLOCK`` customers of ``st`` (at least one row), ``N_A`` columns.
    Blocks of ``BLOCK`` customers run in parallel, each through :func:`_step_block` (a separate,
    serial function: inside a prange body Numba passes variables through the parfor closure, which
    stops LLVM from optimising the loops; measured, the same code ran 2.3 times faster outside it).
    """
    for b in prange(out.shape[0]):
        _step_block(b, st, inp, out[b])


@njit(cache=True, nogil=True)
def step_serial(st, inp, out):  # pragma: no cover - compiled
    """:func:`step` on one thread: the same blocks in order, so the same results bit for bit.

    It releases the GIL, so runs on several Python threads compute at once (tenure.engine.pool).
    """
    for b in range(out.shape[0]):
        _step_block(b, st, inp, out[b])


@intrinsic
def _f64_from_bits(typingctx, x):  # pragma: no cover - compiled
    """Reinterpret an int64's bits as a float64 (a bitcast: no conversion)."""
    if isinstance(x, types.Integer) and x.bitwidth == 64:
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.float64))

        return types.float64(x), codegen
    return None


@intrinsic
def _wide_vectors(typingctx):  # pragma: no cover - compiled
    """Let LLVM vectorise the calling kernel with 512-bit registers where the CPU has them.

    On AVX-512 CPUs LLVM prefers 256-bit vectors (a frequency concern of older chips); the step's
    loops ran 1.2 times faster with 512 (benchmarks/RESULTS.md, session 26). The width changes only
    how many customers share a register: every operation is elementwise and exactly rounded and
    every sum an integer one, so results are the same bits. It sets the ``prefer-vector-width``
    attribute of the function being compiled; llvmlite's attribute set accepts only enumerated
    names, hence ``set.add``. Without AVX-512 the attribute changes nothing.
    """
    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover - compiled
    """a * b + c with one rounding (llvm.fma): exactly specified, so vector and scalar code agree."""
    if all(isinstance(t, types.Float) and t.bitwidth == 64 for t in (a, b, c)):
        def codegen(context, builder, signature, args):
            return builder.fma(args[0], args[1], args[2])

        return types.float64(types.float64, types.float64, types.float64), codegen
    return None


@njit(inline="always", cache=True)
def _exp(x):  # pragma: no cover - compiled
    """e**x in float64 from arithmetic alone, so the loops that call it vectorise (libm's exp does not).

    Cody-Waite reduction x = n ln 2 + r, |r| <= ln 2 / 2, a degree-11 Taylor polynomial of e**r
    (below 1e-14 relative error, measured) and 2**n built from its exponent bits. Only exactly
    rounded operations (IEEE basic operations and fused multiply-adds): the result is the same bits
    whether a customer falls in a vector lane or in the scalar remainder of a loop. x is clamped to
    [-708, 709], where e**x is a normal float64.
    """
    x = min(max(x, -708.0), 709.0)
    n = np.floor(x * 1.4426950408889634 + 0.5)
    r = _fma(n, -0.6931471803691238, x)  # ln 2, high part: n * hi is exact for |n| < 2**11
    r = _fma(n, -1.9082149292705877e-10, r)  # ln 2, low part
    p = 2.505210838544172e-08
    p = _fma(p, r, 2.755731922398589e-07)
    p = _fma(p, r, 2.7557319223985893e-06)
    p = _fma(p, r, 2.48015873015873e-05)
    p = _fma(p, r, 0.0001984126984126984)
    p = _fma(p, r, 0.001388888888888889)
    p = _fma(p, r, 0.008333333333333333)
    p = _fma(p, r, 0.041666666666666664)
    p = _fma(p, r, 0.16666666666666666)
    p = _fma(p, r, 0.5)
    p = _fma(p, r, 1.0)
    p = _fma(p, r, 1.0)
    return p * _f64_from_bits((np.int64(n) + 1023) << 52)


@njit(cache=True)
def _seg_column(seg, vals, out):  # pragma: no cover - compiled
    """``out[j] = vals[seg[j]]`` by selects, one pass per segment (a gather would stop vectorising)."""
    m = out.shape[0]
    v0 = vals[0]
    for j in range(m):
        out[j] = v0
    for k in range(1, vals.shape[0]):
        vk = vals[k]
        for j in range(m):
            out[j] = vk if seg[j] == k else out[j]


# error_model="numpy": a float division by zero gives inf instead of raising. The check Python's
# semantics need is a branch, and a branch in a loop stops LLVM from vectorising it (measured: the
# hazard loop ran 8.6 times slower with it).
@njit(cache=True, error_model="numpy")
def _step_block(b, state, inp, acc_out):  # pragma: no cover - compiled
    """Block ``b`` of :func:`step`: customers ``b * BLOCK`` to the next block; its aggregates go to ``acc_out``.

    Random words first, then experience, incidents and repairs, latent updates, stages, churn and
    cross-selling for everyone (dead customers masked out, stores branch-free), then a pass that
    visits only the few customers who answer a survey this month, belong to the panel sample or are
    tracked, and writes their answers. ``inp.panel_out[slot, :]`` receives the panel row of each
    panel customer alive at the start of the period.

    The block is a sequence of short loops over per-block scratch rows, each with one output and
    few inputs: LLVM vectorises such loops (it gives up on long bodies, on table gathers and on
    stores it cannot prove free of aliasing). Values are computed for every row, live or not;
    dead customers' stores keep their old values and their counts are masked out (the shard moves
    most of them out of the rows it steps, :func:`compact`).
    """
    _wide_vectors()
    panel_out, g, s, p, ntab, period, k0, k1 = inp
    lo = b * BLOCK
    hi = min(lo + BLOCK, state.ids.shape[0])
    m = hi - lo
    for c in range(N_A):
        acc_out[c] = 0
    # this block's state, as views indexed from 0
    cid = state.ids[lo:hi]
    al = state.alive[lo:hi]
    n_live = 0
    for j in range(m):
        n_live += np.int64(al[j])
    if n_live == 0:
        return
    sg = state.segment[lo:hi]
    stg = state.stage[lo:hi]
    stk = state.streak[lo:hi]
    ten = state.tenure[lo:hi]
    prd = state.products[lo:hi]
    sat_s = state.satisfaction[lo:hi]
    tr_s = state.trust[lo:hi]
    en_s = state.enthusiasm[lo:hi]
    val_s = state.value[lo:hi]
    bl = state.base_logit[lo:hi]

    up_periods = np.int64(g[G_UP_PERIODS])
    catalogue = np.int64(g[G_CATALOGUE])
    q_base = p[P_QUALITY]
    contact = p[P_CONTACT]
    coverage = p[P_COVERAGE]
    repair_p = p[P_REPAIR]
    restore = g[G_RESTORE]
    survey_rate = g[G_SURVEY_RATE]
    q_noise = g[G_QUALITY_NOISE]
    severity = g[G_SEVERITY]
    sat_rate = g[G_SAT_RATE]
    value_rate = g[G_VALUE_RATE]
    trust_gain = g[G_TRUST_GAIN]
    loss_inc = g[G_TRUST_LOSS_INC]
    loss_dis = g[G_TRUST_LOSS_DIS]
    enth_gain = g[G_ENTH_GAIN]
    enth_decay = g[G_ENTH_DECAY]
    delight_margin = g[G_DELIGHT]
    up_sat = g[G_UP_SAT]
    up_t0 = g[G_UP_TRUST0]
    up_t1 = g[G_UP_TRUST0 + 1]
    up_t2 = g[G_UP_TRUST0 + 2]
    down_dis = g[G_DOWN_DIS]
    ch_sat = g[G_CH_SAT]
    ch_trust = g[G_CH_TRUST]
    ch_enth = g[G_CH_ENTH]
    ch_st0 = g[G_CH_STAGE0]
    ch_st1 = g[G_CH_STAGE0 + 1]
    ch_st2 = g[G_CH_STAGE0 + 2]
    ch_st3 = g[G_CH_STAGE0 + 3]
    ch_inc = g[G_CH_INC]
    protect = g[G_PROTECT]
    ref_trust = g[G_REF_TRUST]
    ref_enth = g[G_REF_ENTH]
    x_int = g[G_X_INT]
    x_trust = g[G_X_TRUST]
    x_enth = g[G_X_ENTH]
    x_te = g[G_X_TE]
    x_prod = g[G_X_PROD]
    nps_int = g[G_NPS_INT]
    nps_sat = g[G_NPS_SAT]
    nps_trust = g[G_NPS_TRUST]
    nps_enth = g[G_NPS_ENTH]
    nps_promoter = g[G_NPS_LATENT_PROMOTER]
    nps_detractor = g[G_NPS_LATENT_DETRACTOR]

    # scratch rows, one allocation per dtype
    F = np.empty((13, m))
    z = F[0]
    hit = F[1]
    d = F[2]
    sat = F[3]
    val = F[4]
    tr = F[5]
    en = F[6]
    hz = F[7]
    lam = F[8]
    e0 = F[9]
    c_inc = F[10]  # per-segment columns
    c_exp = F[11]
    c_price = F[12]
    C = np.empty((3, m))
    c_vw = C[0]
    c_shift = C[1]
    c_margin = C[2]
    U = np.empty((3, m), dtype=np.uint8)
    ev = U[0]  # bit 0 live, 1 incident, 2 detected, 3 repaired
    flags = U[1]  # bit 0 live, 1 surveyed, 2 churned
    xs_b = U[2]
    W = np.empty((7, m), dtype=np.uint32)
    w0 = W[0]
    w1 = W[1]
    w2 = W[2]
    w3 = W[3]
    w4 = W[4]
    w5 = W[5]
    w6 = W[6]

    # Random words in a loop of their own: Philox vectorises there.
    for j in range(m):
        w0[j], w1[j], w2[j], w3[j] = draw4(cid[j], period, PURPOSE_STEP_A, k0, k1)
        w4[j], w5[j], w6[j], _w7 = draw4(cid[j], period, PURPOSE_STEP_B, k0, k1)
    # the two table look-ups: experience noise, and the segment's parameters
    for j in range(m):
        z[j] = ntab[w0[j] >> 20]
    _seg_column(sg, s[:, S_INC_P] * p[P_INC_MULT], c_inc)
    _seg_column(sg, s[:, S_EXPECT].copy(), c_exp)
    _seg_column(sg, s[:, S_PRICE].copy(), c_price)
    _seg_column(sg, s[:, S_VALUE_W].copy(), c_vw)
    _seg_column(sg, p[P_SHIFT] - s[:, S_BARRIER], c_shift)
    _seg_column(sg, s[:, S_MARGIN_CENTS].copy(), c_margin)

    # 1. incidents, detection, repair. Loops are split or fused as measured: this loop fused with
    # the next, or the two exp loops below fused, or the flags and the Poisson loop fused, each ran
    # 2-6 % slower overall; the fusions kept here each saved 1-7 %.
    for j in range(m):
        inc = np.int64(to_unit(w1[j]) < c_inc[j])
        det = inc * np.int64(to_unit(w2[j]) < coverage)
        rep = det * np.int64(to_unit(w3[j]) < repair_p)
        ev[j] = np.uint8(np.int64(al[j] != 0) | (inc << 1) | (det << 2) | (rep << 3))
    for j in range(m):
        e = np.int64(ev[j])
        h = ((e >> 1) & 1) * (1.0 - restore * ((e >> 3) & 1))  # damage left after any repair
        qj = q_base + q_noise * z[j] - severity * h
        dj = qj - c_exp[j]
        hit[j] = h
        d[j] = dj
        # 2. satisfaction, value, trust, enthusiasm
        sat0 = np.float64(sat_s[j])
        sat[j] = sat0 + sat_rate * (dj - sat0)
        val0 = np.float64(val_s[j])
        val[j] = val0 + value_rate * ((qj - c_price[j]) - val0)
        tr0 = np.float64(tr_s[j])
        pos = min(max(dj, 0.0), 1.0)
        neg = min(max(-dj, 0.0), 1.0)
        t = tr0 + trust_gain * (1.0 - tr0) * pos - loss_dis * tr0 * neg
        tr[j] = min(max(t - loss_inc * tr0 * h, 0.0), 1.0)
        en0 = np.float64(en_s[j])
        delight = min(max(dj - delight_margin, 0.0), 1.0)
        x = en0 + enth_gain * (1.0 - en0) * min(delight + contact, 1.0) - enth_decay * en0
        en[j] = min(max(x, 0.0), 1.0)

    # 3. stages: good and bad months; stage and streak in place (dead rows keep theirs)
    for j in range(m):
        st = np.int64(stg[j])
        sk0 = np.int64(stk[j])
        need = up_t0 if st == 0 else (up_t1 if st == 1 else up_t2)
        good = np.int64(sat[j] > up_sat) & np.int64(st < 3) & np.int64(tr[j] > need)
        e = np.int64(ev[j])
        bad = (((e >> 1) & 1) & (1 - ((e >> 3) & 1))) | np.int64(d[j] < -down_dis)
        sk = (sk0 + 1) * good
        up = np.int64(sk >= up_periods) & (1 - bad)
        live = (e & 1) != 0
        st_new = st + up - bad * np.int64(st > 0)
        stg[j] = np.uint8(st_new if live else st)
        stk[j] = np.uint8(min(sk * (1 - up) * (1 - bad), 255) if live else sk0)

    # 4. churn: the hazard (trust before the month cushions an incident's kick)
    for j in range(m):
        st = stg[j]
        cs = ch_st0 if st == 0 else (ch_st1 if st == 1 else (ch_st2 if st == 2 else ch_st3))
        eta = (
            np.float64(bl[j])
            + ch_sat * sat[j]
            + ch_trust * (tr[j] - ref_trust)
            + ch_enth * (en[j] - ref_enth)
            - c_vw[j] * val[j]
            + cs
            + c_shift[j]
            + ch_inc * (1.0 - protect * np.float64(tr_s[j])) * hit[j]
        )
        hz[j] = 1.0 / (1.0 + _exp(-eta))
    # 5. cross-selling: the monthly adoption rate and P(no sale)
    for j in range(m):
        t = tr[j]
        e = en[j]
        lam[j] = _exp(x_int + x_trust * t + x_enth * e + x_te * t * e + x_prod * (np.int64(prd[j]) - 1))
    for j in range(m):
        e0[j] = _exp(-lam[j])
    for j in range(m):
        live = np.int64(ev[j]) & 1
        churned = live & np.int64(to_unit(w4[j]) < hz[j])
        surveyed = live & np.int64(to_unit(w6[j]) < survey_rate)
        flags[j] = np.uint8(live | (surveyed << 1) | (churned << 2))
    for j in range(m):
        # Poisson count by inversion of its CDF (three terms), capped by the catalogue
        la = lam[j]
        ez = e0[j]
        u = to_unit(w5[j])
        c1 = ez * (1.0 + la)
        c2 = c1 + ez * la * la * 0.5
        k = np.int64(u > ez) + np.int64(u > c1) + np.int64(u > c2)
        live = np.int64(ev[j]) & 1
        xs_b[j] = np.uint8(live * max(min(k, catalogue - np.int64(prd[j])), 0))

    # aggregates: read-only loops
    n_inc = 0
    n_det = 0
    n_rep = 0
    for j in range(m):
        e = np.int64(ev[j])
        live = e & 1
        n_inc += live & (e >> 1)
        n_det += live & (e >> 2)
        n_rep += live & (e >> 3)
    n_st0 = 0
    n_st1 = 0
    n_st2 = 0
    n_st3 = 0
    for j in range(m):
        live = np.int64(ev[j]) & 1
        st = stg[j]
        n_st0 += live * np.int64(st == 0)
        n_st1 += live * np.int64(st == 1)
        n_st2 += live * np.int64(st == 2)
        n_st3 += live * np.int64(st == 3)
    rev_sum = 0
    prod_sum = 0
    for j in range(m):
        live = np.int64(ev[j]) & 1
        pr = live * np.int64(prd[j])
        prod_sum += pr
        rev_sum += pr * np.int64(c_margin[j])
    tr_sum = 0
    en_sum = 0
    for j in range(m):
        live = np.int64(ev[j]) & 1
        tr_sum += live * np.int64(tr[j] * FX + 0.5)
        en_sum += live * np.int64(en[j] * FX + 0.5)
    sat_sum = 0
    val_sum = 0
    for j in range(m):
        live = np.int64(ev[j]) & 1
        sat_sum += live * np.int64(math.floor(sat[j] * FX + 0.5))
        val_sum += live * np.int64(math.floor(val[j] * FX + 0.5))
    n_prom = 0
    n_detr = 0
    for j in range(m):
        live = np.int64(ev[j]) & 1
        nps_latent = min(max(nps_int + nps_sat * sat[j] + nps_trust * tr[j] + nps_enth * en[j], 0.0), 10.0)
        n_prom += live * np.int64(nps_latent >= nps_promoter)
        n_detr += live * np.int64(nps_latent < nps_detractor)
    n_churned = 0
    n_xs = 0
    haz_sum = 0
    for j in range(m):
        f = np.int64(flags[j])
        live = f & 1
        n_churned += (f >> 2) & 1
        n_xs += np.int64(xs_b[j])
        haz_sum += live * np.int64(hz[j] * FX + 0.5)

    # stores of the new state (dead rows keep their values)
    for j in range(m):
        sat_s[j] = np.float32(sat[j]) if (ev[j] & 1) != 0 else sat_s[j]
    for j in range(m):
        val_s[j] = np.float32(val[j]) if (ev[j] & 1) != 0 else val_s[j]
    for j in range(m):
        tr_s[j] = np.float32(tr[j]) if (ev[j] & 1) != 0 else tr_s[j]
    for j in range(m):
        en_s[j] = np.float32(en[j]) if (ev[j] & 1) != 0 else en_s[j]
    for j in range(m):
        ten[j] += ev[j] & 1
    for j in range(m):
        prd[j] += xs_b[j]
    for j in range(m):
        f = flags[j]
        al[j] = (f & 1) & (1 - ((f >> 2) & 1))

    acc = np.zeros(N_A, dtype=np.int64)
    acc[A_ACTIVE] = n_live
    acc[A_CHURNED] = n_churned
    acc[A_INCIDENTS] = n_inc
    acc[A_DETECTED] = n_det
    acc[A_REPAIRED] = n_rep
    acc[A_PROMOTERS] = n_prom
    acc[A_DETRACTORS] = n_detr
    acc[A_STAGE0] = n_st0
    acc[A_STAGE0 + 1] = n_st1
    acc[A_STAGE0 + 2] = n_st2
    acc[A_STAGE0 + 3] = n_st3
    acc[A_CROSS_SALES] = n_xs
    acc[A_REVENUE_CENTS] = rev_sum
    acc[A_PRODUCTS] = prod_sum
    acc[A_TRUST_FX] = tr_sum
    acc[A_ENTH_FX] = en_sum
    acc[A_SAT_FX] = sat_sum
    acc[A_VALUE_FX] = val_sum
    acc[A_HAZARD_FX] = haz_sum

    # per-customer tracking: margin, purchase count and month of the last purchase
    if state.revenue.shape[0] > 0:
        rv = state.revenue[lo:hi]
        pu = state.purchases[lo:hi]
        lp = state.last_purchase[lo:hi]
        for j in range(m):
            rv[j] += (np.int64(flags[j]) & 1) * (np.int64(prd[j]) - np.int64(xs_b[j])) * np.int64(c_margin[j])
        for j in range(m):
            pu[j] += np.int16(xs_b[j] > 0)
        for j in range(m):
            lp[j] = np.int16(period) if xs_b[j] > 0 else lp[j]

    # survey answers of this month's respondents (about survey.rate of the live), gathered into a
    # compact list so that their random words, too, come from a vectorised loop
    rsp = np.empty(m, dtype=np.int64)
    n_rsp = 0
    for j in range(m):
        rsp[n_rsp] = j  # branch-free compaction: the slot is overwritten unless j is a respondent
        n_rsp += (np.int64(flags[j]) >> 1) & 1
    ans = np.empty((N_ANS, n_rsp), dtype=np.int64)  # rows R_*: the panel's answer columns, in order
    if n_rsp > 0:
        rid = np.empty(n_rsp, dtype=np.int64)
        for k in range(n_rsp):
            rid[k] = cid[rsp[k]]
        RW = np.empty((8, n_rsp), dtype=np.uint32)
        for k in range(n_rsp):
            RW[0, k], RW[1, k], RW[2, k], RW[3, k] = draw4(rid[k], period, PURPOSE_SURVEY_A, k0, k1)
            RW[4, k], RW[5, k], RW[6, k], RW[7, k] = draw4(rid[k], period, PURPOSE_SURVEY_B, k0, k1)
        noise = g[G_ITEM_NOISE]
        nps_noise = g[G_NPS_NOISE]
        for k in range(n_rsp):
            j = rsp[k]
            trv = np.float64(tr_s[j])
            env = np.float64(en_s[j])
            satv = np.float64(sat_s[j])
            valv = np.float64(val_s[j])
            nps_latent = min(max(nps_int + nps_sat * satv + nps_trust * trv + nps_enth * env, 0.0), 10.0)
            sat01 = min(max(0.5 + 0.5 * satv, 0.0), 1.0)
            ans[R_NPS, k] = np.int64(
                min(max(math.floor(nps_latent + nps_noise * ntab[RW[0, k] >> 20] + 0.5), 0.0), 10.0)
            )
            ans[R_TRIM0, k] = _item(sat01, ntab[RW[1, k] >> 20], noise)
            ans[R_TRIM0 + 1, k] = _item(nps_latent / 10.0, ntab[RW[2, k] >> 20], noise)
            ans[R_TRIM0 + 2, k] = _item((trv + sat01) * 0.5, ntab[RW[3, k] >> 20], noise)
            ans[R_TRIM0 + 3, k] = _item(min(max(0.5 + valv, 0.0), 1.0), ntab[RW[4, k] >> 20], noise)
            ans[R_TRUST, k] = _item(trv, ntab[RW[5, k] >> 20], noise)
            ans[R_ENTH, k] = _item(env, ntab[RW[6, k] >> 20], noise)
            ans[R_SAT, k] = _item(sat01, ntab[RW[7, k] >> 20], noise)
    promoter_min = g[G_PROMOTER_MIN]
    detractor_max = g[G_DETRACTOR_MAX]
    satisfied_min = g[G_TYPOLOGY_SATISFIED]
    loyal_min = g[G_TYPOLOGY_LOYAL]
    for k in range(n_rsp):
        nps_ans = ans[R_NPS, k]
        t_overall = ans[R_TRIM0, k]
        t_recommend = ans[R_TRIM0 + 1, k]
        t_repurchase = ans[R_TRIM0 + 2, k]
        acc[A_SURVEY_PROMOTERS] += nps_ans >= promoter_min
        acc[A_SURVEY_DETRACTORS] += nps_ans <= detractor_max
        acc[A_NPS_SUM] += nps_ans
        acc[A_TRIM0] += t_overall
        acc[A_TRIM0 + 1] += t_recommend
        acc[A_TRIM0 + 2] += t_repurchase
        acc[A_TRIM0 + 3] += ans[R_TRIM0 + 3, k]
        acc[A_TRUST_ITEM] += ans[R_TRUST, k]
        acc[A_ENTH_ITEM] += ans[R_ENTH, k]
        acc[A_SAT_ITEM] += ans[R_SAT, k]
        satisfied = t_overall >= satisfied_min
        loyal = t_recommend + t_repurchase >= loyal_min
        acc[A_APOSTLES] += satisfied and loyal
        acc[A_MERCENARIES] += satisfied and not loyal
        acc[A_HOSTAGES] += loyal and not satisfied
        acc[A_TERRORISTS] += not satisfied and not loyal
    acc[A_SURVEYED] = n_rsp

    # panel rows of the sampled customers alive at the start of the month
    if state.panel_slot.shape[0] > 0:
        ps = state.panel_slot[lo:hi]
        k = 0  # respondents seen so far: the index of j's answers in ``ans`` when j answered
        for j in range(m):
            f = np.int64(flags[j])
            slot = ps[j]
            if slot >= 0 and f != 0:
                answered = (f >> 1) & 1
                for c in range(N_ANS):
                    panel_out[slot, PC_ANSWER0 + c] = ans[c, k] if answered else -1
                xs = np.int64(xs_b[j])
                prod = np.int64(prd[j]) - xs
                panel_out[slot, PC_ACTIVE] = 1
                panel_out[slot, PC_CHURNED] = (f >> 2) & 1
                panel_out[slot, PC_PRODUCTS] = prod
                panel_out[slot, PC_CROSS_SOLD] = xs
                panel_out[slot, PC_REVENUE_CENTS] = prod * np.int64(c_margin[j])
            k += (f >> 1) & 1
    for c in range(N_A):
        acc_out[c] = acc[c]


@njit(inline="always", cache=True)
def _swap(a, i, j):  # pragma: no cover - compiled
    x = a[i]
    a[i] = a[j]
    a[j] = x


@njit(cache=True, nogil=True)
def compact(st, start):  # pragma: no cover - compiled
    """Move the gone customers of rows ``start`` on to the front of that range; return the first live row.

    Every gone row (``alive == 0``) at or after ``start`` is swapped with the first row after the gone ones
    found so far, every attribute with it, so rows ``start`` to the returned row hold only gone customers
    and the rows after only live ones. :func:`step` leaves a gone customer's row unchanged (its stores keep
    the old values, its counts are masked out) and no result depends on a customer's row, so stepping only
    the live rows after this gives the same results bit for bit. One serial pass, swaps only for the gone.
    """
    w = start
    tracked = st.revenue.shape[0] > 0
    panel = st.panel_slot.shape[0] > 0
    for j in range(start, st.alive.shape[0]):
        if st.alive[j] == 0:
            if j != w:
                _swap(st.ids, w, j)
                _swap(st.alive, w, j)
                _swap(st.segment, w, j)
                _swap(st.stage, w, j)
                _swap(st.streak, w, j)
                _swap(st.tenure, w, j)
                _swap(st.products, w, j)
                _swap(st.satisfaction, w, j)
                _swap(st.trust, w, j)
                _swap(st.enthusiasm, w, j)
                _swap(st.value, w, j)
                _swap(st.base_logit, w, j)
                _swap(st.channel, w, j)
                _swap(st.cohort, w, j)
                _swap(st.in_panel, w, j)
                if tracked:
                    _swap(st.revenue, w, j)
                    _swap(st.purchases, w, j)
                    _swap(st.last_purchase, w, j)
                if panel:
                    _swap(st.panel_slot, w, j)
            w += 1
    return w


@njit(inline="always", cache=True)
def _box_muller(w0, w1):  # pragma: no cover - compiled
    """An exact standard normal (Box-Muller) from two random words."""
    return math.sqrt(-2.0 * math.log(to_unit(w0))) * math.cos(2.0 * math.pi * to_unit(w1))


@njit(cache=True)
def _gamma(shape, cid, stream, k0, k1, w0, w1, w2):  # pragma: no cover - compiled
    """A Gamma(shape, 1) variate by Marsaglia & Tsang (2000), from the customer's own stream.

    ``stream`` separates independent variates of one customer; each rejection
    attempt consumes the next counter, so the draw is a pure function of
    (seed, customer id, stream). ``w0, w1, w2`` are the first attempt's words
    (counter ``stream * 1024``, drawn beforehand in a vectorised loop); later
    attempts draw their own.
    """
    boost = 1.0
    if shape < 1.0:
        _b0, b1, _b2, _b3 = draw4(cid, stream * 1024 + 1023, PURPOSE_GAMMA, k0, k1)
        boost = to_unit(b1) ** (1.0 / shape)
        shape += 1.0
    dd = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * dd)
    for attempt in range(1000):
        if attempt > 0:
            w0, w1, w2, _w3 = draw4(cid, stream * 1024 + attempt, PURPOSE_INIT_B, k0, k1)
        x = _box_muller(w0, w1)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(to_unit(w2)) < 0.5 * x * x + dd - dd * v + dd * math.log(v):
            return dd * v * boost
    return dd * boost


@njit(parallel=True, cache=True)
def birth(st, inp):  # pragma: no cover - compiled
    """Create ``inp.count`` customers at rows ``inp.start`` on, with ids ``inp.first_id`` on, block by block.

    ``channel_bounds`` holds the first id of the paid, organic and referral
    ranges and the end of the range, so a customer's channel follows from its
    id. With ``initial_base``, ages follow ``age_cdf[segment]`` (the stationary
    age distribution) and the base churn propensity is drawn from
    Beta(alpha, beta + age): the sBG posterior of a customer who survived to that
    age. Every draw is keyed by the customer id, so births do not depend on the
    shard that holds the customer.
    """
    for c in prange((inp.count + BLOCK - 1) // BLOCK):
        _birth_block(c, st, inp)


@njit(cache=True, nogil=True)
def birth_serial(st, inp):  # pragma: no cover - compiled
    """:func:`birth` on one thread, for small calls and pool workers (the same customers, bit for bit; no GIL)."""
    for c in range((inp.count + BLOCK - 1) // BLOCK):
        _birth_block(c, st, inp)


# The words every birth draws, rows of _birth_block's word matrix ``W``
BW_SEGMENT = 0  # segment; tenure of the initial base
BW_AGE = 1
BW_NORMAL0 = 2  # two words per normal: trust, enthusiasm, satisfaction
BW_GAMMA0 = 8  # three words per gamma variate's first attempt: propensity x, then y
BW_STAGE = 14  # the initial base's first stage
BW_PANEL = 15
N_BW = 16


@njit(cache=True)
def _birth_words(first, m, hetero, initial_base, panel, k0, k1, W):  # pragma: no cover - compiled
    """The Philox words of customers ``first`` to ``first + m - 1`` that every birth uses, into ``W``.

    A loop of draws and stores alone, which vectorises (the birth loop, with its branches and libm
    calls, does not); a draw a birth never uses is skipped per call, not per customer: the gamma
    words without Beta heterogeneity, the stage word outside the initial base, the panel word with
    no panel (``to_unit`` > 0, so a zero panel fraction admits no one).
    """
    _wide_vectors()
    for j in range(m):
        cid = first + j
        W[BW_SEGMENT, j], W[BW_AGE, j], _a2, _a3 = draw4(cid, 0, PURPOSE_INIT_A, k0, k1)
        W[BW_NORMAL0, j], W[BW_NORMAL0 + 1, j], _n2, _n3 = draw4(cid, 1, PURPOSE_GAMMA, k0, k1)
        W[BW_NORMAL0 + 2, j], W[BW_NORMAL0 + 3, j], _n6, _n7 = draw4(cid, 2, PURPOSE_GAMMA, k0, k1)
        W[BW_NORMAL0 + 4, j], W[BW_NORMAL0 + 5, j], _n10, _n11 = draw4(cid, 3, PURPOSE_GAMMA, k0, k1)
    if hetero:
        for j in range(m):
            cid = first + j
            W[BW_GAMMA0, j], W[BW_GAMMA0 + 1, j], W[BW_GAMMA0 + 2, j], _g3 = draw4(cid, 0, PURPOSE_INIT_B, k0, k1)
            W[BW_GAMMA0 + 3, j], W[BW_GAMMA0 + 4, j], W[BW_GAMMA0 + 5, j], _g7 = draw4(
                cid, 1024, PURPOSE_INIT_B, k0, k1
            )
    if initial_base:
        for j in range(m):
            W[BW_STAGE, j] = draw4(first + j, 0, PURPOSE_INIT_C, k0, k1)[0]
    if panel:
        for j in range(m):
            W[BW_PANEL, j] = draw4(first + j, 0, PURPOSE_PANEL, k0, k1)[0]


@njit(cache=True)
def _birth_block(c, state, inp):  # pragma: no cover - compiled
    """Block ``c`` of one :func:`birth` call: its customers ``c * BLOCK`` to the next block.

    Their fixed random words come first, from :func:`_birth_words`; the loop over the customers
    then does the arithmetic (and draws only the further words of a rejected gamma attempt).
    """
    start, count, first_id, channel_bounds, cohort_value, initial_base, age_cdf, g, s, k0, k1 = inp
    ids, alive, segment, stage = state.ids, state.alive, state.segment, state.stage
    tenure, cohort = state.tenure, state.cohort
    streak, products, channel, in_panel = state.streak, state.products, state.channel, state.in_panel
    trust, enthusiasm, satisfaction = state.trust, state.enthusiasm, state.satisfaction
    value, base_logit = state.value, state.base_logit
    nseg = s.shape[0]
    lo = c * BLOCK
    m = min(lo + BLOCK, count) - lo
    hetero = False
    for k in range(nseg):
        hetero = hetero or s[k, S_HETERO] > 0.5
    panel_fraction = g[G_PANEL_FRACTION]
    W = np.zeros((N_BW, m), dtype=np.uint32)
    _birth_words(first_id + lo, m, hetero, initial_base, panel_fraction > 0.0, k0, k1, W)
    for jb in range(m):
        j = lo + jb
        i = start + j
        cid = first_id + j
        ids[i] = cid
        alive[i] = 1
        u = to_unit(W[BW_SEGMENT, jb])
        sg = 0
        while sg < nseg - 1 and u >= s[sg, S_SHARE_CUM]:
            sg += 1
        segment[i] = sg
        if initial_base:
            ch = CH_INITIAL
        elif cid < channel_bounds[1]:
            ch = CH_PAID
        elif cid < channel_bounds[2]:
            ch = CH_ORGANIC
        else:
            ch = CH_REFERRAL
        channel[i] = ch
        age = 0
        if initial_base:
            ua = to_unit(W[BW_AGE, jb])
            age = int(np.searchsorted(age_cdf[sg], ua, side="right"))
            age = min(age, age_cdf.shape[1] - 1)
            us = to_unit(W[BW_STAGE, jb])  # only the initial base draws a stage
            first_stage = 0
            while first_stage < 3 and us >= s[sg, S_MIX_CUM0 + first_stage]:
                first_stage += 1
            stage[i] = first_stage
        else:
            stage[i] = 0
        tenure[i] = age
        cohort[i] = cohort_value - age
        streak[i] = 0
        products[i] = np.uint8(s[sg, S_INIT_PRODUCTS])
        bonus_t = g[G_REF_TRUST_BONUS] if ch == CH_REFERRAL else 0.0
        bonus_e = g[G_REF_ENTH_BONUS] if ch == CH_REFERRAL else 0.0
        z_trust = _box_muller(W[BW_NORMAL0, jb], W[BW_NORMAL0 + 1, jb])
        z_enth = _box_muller(W[BW_NORMAL0 + 2, jb], W[BW_NORMAL0 + 3, jb])
        trust[i] = _clip(s[sg, S_INIT_TRUST] + bonus_t + s[sg, S_INIT_TRUST_SD] * z_trust, 0.0, 1.0)
        enthusiasm[i] = _clip(s[sg, S_INIT_ENTH] + bonus_e + s[sg, S_INIT_ENTH_SD] * z_enth, 0.0, 1.0)
        satisfaction[i] = s[sg, S_INIT_SAT] + s[sg, S_INIT_SAT_SD] * _box_muller(
            W[BW_NORMAL0 + 4, jb], W[BW_NORMAL0 + 5, jb]
        )
        value[i] = 0.0
        alpha = s[sg, S_ALPHA]
        beta = s[sg, S_BETA]
        if s[sg, S_HETERO] > 0.5:
            x = _gamma(alpha, cid, 0, k0, k1, W[BW_GAMMA0, jb], W[BW_GAMMA0 + 1, jb], W[BW_GAMMA0 + 2, jb])
            y = _gamma(beta + age, cid, 1, k0, k1, W[BW_GAMMA0 + 3, jb], W[BW_GAMMA0 + 4, jb],
                       W[BW_GAMMA0 + 5, jb])
            prob = x / (x + y)
        else:
            prob = alpha / (alpha + beta)
        prob = _clip(prob, 1e-9, 1.0 - 1e-9)
        base_logit[i] = math.log(prob / (1.0 - prob))
        in_panel[i] = to_unit(W[BW_PANEL, jb]) < panel_fraction
