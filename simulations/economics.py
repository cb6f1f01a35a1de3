"""Closed-form economics of acquisition and retention, customer lifetime value and diffusion.

Pure, vectorised functions: every argument broadcasts with NumPy rules, so one call
evaluates a grid of budgets or a whole posterior sample. Scalar inputs give NumPy
scalars, array inputs give arrays of the broadcast shape. Time units are explicit in
the names: a *period* is whatever the caller's rates refer to (a month, a year), and
every rate, spend and discount in one call must refer to the same period.

Four families, each tested against its published numbers (docs/economics.md):

- Blattberg & Deighton (1996) response curves, customer equity per prospect and the
  optimal acquisition and retention spend, with Pfeifer's (2005) average and marginal
  costs to acquire and to retain.
- Customer lifetime value: Gupta & Lehmann (2003) in both timing conventions and
  Berger & Nasr (1998) case 1.
- Shifted-beta-geometric survival, discounted expected lifetime and residual lifetime
  (Fader & Hardie 2007, 2010).
- The Bass (1969) diffusion curve, its peak, and the discrete-time recursion that a
  fully mixed agent-level simulation follows in expectation.

Impossible inputs (a probability outside [0, 1], a negative spend, a discount rate
≤ −1) raise :class:`tenure.errors.InputError` with a one-line message naming the
parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from tenure.curves import response_rate
from tenure.curves import sbg_survival as _sbg_survival
from tenure.errors import InputError

#: A NumPy scalar (a ``float``) for scalar inputs, an array of the broadcast shape otherwise.
FloatOrArray = float | npt.NDArray[np.float64]


def _checked(
    name: str,
    value: npt.ArrayLike,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> npt.NDArray[np.float64]:
    """``value`` as a float array, or an :class:`InputError` naming ``name`` if any element is NaN or out of range."""
    x = np.asarray(value, dtype=np.float64)
    ok = ~np.isnan(x)
    if low is not None:
        ok &= (x > low) if low_open else (x >= low)
    if high is not None:
        ok &= (x < high) if high_open else (x <= high)
    if not np.all(ok):
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high:g}")
        raise InputError(f"{name} must be {' and '.join(bounds) or 'a number'}, got {x[~ok].flat[0]:g}")
    return x


def _whole(name: str, value: npt.ArrayLike, *, low: int) -> npt.NDArray[np.float64]:
    """``value`` as a float array of whole numbers ≥ ``low``, or an :class:`InputError` naming ``name``."""
    x = _checked(name, value, low=low)
    if not np.all(np.isfinite(x) & (x == np.floor(x))):
        bad = x[~(np.isfinite(x) & (x == np.floor(x)))].flat[0]
        raise InputError(f"{name} must be a whole number of periods, got {bad:g}")
    return x


def _below_one_plus_discount(
    name: str, rate: npt.NDArray[np.float64], discount_rate_per_period: npt.NDArray[np.float64]
) -> None:
    """Raise unless rate < 1 + d: otherwise the discounted geometric sum of future margins diverges."""
    bad = ~(rate < 1.0 + discount_rate_per_period)
    if np.any(bad):
        worst = np.broadcast_to(rate, np.broadcast_shapes(rate.shape, discount_rate_per_period.shape))[bad].flat[0]
        raise InputError(f"{name} must be below 1 + discount_rate_per_period (else value is infinite), got {worst:g}")


def _scalar_or_array(x: npt.NDArray[np.float64]) -> FloatOrArray:
    """A 0-d array as a NumPy scalar, any other array unchanged."""
    return x[()]


# --- Blattberg & Deighton (1996): response curves and customer equity --------------------------------------------


def acquisition_rate(
    spend_per_prospect: npt.ArrayLike, ceiling: npt.ArrayLike, k_per_unit_spend: npt.ArrayLike
) -> FloatOrArray:
    """Share of prospects acquired at a spend per prospect: a(A) = c_a·(1 − e^{−k₁A}).

    Blattberg & Deighton (1996), "Manage marketing by the customer equity test",
    Harvard Business Review 74(4), acquisition response curve.

    Parameters
    ----------
    spend_per_prospect
        Acquisition spend A per prospect (currency), ≥ 0; a one-off spend, not per period.
    ceiling
        Ceiling rate c_a in [0, 1]: the share acquired at unlimited spend.
    k_per_unit_spend
        Steepness k₁ ≥ 0 per currency unit of A (see :func:`calibrate_k_per_unit_spend`).

    Returns
    -------
    Acquisition probability of a prospect, in [0, c_a].
    """
    a_spend = _checked("spend_per_prospect", spend_per_prospect, low=0.0)
    c = _checked("ceiling", ceiling, low=0.0, high=1.0)
    k = _checked("k_per_unit_spend", k_per_unit_spend, low=0.0)
    return _scalar_or_array(np.asarray(response_rate(a_spend, c, k)))


def retention_rate_per_period(
    spend_per_customer_per_period: npt.ArrayLike, ceiling: npt.ArrayLike, k_per_unit_spend: npt.ArrayLike
) -> FloatOrArray:
    """Share of customers kept for one more period at a retention spend: r(R) = c_r·(1 − e^{−k₂R}).

    Blattberg & Deighton (1996), retention response curve.

    Parameters
    ----------
    spend_per_customer_per_period
        Retention spend R per existing customer per period (currency), ≥ 0.
    ceiling
        Ceiling retention rate c_r per period, in [0, 1].
    k_per_unit_spend
        Steepness k₂ ≥ 0 per currency unit of R.

    Returns
    -------
    Retention probability per period, in [0, c_r].
    """
    r_spend = _checked("spend_per_customer_per_period", spend_per_customer_per_period, low=0.0)
    c = _checked("ceiling", ceiling, low=0.0, high=1.0)
    k = _checked("k_per_unit_spend", k_per_unit_spend, low=0.0)
    return _scalar_or_array(np.asarray(response_rate(r_spend, c, k)))


def calibrate_k_per_unit_spend(
    observed_rate: npt.ArrayLike, ceiling: npt.ArrayLike, observed_spend: npt.ArrayLike
) -> FloatOrArray:
    """Steepness of a response curve from one observed point: k = −ln(1 − rate/ceiling)/spend.

    Blattberg & Deighton (1996) calibrate each curve from a manager's ceiling and one
    observed (spend, rate) pair; this inverts c·(1 − e^{−k·spend}) = rate. The same
    function serves acquisition (spend per prospect) and retention (spend per customer
    per period); k is per currency unit of that spend.

    Parameters
    ----------
    observed_rate
        Observed acquisition or retention rate, in [0, ceiling).
    ceiling
        Ceiling rate in (0, 1].
    observed_spend
        Spend at which ``observed_rate`` was seen, > 0.

    Returns
    -------
    k ≥ 0 (0 when the observed rate is 0: spend has no effect).

    Examples
    --------
    >>> round(float(calibrate_k_per_unit_spend(0.04, 0.10, 1.0)), 4)
    0.5108
    """
    c = _checked("ceiling", ceiling, low=0.0, high=1.0, low_open=True)
    rate = _checked("observed_rate", observed_rate, low=0.0, high=1.0)
    spend = _checked("observed_spend", observed_spend, low=0.0, low_open=True)
    at_or_above = rate >= c
    if np.any(at_or_above):
        bad_rate = np.broadcast_to(rate, np.broadcast_shapes(rate.shape, c.shape))[at_or_above].flat[0]
        raise InputError(
            f"observed_rate must be below ceiling (the curve only approaches its ceiling), got {bad_rate:g}"
        )
    return _scalar_or_array(-np.log1p(-rate / c) / spend)


def customer_value_at_acquisition(
    margin_per_period: npt.ArrayLike,
    retention_rate_per_period: npt.ArrayLike,
    retention_spend_per_customer_per_period: npt.ArrayLike,
    discount_rate_per_period: npt.ArrayLike,
) -> FloatOrArray:
    """Value of a customer at the moment of acquisition: V = m + (m − R/r)·r′/(1 − r′), r′ = r/(1+d).

    Blattberg & Deighton (1996): the first margin is earned at once; each later period
    the firm spends R on every customer it still has and keeps a share r, so each
    retained customer-period nets m − R/r. Computed as the equal form
    m + (m·r − R)/(1 + d − r), which is also defined at r = 0.

    Parameters
    ----------
    margin_per_period
        Margin m per customer per period (currency).
    retention_rate_per_period
        Retention rate r per period, in [0, 1] and below 1 + d.
    retention_spend_per_customer_per_period
        Retention spend R per customer per period (currency), ≥ 0.
    discount_rate_per_period
        Discount rate d per period, > −1.

    Returns
    -------
    V in currency per acquired customer.
    """
    m = _checked("margin_per_period", margin_per_period)
    r = _checked("retention_rate_per_period", retention_rate_per_period, low=0.0, high=1.0)
    r_spend = _checked("retention_spend_per_customer_per_period", retention_spend_per_customer_per_period, low=0.0)
    d = _checked("discount_rate_per_period", discount_rate_per_period, low=-1.0, low_open=True)
    _below_one_plus_discount("retention_rate_per_period", r, d)
    return _scalar_or_array(m + (m * r - r_spend) / (1.0 + d - r))


def customer_equity_per_prospect(
    acquisition_spend_per_prospect: npt.ArrayLike,
    acquisition_rate: npt.ArrayLike,
    margin_per_period: npt.ArrayLike,
    retention_spend_per_customer_per_period: npt.ArrayLike,
    retention_rate_per_period: npt.ArrayLike,
    discount_rate_per_period: npt.ArrayLike,
) -> FloatOrArray:
    """Customer equity per prospect: CE = a·m − A + a·(m − R/r)·r′/(1 − r′), r′ = r/(1+d).

    Blattberg & Deighton (1996), the customer equity test: the expected discounted
    profit from one prospect, who is acquired with probability a after a spend A and
    then retained period after period at rate r for a spend R per customer per period.
    Equal to a·V − A with V from :func:`customer_value_at_acquisition`.

    Parameters
    ----------
    acquisition_spend_per_prospect
        A ≥ 0 (currency per prospect).
    acquisition_rate
        a in [0, 1]: share of prospects acquired.
    margin_per_period
        m (currency per customer per period).
    retention_spend_per_customer_per_period
        R ≥ 0 (currency per customer per period).
    retention_rate_per_period
        r in [0, 1], below 1 + d.
    discount_rate_per_period
        d > −1.

    Returns
    -------
    CE in currency per prospect.

    Examples
    --------
    Blattberg & Deighton's worked example (m = 200, d = 0.10):

    >>> round(float(customer_equity_per_prospect(20, 0.2, 200, 30, 0.6, 0.10)), 2)
    56.0
    """
    a_spend = _checked("acquisition_spend_per_prospect", acquisition_spend_per_prospect, low=0.0)
    a = _checked("acquisition_rate", acquisition_rate, low=0.0, high=1.0)
    value = customer_value_at_acquisition(
        margin_per_period, retention_rate_per_period, retention_spend_per_customer_per_period, discount_rate_per_period
    )
    return _scalar_or_array(np.asarray(a * value - a_spend))


# --- Pfeifer (2005): average and marginal costs to acquire and to retain ------------------------------------------


def average_cost_to_acquire(spend_per_prospect: npt.ArrayLike, acquisition_rate: npt.ArrayLike) -> FloatOrArray:
    """Average cost of one acquired customer: A/a (Pfeifer 2005).

    Total acquisition spend divided by customers acquired; works with a response curve's
    rate or with a rate measured in a simulation. ``inf`` where a = 0 < A, NaN where both are 0.

    Parameters
    ----------
    spend_per_prospect
        A ≥ 0 (currency per prospect).
    acquisition_rate
        a in [0, 1].

    Returns
    -------
    Currency per acquired customer.
    """
    a_spend = _checked("spend_per_prospect", spend_per_prospect, low=0.0)
    a = _checked("acquisition_rate", acquisition_rate, low=0.0, high=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _scalar_or_array(np.asarray(a_spend / a))


def average_cost_to_retain(
    spend_per_customer_per_period: npt.ArrayLike, retention_rate_per_period: npt.ArrayLike
) -> FloatOrArray:
    """Average cost of one retained customer-period: R/r (Pfeifer 2005).

    The spend on every customer divided by the share kept, the R/r of the
    Blattberg–Deighton equity. ``inf`` where r = 0 < R, NaN where both are 0.

    Parameters
    ----------
    spend_per_customer_per_period
        R ≥ 0 (currency per customer per period).
    retention_rate_per_period
        r in [0, 1].

    Returns
    -------
    Currency per customer retained for one period.
    """
    r_spend = _checked("spend_per_customer_per_period", spend_per_customer_per_period, low=0.0)
    r = _checked("retention_rate_per_period", retention_rate_per_period, low=0.0, high=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _scalar_or_array(np.asarray(r_spend / r))


def _marginal_cost(
    spend: npt.ArrayLike, ceiling: npt.ArrayLike, k_per_unit_spend: npt.ArrayLike, spend_name: str
) -> FloatOrArray:
    """1/(d rate/d spend) = e^{k·spend}/(k·c) for a Blattberg–Deighton curve; ``inf`` where k·c = 0."""
    s = _checked(spend_name, spend, low=0.0)
    c = _checked("ceiling", ceiling, low=0.0, high=1.0)
    k = _checked("k_per_unit_spend", k_per_unit_spend, low=0.0)
    with np.errstate(divide="ignore", over="ignore"):
        return _scalar_or_array(np.asarray(np.exp(k * s) / (k * c)))


def marginal_cost_to_acquire(
    spend_per_prospect: npt.ArrayLike, ceiling: npt.ArrayLike, k_per_unit_spend: npt.ArrayLike
) -> FloatOrArray:
    """Cost of acquiring one more customer at spend A: 1/a′(A) = e^{k₁A}/(k₁c_a) (Pfeifer 2005).

    Spending dA more on each of N prospects costs N·dA and wins N·a′(A)·dA more customers.

    Parameters
    ----------
    spend_per_prospect
        A ≥ 0 (currency per prospect).
    ceiling
        c_a in [0, 1].
    k_per_unit_spend
        k₁ ≥ 0.

    Returns
    -------
    Currency per additional acquired customer (``inf`` when spend buys nothing).
    """
    return _marginal_cost(spend_per_prospect, ceiling, k_per_unit_spend, "spend_per_prospect")


def marginal_cost_to_retain(
    spend_per_customer_per_period: npt.ArrayLike, ceiling: npt.ArrayLike, k_per_unit_spend: npt.ArrayLike
) -> FloatOrArray:
    """Cost of retaining one more customer for a period at spend R: 1/r′(R) = e^{k₂R}/(k₂c_r) (Pfeifer 2005).

    Parameters
    ----------
    spend_per_customer_per_period
        R ≥ 0 (currency per customer per period).
    ceiling
        c_r in [0, 1].
    k_per_unit_spend
        k₂ ≥ 0.

    Returns
    -------
    Currency per additional customer retained for one period (``inf`` when spend buys nothing).
    """
    return _marginal_cost(spend_per_customer_per_period, ceiling, k_per_unit_spend, "spend_per_customer_per_period")


@dataclass(frozen=True)
class OptimalSpend:
    """The Blattberg–Deighton optimum and Pfeifer's costs there; each field broadcasts like the inputs.

    At an interior optimum ``customer_value_at_acquisition``, ``marginal_cost_to_acquire``
    and ``marginal_cost_to_retain`` are equal (Pfeifer 2005), so ``marginal_cost_ratio`` is 1:
    the "five times" rule can only hold between *average* costs. At a corner (zero spend
    on a lever) the marginal cost there exceeds the value, and an average cost at zero
    spend is NaN (0/0).
    """

    acquisition_spend_per_prospect: FloatOrArray
    retention_spend_per_customer_per_period: FloatOrArray
    acquisition_rate: FloatOrArray
    retention_rate_per_period: FloatOrArray
    customer_equity_per_prospect: FloatOrArray
    customer_value_at_acquisition: FloatOrArray
    marginal_cost_to_acquire: FloatOrArray
    marginal_cost_to_retain: FloatOrArray
    average_cost_to_acquire: FloatOrArray
    average_cost_to_retain: FloatOrArray

    @property
    def marginal_cost_ratio(self) -> FloatOrArray:
        """Marginal cost to acquire over marginal cost to retain (1 at an interior optimum)."""
        return _scalar_or_array(np.asarray(np.divide(self.marginal_cost_to_acquire, self.marginal_cost_to_retain)))

    @property
    def average_cost_ratio(self) -> FloatOrArray:
        """Average cost to acquire over average cost to retain: the ratio the "five times" claim quotes."""
        return _scalar_or_array(np.asarray(np.divide(self.average_cost_to_acquire, self.average_cost_to_retain)))


def optimal_spend(
    acquisition_ceiling: npt.ArrayLike,
    acquisition_k_per_unit_spend: npt.ArrayLike,
    retention_ceiling: npt.ArrayLike,
    retention_k_per_unit_spend: npt.ArrayLike,
    margin_per_period: npt.ArrayLike,
    discount_rate_per_period: npt.ArrayLike,
) -> OptimalSpend:
    """Acquisition and retention spend (A*, R*) that maximise Blattberg–Deighton customer equity.

    Method (exact, no iterative optimiser). CE = a(A)·V(R) − A, and the value V of an
    acquired customer does not depend on A, so R* maximises V alone. Its first-order
    condition r′(R)·(m(1+d) − R) = 1 + d − r(R) has a left-minus-right side that falls
    strictly on [0, m(1+d)] and is negative beyond, so its root is the unique maximum;
    with r = c_r(1 − e^{−k₂R}) it solves in closed form through the Lambert W function,
    R* = m(1+d) − (1 + W(z))/k₂, z = (1 + d − c_r)/c_r · e^{k₂m(1+d) − 1}, evaluated as
    the Wright omega function of ln z so that large k₂·m does not overflow. R* = 0 when
    k₂c_r·m ≤ 1 (the first euro of retention does not pay). Then A* solves
    a′(A)·V(R*) = 1: A* = ln(c_a k₁ V*)/k₁, or 0 when c_a k₁ V* ≤ 1. Both conditions say
    that the marginal cost equals the customer value (Pfeifer 2005).

    Parameters
    ----------
    acquisition_ceiling
        c_a in [0, 1].
    acquisition_k_per_unit_spend
        k₁ ≥ 0, per currency unit of acquisition spend per prospect.
    retention_ceiling
        c_r in [0, 1] and below 1 + d.
    retention_k_per_unit_spend
        k₂ ≥ 0, per currency unit of retention spend per customer per period.
    margin_per_period
        m (currency per customer per period).
    discount_rate_per_period
        d > −1.

    Returns
    -------
    OptimalSpend
        Spends, rates, equity, customer value and the four costs at the optimum.

    Examples
    --------
    Pfeifer's (2005) calibration of the Blattberg–Deighton model:

    >>> k1 = calibrate_k_per_unit_spend(0.04, 0.10, 1.0)
    >>> k2 = calibrate_k_per_unit_spend(0.60, 0.80, 8.0)
    >>> best = optimal_spend(0.10, k1, 0.80, k2, 50.0, 0.10)
    >>> round(float(best.acquisition_spend_per_prospect), 3)
    3.405
    >>> round(float(best.retention_spend_per_customer_per_period), 2)
    15.8
    """
    c_a = _checked("acquisition_ceiling", acquisition_ceiling, low=0.0, high=1.0)
    k1 = _checked("acquisition_k_per_unit_spend", acquisition_k_per_unit_spend, low=0.0)
    c_r = _checked("retention_ceiling", retention_ceiling, low=0.0, high=1.0)
    k2 = _checked("retention_k_per_unit_spend", retention_k_per_unit_spend, low=0.0)
    m = _checked("margin_per_period", margin_per_period)
    d = _checked("discount_rate_per_period", discount_rate_per_period, low=-1.0, low_open=True)
    _below_one_plus_discount("retention_ceiling", c_r, d)
    c_a, k1, c_r, k2, m, d = np.broadcast_arrays(c_a, k1, c_r, k2, m, d)

    value_at_cap = m * (1.0 + d)
    retain = k2 * c_r * m > 1.0
    # Stand-ins of 1 where the corner applies keep the closed form free of 0/0 and log(0).
    c_r_safe = np.where(retain, c_r, 1.0)
    gap_safe = np.where(retain, 1.0 + d - c_r, 1.0)
    k2_safe = np.where(retain, k2, 1.0)
    omega = special.wrightomega(np.log(gap_safe / c_r_safe) + k2_safe * value_at_cap - 1.0)
    r_spend = np.where(retain, value_at_cap - (1.0 + omega) / k2_safe, 0.0)
    r = response_rate(r_spend, c_r, k2)
    value = m + (m * r - r_spend) / (1.0 + d - r)

    acquire = c_a * k1 * value > 1.0
    k1_safe = np.where(acquire, k1, 1.0)
    gain_safe = np.where(acquire, c_a * k1 * value, 1.0)
    a_spend = np.where(acquire, np.log(gain_safe) / k1_safe, 0.0)
    a = response_rate(a_spend, c_a, k1)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return OptimalSpend(
            acquisition_spend_per_prospect=_scalar_or_array(a_spend),
            retention_spend_per_customer_per_period=_scalar_or_array(r_spend),
            acquisition_rate=_scalar_or_array(a),
            retention_rate_per_period=_scalar_or_array(r),
            customer_equity_per_prospect=_scalar_or_array(a * value - a_spend),
            customer_value_at_acquisition=_scalar_or_array(value),
            marginal_cost_to_acquire=_scalar_or_array(np.exp(k1 * a_spend) / (k1 * c_a)),
            marginal_cost_to_retain=_scalar_or_array(np.exp(k2 * r_spend) / (k2 * c_r)),
            average_cost_to_acquire=_scalar_or_array(a_spend / a),
            average_cost_to_retain=_scalar_or_array(r_spend / r),
        )


# --- Customer lifetime value -------------------------------------------------------------------------------------


def clv_margin_at_period_end(
    margin_per_period: npt.ArrayLike, retention_rate_per_period: npt.ArrayLike, discount_rate_per_period: npt.ArrayLike
) -> FloatOrArray:
    """Lifetime value with margins paid at the end of each period: CLV = m·r/(1 + i − r).

    Gupta & Lehmann (2003), "Customers as assets", Journal of Interactive Marketing
    17(1): an infinite horizon, constant margin and retention; r/(1 + i − r) is the
    *margin multiple* (4.50 at r = 0.9, i = 0.10). The first margin comes one period
    after acquisition and only if the customer is retained.

    Parameters
    ----------
    margin_per_period
        m (currency per customer per period).
    retention_rate_per_period
        r in [0, 1], below 1 + i.
    discount_rate_per_period
        i > −1.

    Returns
    -------
    CLV in currency per customer, excluding any acquisition cost.

    Examples
    --------
    >>> round(float(clv_margin_at_period_end(1.0, 0.9, 0.10)), 2)
    4.5
    """
    m = _checked("margin_per_period", margin_per_period)
    r = _checked("retention_rate_per_period", retention_rate_per_period, low=0.0, high=1.0)
    i = _checked("discount_rate_per_period", discount_rate_per_period, low=-1.0, low_open=True)
    _below_one_plus_discount("retention_rate_per_period", r, i)
    return _scalar_or_array(np.asarray(m * r / (1.0 + i - r)))


def clv_margin_at_period_start(
    margin_per_period: npt.ArrayLike,
    retention_spend_per_customer_per_period: npt.ArrayLike,
    retention_rate_per_period: npt.ArrayLike,
    discount_rate_per_period: npt.ArrayLike,
) -> FloatOrArray:
    """Lifetime value with margins paid at the start of each period: CLV = (M − R)(1 + d)/(1 + d − r).

    Gupta & Lehmann (2003): the same infinite geometric sum as
    :func:`clv_margin_at_period_end`, shifted by one period, so the first net margin
    M − R is earned at once and undiscounted.

    Parameters
    ----------
    margin_per_period
        M (currency per customer per period).
    retention_spend_per_customer_per_period
        R ≥ 0 (currency per customer per period).
    retention_rate_per_period
        r in [0, 1], below 1 + d.
    discount_rate_per_period
        d > −1.

    Returns
    -------
    CLV in currency per customer.

    Examples
    --------
    >>> round(float(clv_margin_at_period_start(18.45, 0.50, 0.995, 0.01)))
    1209
    """
    m = _checked("margin_per_period", margin_per_period)
    r_spend = _checked("retention_spend_per_customer_per_period", retention_spend_per_customer_per_period, low=0.0)
    r = _checked("retention_rate_per_period", retention_rate_per_period, low=0.0, high=1.0)
    d = _checked("discount_rate_per_period", discount_rate_per_period, low=-1.0, low_open=True)
    _below_one_plus_discount("retention_rate_per_period", r, d)
    return _scalar_or_array(np.asarray((m - r_spend) * (1.0 + d) / (1.0 + d - r)))


def _geometric_sum(ratio: npt.NDArray[np.float64], terms: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Σ_{j=0}^{terms−1} ratio^j for ratio ≥ 0, exact also at ratio = 1."""
    one = ratio == 1.0
    safe = np.where(one, 0.5, ratio)
    return np.where(one, terms, (1.0 - safe**terms) / (1.0 - safe))


def clv_berger_nasr_case1(
    gross_contribution_per_period: npt.ArrayLike,
    promotion_cost_per_customer_per_period: npt.ArrayLike,
    retention_rate_per_period: npt.ArrayLike,
    discount_rate_per_period: npt.ArrayLike,
    periods: npt.ArrayLike,
) -> FloatOrArray:
    """Berger & Nasr (1998) case 1: CLV = GC·Σ_{i=0}^{n}[r/(1+d)]^i − M·Σ_{i=1}^{n} r^{i−1}/(1+d)^{i−0.5}.

    Berger & Nasr (1998), "Customer lifetime value: marketing models and applications",
    Journal of Interactive Marketing 12(1), case 1: a gross contribution GC from every
    customer alive at the start of each period (undiscounted at i = 0), promotion costs M
    per customer per period spent mid-period (hence the half-period discount), a
    horizon of n periods after the first. Both sums are finite geometric series.

    Parameters
    ----------
    gross_contribution_per_period
        GC (currency per customer per period).
    promotion_cost_per_customer_per_period
        M ≥ 0 (currency per customer per period).
    retention_rate_per_period
        r in [0, 1].
    discount_rate_per_period
        d > −1.
    periods
        n, a whole number of periods ≥ 0.

    Returns
    -------
    CLV in currency per customer.

    Examples
    --------
    >>> round(float(clv_berger_nasr_case1(260, 50, 0.75, 0.20, 10)), 2)
    568.78
    """
    gc = _checked("gross_contribution_per_period", gross_contribution_per_period)
    promo = _checked("promotion_cost_per_customer_per_period", promotion_cost_per_customer_per_period, low=0.0)
    r = _checked("retention_rate_per_period", retention_rate_per_period, low=0.0, high=1.0)
    d = _checked("discount_rate_per_period", discount_rate_per_period, low=-1.0, low_open=True)
    n = _whole("periods", periods, low=0)
    rho = r / (1.0 + d)
    # Σ_{i=1}^{n} r^{i−1}/(1+d)^{i−0.5} = (1+d)^{−1/2}·Σ_{j=0}^{n−1} ρ^j with ρ = r/(1+d).
    contribution = gc * _geometric_sum(rho, n + 1.0)
    promotion = promo / np.sqrt(1.0 + d) * _geometric_sum(rho, n)
    return _scalar_or_array(np.asarray(contribution - promotion))


# --- Shifted-beta-geometric retention (Fader & Hardie 2007, 2010) --------------------------------------------------


def _sbg_shape(alpha: npt.ArrayLike, beta: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    return _checked("alpha", alpha, low=0.0, low_open=True), _checked("beta", beta, low=0.0, low_open=True)


def sbg_survival(alpha: npt.ArrayLike, beta: npt.ArrayLike, t: npt.ArrayLike) -> FloatOrArray:
    """Share of a cohort still active after t periods: S(t) = B(α, β+t)/B(α, β).

    Fader & Hardie (2007), "How to project customer retention", Journal of Interactive
    Marketing 21(1): each customer churns at the end of a period with probability θ,
    θ ~ Beta(α, β) across customers; S(t) is the beta-mixture of (1 − θ)^t. Evaluated
    with ``scipy.special.betaln`` so that large β + t does not overflow.

    Parameters
    ----------
    alpha, beta
        Beta shape parameters, > 0 (broadcast, e.g. posterior draws).
    t
        Periods since acquisition, a whole number ≥ 0.

    Returns
    -------
    S(t) in [0, 1]; S(0) = 1.
    """
    a, b = _sbg_shape(alpha, beta)
    periods = _whole("t", t, low=0)
    return _scalar_or_array(np.asarray(_sbg_survival(a, b, periods)))


def sbg_churn_pmf(alpha: npt.ArrayLike, beta: npt.ArrayLike, t: npt.ArrayLike) -> FloatOrArray:
    """Probability that a new customer churns at the end of period t: P(T = t) = B(α+1, β+t−1)/B(α, β).

    Fader & Hardie (2007), the sBG probability mass function; equals S(t−1) − S(t).

    Parameters
    ----------
    alpha, beta
        Beta shape parameters, > 0.
    t
        Period of churn, a whole number ≥ 1.

    Returns
    -------
    P(T = t) in [0, 1].
    """
    a, b = _sbg_shape(alpha, beta)
    periods = _whole("t", t, low=1)
    return _scalar_or_array(np.asarray(np.exp(special.betaln(a + 1.0, b + periods - 1.0) - special.betaln(a, b))))


def sbg_retention_rate(alpha: npt.ArrayLike, beta: npt.ArrayLike, t: npt.ArrayLike) -> FloatOrArray:
    """Cohort retention rate in period t: r_t = S(t)/S(t−1) = (β+t−1)/(α+β+t−1).

    Fader & Hardie (2007): it rises with t although no customer's churn probability
    changes, because the customers most likely to churn leave first.

    Parameters
    ----------
    alpha, beta
        Beta shape parameters, > 0.
    t
        Period, a whole number ≥ 1.

    Returns
    -------
    r_t in (0, 1).
    """
    a, b = _sbg_shape(alpha, beta)
    periods = _whole("t", t, low=1)
    return _scalar_or_array(np.asarray((b + periods - 1.0) / (a + b + periods - 1.0)))


def _lifetime_discount(discount_rate_per_period: npt.ArrayLike) -> npt.NDArray[np.float64]:
    # d < 0 makes z = 1/(1+d) > 1, where the lifetime sum diverges and hyp2f1 would return a continuation.
    d = _checked("discount_rate_per_period", discount_rate_per_period, low=0.0)
    return 1.0 / (1.0 + d)


def sbg_del(alpha: npt.ArrayLike, beta: npt.ArrayLike, discount_rate_per_period: npt.ArrayLike) -> FloatOrArray:
    """Discounted expected lifetime of a new customer, in periods: DEL = ₂F₁(1, β; α+β; 1/(1+d)).

    Fader & Hardie (2010), "Customer-base valuation in a contractual setting: the perils
    of ignoring heterogeneity", Marketing Science 29(1): DEL = Σ_{t≥0} S(t)/(1+d)^t, whose
    series is exactly the hypergeometric one. The first period counts undiscounted, so
    DEL × margin per period (paid at the start of each period) is the expected CLV.

    Parameters
    ----------
    alpha, beta
        Beta shape parameters, > 0.
    discount_rate_per_period
        d ≥ 0. At d = 0 DEL is the expected lifetime (α+β−1)/(α−1), infinite for α ≤ 1.

    Returns
    -------
    DEL in periods.
    """
    a, b = _sbg_shape(alpha, beta)
    z = _lifetime_discount(discount_rate_per_period)
    return _scalar_or_array(np.asarray(special.hyp2f1(1.0, b, a + b, z)))


def sbg_derl(
    alpha: npt.ArrayLike, beta: npt.ArrayLike, discount_rate_per_period: npt.ArrayLike, renewals: npt.ArrayLike
) -> FloatOrArray:
    """Discounted expected residual lifetime after n renewals: (β+n)/(α+β+n)·₂F₁(1, β+n+1; α+β+n+1; 1/(1+d)).

    Fader & Hardie (2010), DERL, here indexed by the number n of renewals already made
    (their formula for n − 1 renewals with n shifted by one). It values a customer about
    to decide on renewal n + 1: Σ_{t>n} S(t)/S(n)/(1+d)^{t−n−1}, the first term
    undiscounted.

    Parameters
    ----------
    alpha, beta
        Beta shape parameters, > 0.
    discount_rate_per_period
        d ≥ 0.
    renewals
        n, a whole number ≥ 0.

    Returns
    -------
    DERL in periods.
    """
    a, b = _sbg_shape(alpha, beta)
    z = _lifetime_discount(discount_rate_per_period)
    n = _whole("renewals", renewals, low=0)
    return _scalar_or_array(np.asarray((b + n) / (a + b + n) * special.hyp2f1(1.0, b + n + 1.0, a + b + n + 1.0, z)))


# --- Bass (1969) diffusion ----------------------------------------------------------------------------------------


def _bass_rates(
    innovation_per_period: npt.ArrayLike, imitation_per_period: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    p = _checked("innovation_per_period", innovation_per_period, low=0.0, low_open=True)
    q = _checked("imitation_per_period", imitation_per_period, low=0.0)
    return p, q


def bass_cumulative_adoption(
    innovation_per_period: npt.ArrayLike, imitation_per_period: npt.ArrayLike, t: npt.ArrayLike
) -> FloatOrArray:
    """Share of the market that has adopted by time t: F(t) = (1 − e^{−(p+q)t})/(1 + (q/p)e^{−(p+q)t}).

    Bass (1969), "A new product growth for model consumer durables", Management Science
    15(5): the solution of dF/dt = (p + qF)(1 − F), F(0) = 0.

    Parameters
    ----------
    innovation_per_period
        Coefficient of innovation p > 0, per period.
    imitation_per_period
        Coefficient of imitation q ≥ 0, per period.
    t
        Time in periods (real, ≥ 0).

    Returns
    -------
    F(t) in [0, 1).
    """
    p, q = _bass_rates(innovation_per_period, imitation_per_period)
    time = _checked("t", t, low=0.0)
    decay = np.exp(-(p + q) * time)
    return _scalar_or_array(np.asarray(-np.expm1(-(p + q) * time) / (1.0 + q / p * decay)))


def bass_peak_time(innovation_per_period: npt.ArrayLike, imitation_per_period: npt.ArrayLike) -> FloatOrArray:
    """Time of peak adoption, in periods: t* = ln(q/p)/(p + q), or 0 when q ≤ p.

    Bass (1969). When q ≤ p the adoption rate falls from the start, so the peak is at 0.

    Parameters
    ----------
    innovation_per_period
        p > 0, per period.
    imitation_per_period
        q ≥ 0, per period.

    Returns
    -------
    t* in periods.

    Examples
    --------
    Mean coefficients over 213 applications (Sultan, Farley & Lehmann 1990):

    >>> round(float(bass_peak_time(0.03, 0.38)), 2)
    6.19
    """
    p, q = _bass_rates(innovation_per_period, imitation_per_period)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(np.asarray(np.maximum(np.log(q / p), 0.0) / (p + q)))


def bass_cumulative_adoption_at_peak(
    innovation_per_period: npt.ArrayLike, imitation_per_period: npt.ArrayLike
) -> FloatOrArray:
    """Share adopted at the peak: F(t*) = 1/2 − p/(2q), or 0 when q ≤ p (Bass 1969).

    Parameters
    ----------
    innovation_per_period
        p > 0, per period.
    imitation_per_period
        q ≥ 0, per period.

    Returns
    -------
    F(t*) in [0, 1/2).
    """
    p, q = _bass_rates(innovation_per_period, imitation_per_period)
    with np.errstate(divide="ignore"):
        return _scalar_or_array(np.asarray(np.where(q > p, 0.5 - p / (2.0 * np.where(q > p, q, 1.0)), 0.0)))


def bass_adoption_recursion(
    innovation_per_period: npt.ArrayLike,
    imitation_per_period: npt.ArrayLike,
    steps: int,
    steps_per_period: int = 1,
    initial_adopted_share: npt.ArrayLike = 0.0,
) -> npt.NDArray[np.float64]:
    """Expected adopted share of a fully mixed population in discrete steps: F_{k+1} = F_k + h(p + qF_k)(1 − F_k).

    The discrete-time Bass (1969) model with step h = 1/``steps_per_period``: in each
    step every non-adopter adopts with probability h·(p + q·F_k). An agent-level
    simulation that applies this hazard follows the recursion in expectation; it tends
    to :func:`bass_cumulative_adoption` as h → 0 (Euler's scheme, error O(h)). With
    yearly p and q and a monthly simulation, use ``steps_per_period=12``.

    Parameters
    ----------
    innovation_per_period
        p > 0, per period.
    imitation_per_period
        q ≥ 0, per period; h·(p + q) ≤ 1 so that the step probability stays ≤ 1.
    steps
        Number of steps, ≥ 0.
    steps_per_period
        Steps per period of p and q, ≥ 1.
    initial_adopted_share
        F_0 in [0, 1].

    Returns
    -------
    Array of shape ``broadcast(p, q, F_0).shape + (steps + 1,)``: F_0, F_1, …, F_steps.
    """
    p, q = _bass_rates(innovation_per_period, imitation_per_period)
    n_steps = int(_whole("steps", steps, low=0))
    per = _whole("steps_per_period", steps_per_period, low=1)
    f0 = _checked("initial_adopted_share", initial_adopted_share, low=0.0, high=1.0)
    h = 1.0 / per
    step_hazard = h * (p + q)
    if np.any(step_hazard > 1.0):
        bad = np.broadcast_to(step_hazard, np.broadcast_shapes(p.shape, q.shape))[step_hazard > 1.0].flat[0]
        raise InputError(
            f"steps_per_period must be >= p + q (a step's adoption probability is <= 1), got (p + q)/steps = {bad:g}"
        )
    f = np.broadcast_to(f0, np.broadcast_shapes(p.shape, q.shape, f0.shape)).astype(np.float64)
    path = np.empty((*f.shape, n_steps + 1))
    path[..., 0] = f
    for k in range(n_steps):
        f = f + h * (p + q * f) * (1.0 - f)
        path[..., k + 1] = f
    return path
