"""Numba kernels: one period of every customer, and the birth of new customers.

The kernels are pure functions over structure-of-arrays state (one array per
attribute, narrow dtypes) plus three parameter vectors built by the simulator:

- ``g``: global coefficients (dynamics, churn, cross-sell, survey), index ``G_*``;
- ``s``: one row per segment, index ``S_*``;
- ``p``: this period's lever effects, computed once per period from budgets, index ``P_*``.

Customers do not interact inside a kernel: everything they share (word of
mouth, acquisition) goes through the integer aggregates the kernel returns. The
aggregates are summed per fixed block of customers into an int64 array
(latent averages as 2**24 fixed point, money in cents), so totals are exact and
identical for any number of threads, shards or workers. docs/model.md gives the
equations in prose.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
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
N_G = 44

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
N_S = 18

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


@njit(inline="always", cache=True)
def _clip(x, lo, hi):  # pragma: no cover - compiled
    return min(max(x, lo), hi)


@njit(inline="always", cache=True)
def _item(latent01, z, noise):  # pragma: no cover - compiled
    """A 1-5 answer: the latent reading on [0, 1] mapped to [1, 5], plus noise, rounded."""
    return np.int64(_clip(math.floor(1.0 + 4.0 * latent01 + noise * z + 0.5), 1.0, 5.0))


@njit(parallel=True, cache=True)
def step(  # pragma: no cover - compiled
    ids, alive, segment, stage, streak, tenure, products,
    satisfaction, trust, enthusiasm, value, base_logit,
    track, revenue, purchases, last_purchase,
    panel_slot, panel_out,
    g, s, p, ntab, period, k0, k1, out,
):
    """Advance every live customer of one shard by one period; write block aggregates to ``out``.

    Blocks of ``BLOCK`` customers run in parallel, each through
    :func:`_step_block`: random words first, then experience, incidents and
    repairs, latent updates, stages, churn and cross-selling for everyone (dead
    customers masked out, stores branch-free), then a pass that visits only the
    few customers who answer a survey this month, belong to the panel sample or
    are tracked, and writes their answers. ``panel_out[slot, :]``
    receives, for panel customers alive at the start of the period: active flag,
    churned, products at start, cross-sold, revenue (cents), trust, enthusiasm,
    satisfaction and NPS answers (-1 when not surveyed) and the four TRI*M-style
    items.
    """
    n = ids.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        # The block's work is a separate, serial function: inside a prange body Numba passes
        # variables through the parfor closure, which stops LLVM from optimising the loops
        # (measured: the same code ran 2.3 times faster outside the parfor).
        _step_block(
            b * BLOCK, min(b * BLOCK + BLOCK, n),
            ids, alive, segment, stage, streak, tenure, products,
            satisfaction, trust, enthusiasm, value, base_logit,
            track, revenue, purchases, last_purchase,
            panel_slot, panel_out,
            g, s, p, ntab, period, k0, k1, out[b],
        )


@njit(cache=True)
def _step_block(  # pragma: no cover - compiled
    lo, hi, ids, alive, segment, stage, streak, tenure, products,
    satisfaction, trust, enthusiasm, value, base_logit,
    track, revenue, purchases, last_purchase,
    panel_slot, panel_out,
    g, s, p, ntab, period, k0, k1, acc_out,
):
    """One block of :func:`step`: customers ``lo:hi``; the block's aggregates go to ``acc_out``."""
    up_periods = np.int64(g[G_UP_PERIODS])
    catalogue = np.int64(g[G_CATALOGUE])
    has_panel = panel_slot.shape[0] > 0
    q_base = p[P_QUALITY]
    contact = p[P_CONTACT]
    coverage = p[P_COVERAGE]
    repair_p = p[P_REPAIR]
    shift = p[P_SHIFT]
    inc_mult = p[P_INC_MULT]
    restore = g[G_RESTORE]
    survey_rate = g[G_SURVEY_RATE]
    # Coefficients as locals and per-segment columns as small 1-D arrays: LLVM cannot prove
    # that the state stores do not alias ``g`` or ``s``, so it would reload them every customer.
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
    up_trust = g[G_UP_TRUST0 : G_UP_TRUST0 + 3].copy()
    down_dis = g[G_DOWN_DIS]
    ch_sat = g[G_CH_SAT]
    ch_trust = g[G_CH_TRUST]
    ch_enth = g[G_CH_ENTH]
    ch_stage = g[G_CH_STAGE0 : G_CH_STAGE0 + 4].copy()
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
    seg_inc = s[:, S_INC_P] * inc_mult
    seg_expect = s[:, S_EXPECT].copy()
    seg_price = s[:, S_PRICE].copy()
    seg_shift = shift - s[:, S_BARRIER]
    seg_value_w = s[:, S_VALUE_W].copy()
    seg_margin = s[:, S_MARGIN_CENTS].astype(np.int64)
    m = hi - lo
    flags = np.zeros(m, dtype=np.uint8)  # bit 0 live, 1 surveyed, 2 churned
    xs_buf = np.zeros(m, dtype=np.uint8)
    eta_b = np.empty(m)  # logit of the hazard, then the hazard
    xl_b = np.empty(m)  # log cross-sell rate, then the rate
    e0_b = np.empty(m)  # P(no cross-sale)
    prod_buf = np.zeros(m, dtype=np.uint8)
    n_active = 0
    n_churned = 0
    n_inc = 0
    n_det = 0
    n_rep = 0
    n_prom = 0
    n_detr = 0
    n_st0 = 0
    n_st1 = 0
    n_st2 = 0
    n_st3 = 0
    n_xs = 0
    rev_sum = 0
    prod_sum = 0
    tr_sum = 0
    en_sum = 0
    sat_sum = 0
    val_sum = 0
    haz_sum = 0
    # Random words first, in a loop of their own: Philox vectorises there (8 customers per
    # AVX-512 instruction), but not inside the long body below.
    w0 = np.empty(m, dtype=np.uint32)
    w1 = np.empty(m, dtype=np.uint32)
    w2 = np.empty(m, dtype=np.uint32)
    w3 = np.empty(m, dtype=np.uint32)
    w4 = np.empty(m, dtype=np.uint32)
    w5 = np.empty(m, dtype=np.uint32)
    w6 = np.empty(m, dtype=np.uint32)
    for j in range(m):
        w0[j], w1[j], w2[j], w3[j] = draw4(ids[lo + j], period, PURPOSE_STEP_A, k0, k1)
        w4[j], w5[j], w6[j], _w7 = draw4(ids[lo + j], period, PURPOSE_STEP_B, k0, k1)
    for j in range(m):
        i = lo + j
        live = np.int64(alive[i] != 0)
        seg = segment[i]
        a0 = w0[j]
        a1 = w1[j]
        a2 = w2[j]
        a3 = w3[j]

        # 1. experience and incidents; 3. the alarm system
        inc = np.int64(to_unit(a1) < seg_inc[seg])
        det = inc * np.int64(to_unit(a2) < coverage)
        rep = det * np.int64(to_unit(a3) < repair_p)
        hit = inc * (1.0 - restore * rep)  # an incident's damage left after any repair
        quality = q_base + q_noise * ntab[a0 >> 20] - severity * hit
        d = quality - seg_expect[seg]

        # 2. satisfaction, value, trust, enthusiasm
        sat0 = np.float64(satisfaction[i])
        sat = sat0 + sat_rate * (d - sat0)
        val0 = np.float64(value[i])
        val = val0 + value_rate * ((quality - seg_price[seg]) - val0)
        tr0 = np.float64(trust[i])
        pos = min(max(d, 0.0), 1.0)
        neg = min(max(-d, 0.0), 1.0)
        tr = tr0 + trust_gain * (1.0 - tr0) * pos - loss_dis * tr0 * neg
        tr = min(max(tr - loss_inc * tr0 * hit, 0.0), 1.0)
        en0 = np.float64(enthusiasm[i])
        delight = min(max(d - delight_margin, 0.0), 1.0)
        en = en0 + enth_gain * (1.0 - en0) * min(delight + contact, 1.0) - enth_decay * en0
        en = min(max(en, 0.0), 1.0)

        # stages: up on sustained satisfaction and trust, down after bad experiences
        st = np.int64(stage[i])
        need = up_trust[min(st, 2)]
        good = np.int64(sat > up_sat) * np.int64(st < 3) * np.int64(tr > need)
        sk = (np.int64(streak[i]) + 1) * good
        bad = max(inc - rep, np.int64(d < -down_dis))
        up = np.int64(sk >= up_periods) * (1 - bad)
        st_new = st + up - bad * np.int64(st > 0)
        sk = sk * (1 - up) * (1 - bad)

        # 5. churn: the logit of the hazard; trust cushions an incident's kick
        eta_b[j] = (
            base_logit[i]
            + ch_sat * sat
            + ch_trust * (tr - ref_trust)
            + ch_enth * (en - ref_enth)
            - seg_value_w[seg] * val
            + ch_stage[st_new]
            + seg_shift[seg]
            + ch_inc * (1.0 - protect * tr0) * hit
        )
        # 6. cross-selling: the log of the monthly adoption rate
        prod = np.int64(products[i])
        xl_b[j] = x_int + x_trust * tr + x_enth * en + x_te * tr * en + x_prod * (prod - 1)
        # 7. money: margin on products held at the start of the period
        rev_sum += live * prod * seg_margin[seg]
        prod_sum += live * prod
        # word of mouth: the latent recommendation of every customer
        nps_latent = min(max(nps_int + nps_sat * sat + nps_trust * tr + nps_enth * en, 0.0), 10.0)
        n_active += live
        n_inc += live * inc
        n_det += live * det
        n_rep += live * rep
        n_prom += live * np.int64(nps_latent >= 8.5)
        n_detr += live * np.int64(nps_latent < 6.5)
        n_st0 += live * np.int64(st_new == 0)
        n_st1 += live * np.int64(st_new == 1)
        n_st2 += live * np.int64(st_new == 2)
        n_st3 += live * np.int64(st_new == 3)
        tr_sum += live * np.int64(tr * FX + 0.5)
        en_sum += live * np.int64(en * FX + 0.5)
        sat_sum += live * np.int64(math.floor(sat * FX + 0.5))
        val_sum += live * np.int64(math.floor(val * FX + 0.5))
        prod_buf[j] = np.uint8(prod)
        flags[j] = np.uint8(live)
        # unconditional stores of selected values keep the loop branch-free (vectorisable)
        keep = live == 0
        satisfaction[i] = sat0 if keep else sat
        value[i] = val0 if keep else val
        trust[i] = tr0 if keep else tr
        enthusiasm[i] = en0 if keep else en
        stage[i] = st if keep else st_new
        streak[i] = streak[i] if keep else min(sk, 255)

    # The transcendental part alone: libm calls stop LLVM from vectorising any loop they are in.
    # Single precision halves their cost; 1e-7 relative is far below any hazard's uncertainty.
    for j in range(m):
        eta_b[j] = 1.0 / (1.0 + np.float64(math.exp(np.float32(-eta_b[j]))))
        lam = np.float64(math.exp(np.float32(xl_b[j])))
        xl_b[j] = lam
        e0_b[j] = np.float64(math.exp(np.float32(-lam)))

    for j in range(m):
        i = lo + j
        live = np.int64(flags[j])
        hazard = eta_b[j]
        churned = live * np.int64(to_unit(w4[j]) < hazard)
        # Poisson count by inversion of its CDF, capped by the catalogue
        lam = xl_b[j]
        e0 = e0_b[j]
        u = to_unit(w5[j])
        c1 = e0 * (1.0 + lam)
        c2 = c1 + e0 * lam * lam * 0.5
        k = np.int64(u > e0) + np.int64(u > c1) + np.int64(u > c2)
        prod = np.int64(prod_buf[j])
        xs = live * max(min(k, catalogue - prod), 0)
        surveyed = live * np.int64(to_unit(w6[j]) < survey_rate)
        n_churned += churned
        n_xs += xs
        haz_sum += live * np.int64(hazard * FX + 0.5)
        flags[j] = np.uint8(live | (surveyed << 1) | (churned << 2))
        xs_buf[j] = np.uint8(xs)
        tenure[i] += live
        products[i] = prod + xs
        alive[i] = live * (1 - churned)

    acc = np.zeros(N_A, dtype=np.int64)
    acc[A_ACTIVE] = n_active
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

    # second pass: survey answers, panel rows and per-customer tracking, for the few who need them
    for j in range(m):
        f = flags[j]
        if f == 0:
            continue
        i = lo + j
        slot = panel_slot[i] if has_panel else -1
        if (f & 2) == 0 and slot < 0 and not track:
            continue
        prod = np.int64(prod_buf[j])
        xs = np.int64(xs_buf[j])
        seg = segment[i]
        rev = prod * np.int64(s[seg, S_MARGIN_CENTS])
        churned = (f >> 2) & 1
        if track:
            revenue[i] += rev
            if xs > 0:
                purchases[i] += 1
                last_purchase[i] = period
        if (f & 2) == 0 and slot < 0:
            continue
        tr = np.float64(trust[i])
        en = np.float64(enthusiasm[i])
        sat = np.float64(satisfaction[i])
        val = np.float64(value[i])
        if f & 2:
            cid = ids[i]
            nps_latent = min(max(g[G_NPS_INT] + g[G_NPS_SAT] * sat + g[G_NPS_TRUST] * tr + g[G_NPS_ENTH] * en,
                                 0.0), 10.0)
            sat01 = min(max(0.5 + 0.5 * sat, 0.0), 1.0)
            q0, q1, q2, q3 = draw4(cid, period, PURPOSE_SURVEY_A, k0, k1)
            r0, r1, r2, r3 = draw4(cid, period, PURPOSE_SURVEY_B, k0, k1)
            noise = g[G_ITEM_NOISE]
            nps_ans = np.int64(min(max(math.floor(nps_latent + g[G_NPS_NOISE] * ntab[q0 >> 20] + 0.5), 0.0), 10.0))
            t_overall = _item(sat01, ntab[q1 >> 20], noise)
            t_recommend = _item(nps_latent / 10.0, ntab[q2 >> 20], noise)
            t_repurchase = _item((tr + sat01) * 0.5, ntab[q3 >> 20], noise)
            t_advantage = _item(min(max(0.5 + val, 0.0), 1.0), ntab[r0 >> 20], noise)
            tr_item = _item(tr, ntab[r1 >> 20], noise)
            en_item = _item(en, ntab[r2 >> 20], noise)
            sat_item = _item(sat01, ntab[r3 >> 20], noise)
            acc[A_SURVEYED] += 1
            acc[A_SURVEY_PROMOTERS] += nps_ans >= 9
            acc[A_SURVEY_DETRACTORS] += nps_ans <= 6
            acc[A_NPS_SUM] += nps_ans
            acc[A_TRIM0] += t_overall
            acc[A_TRIM0 + 1] += t_recommend
            acc[A_TRIM0 + 2] += t_repurchase
            acc[A_TRIM0 + 3] += t_advantage
            acc[A_TRUST_ITEM] += tr_item
            acc[A_ENTH_ITEM] += en_item
            acc[A_SAT_ITEM] += sat_item
            satisfied = t_overall >= 4
            loyal = t_recommend + t_repurchase >= 8
            acc[A_APOSTLES] += satisfied and loyal
            acc[A_MERCENARIES] += satisfied and not loyal
            acc[A_HOSTAGES] += loyal and not satisfied
            acc[A_TERRORISTS] += not satisfied and not loyal
            if slot >= 0:
                panel_out[slot, 5] = tr_item
                panel_out[slot, 6] = en_item
                panel_out[slot, 7] = sat_item
                panel_out[slot, 8] = nps_ans
                panel_out[slot, 9] = t_overall
                panel_out[slot, 10] = t_recommend
                panel_out[slot, 11] = t_repurchase
                panel_out[slot, 12] = t_advantage
        elif slot >= 0:
            for c in range(5, 13):
                panel_out[slot, c] = -1
        if slot >= 0:
            panel_out[slot, 0] = 1
            panel_out[slot, 1] = churned
            panel_out[slot, 2] = prod
            panel_out[slot, 3] = xs
            panel_out[slot, 4] = rev
    for c in range(N_A):
        acc_out[c] = acc[c]


@njit(inline="always", cache=True)
def _std_normal(cid, j, k0, k1):  # pragma: no cover - compiled
    """An exact standard normal (Box-Muller) for the j-th normal of a customer's birth."""
    w0, w1, _w2, _w3 = draw4(cid, j, PURPOSE_GAMMA, k0, k1)
    return math.sqrt(-2.0 * math.log(to_unit(w0))) * math.cos(2.0 * math.pi * to_unit(w1))


@njit(cache=True)
def _gamma(shape, cid, stream, k0, k1):  # pragma: no cover - compiled
    """A Gamma(shape, 1) variate by Marsaglia & Tsang (2000), from the customer's own stream.

    ``stream`` separates independent variates of one customer; each rejection
    attempt consumes the next counter, so the draw is a pure function of
    (seed, customer id, stream).
    """
    boost = 1.0
    if shape < 1.0:
        _w0, w1, _w2, _w3 = draw4(cid, stream * 1024 + 1023, PURPOSE_GAMMA, k0, k1)
        boost = to_unit(w1) ** (1.0 / shape)
        shape += 1.0
    dd = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * dd)
    for attempt in range(1000):
        j = stream * 1024 + attempt
        w0, w1, w2, _w3 = draw4(cid, j, PURPOSE_INIT_B, k0, k1)
        x = math.sqrt(-2.0 * math.log(to_unit(w0))) * math.cos(2.0 * math.pi * to_unit(w1))
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(to_unit(w2)) < 0.5 * x * x + dd - dd * v + dd * math.log(v):
            return dd * v * boost
    return dd * boost


@njit(parallel=True, cache=True)
def birth(  # pragma: no cover - compiled
    ids, alive, segment, stage, streak, tenure, products,
    satisfaction, trust, enthusiasm, value, base_logit, channel, cohort,
    in_panel, start, count, first_id, channel_bounds, cohort_value, initial_base,
    age_cdf, g, s, k0, k1,
):
    """Create ``count`` customers at rows ``start:start+count`` with ids ``first_id, first_id+1, ...``.

    ``channel_bounds`` holds the first id of the paid, organic and referral
    ranges and the end of the range, so a customer's channel follows from its
    id. With ``initial_base``, ages follow ``age_cdf[segment]`` (the stationary
    age distribution) and the base churn propensity is drawn from
    Beta(alpha, beta + age): the sBG posterior of a customer who survived to that
    age. Every draw is keyed by the customer id, so births do not depend on the
    shard that holds the customer.
    """
    nseg = s.shape[0]
    for j in prange(count):
        i = start + j
        cid = first_id + j
        ids[i] = cid
        alive[i] = 1
        a0, a1, _a2, _a3 = draw4(cid, 0, PURPOSE_INIT_A, k0, k1)
        c0, _c1, _c2, _c3 = draw4(cid, 0, PURPOSE_INIT_C, k0, k1)
        u = to_unit(a0)
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
            ua = to_unit(a1)
            age = int(np.searchsorted(age_cdf[sg], ua, side="right"))
            age = min(age, age_cdf.shape[1] - 1)
            us = to_unit(c0)
            st = 0
            while st < 3 and us >= s[sg, S_MIX_CUM0 + st]:
                st += 1
            stage[i] = st
        else:
            stage[i] = 0
        tenure[i] = age
        cohort[i] = cohort_value - age
        streak[i] = 0
        products[i] = np.uint8(s[sg, S_INIT_PRODUCTS])
        bonus_t = g[G_REF_TRUST_BONUS] if ch == CH_REFERRAL else 0.0
        bonus_e = g[G_REF_ENTH_BONUS] if ch == CH_REFERRAL else 0.0
        trust[i] = _clip(s[sg, S_INIT_TRUST] + bonus_t + 0.10 * _std_normal(cid, 1, k0, k1), 0.0, 1.0)
        enthusiasm[i] = _clip(s[sg, S_INIT_ENTH] + bonus_e + 0.10 * _std_normal(cid, 2, k0, k1), 0.0, 1.0)
        satisfaction[i] = s[sg, S_INIT_SAT] + 0.30 * _std_normal(cid, 3, k0, k1)
        value[i] = 0.0
        alpha = s[sg, S_ALPHA]
        beta = s[sg, S_BETA]
        if s[sg, S_HETERO] > 0.5:
            x = _gamma(alpha, cid, 0, k0, k1)
            y = _gamma(beta + age, cid, 1, k0, k1)
            prob = x / (x + y)
        else:
            prob = alpha / (alpha + beta)
        prob = _clip(prob, 1e-9, 1.0 - 1e-9)
        base_logit[i] = math.log(prob / (1.0 - prob))
        in_panel[i] = to_unit(draw4(cid, 0, PURPOSE_PANEL, k0, k1)[0]) < g[G_PANEL_FRACTION]
