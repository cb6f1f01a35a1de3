"""A simulated stream of contact feedback events, in the format `tenure alarm` reads (docs/operations.md).

Derived from what the engine already produces: every surveyed row of the panel sample (a customer
answering the survey in month t) becomes one feedback event, carrying that answer's NPS (0–10) and
satisfaction item (1–5). Four keyed draws of the engine's counter-based generator
(:data:`~tenure.engine.rng.PURPOSE_FEEDBACK`, counter (customer, t)) give the touchpoint (by the
shares of :class:`FeedbackSpec`), the time within the month, the rounding of a touchpoint change
and the complaint flag, so the stream is a pure function of the seed and the panel, whatever the
number of threads or shards. The truth a detector is tested against:

- a market-wide change is any scenario shock (``[[shocks]]``: quality, incidents), which moves the
  answers themselves through the model (docs/model.md §6);
- a touchpoint's change (:attr:`FeedbackSpec.change`): from month k on, the NPS answers of events
  at that touchpoint move by a number of points (satisfaction by 0.4 of it, the ratio of the two
  scales' widths), rounded stochastically and clipped to the scales.

Complaints come from the engine's own incidents: :func:`engine_incidents` recomputes, for each panel
row, the kernel's incident draw (word 1 of ``PURPOSE_STEP_A`` at counter (customer, month), against the
segment's incident probability times the month's shock multiplier), so a row's ``incident`` column is
exactly whether that customer had a bad experience in the simulated month. A customer with an incident
complains with probability ``complaint_rate`` (the sources: about half of the customers with a problem
tell front-line staff); a customer without one never does. Months are 30 days from :data:`EPOCH`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from tenure.engine.rng import PURPOSE_FEEDBACK, PURPOSE_STEP_A, philox_block, seed_key
from tenure.engine.simulator import incident_multiplier

from tenure.errors import InputError
from tenure.operations_format import FEEDBACK_SCALES
from tenure.scenario import Scenario

#: The start of month 0 of a simulated stream.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: Length of a simulated month.
MONTH = dt.timedelta(days=30)


@dataclass(frozen=True)
class FeedbackSpec:
    """Touchpoints with their shares of contacts, an optional known change, and the complaint rate.

    ``complaint_rate`` is the probability that a customer with an incident that month complains.

    ``change`` is ``(touchpoint, first month, NPS points)``, e.g. ``("call_centre", 12, -3.0)``.
    """

    touchpoints: tuple[str, ...] = ("call_centre", "shop", "web")
    shares: tuple[float, ...] = (0.4, 0.35, 0.25)
    change: tuple[str, int, float] | None = None
    complaint_rate: float = 0.5

    def __post_init__(self) -> None:
        if len(self.touchpoints) != len(self.shares) or not self.touchpoints:
            raise InputError("feedback: one share per touchpoint")
        if any(s < 0 for s in self.shares) or not np.isclose(sum(self.shares), 1.0):
            raise InputError(f"feedback: touchpoint shares must be non-negative and sum to 1, got {self.shares}")
        if self.change is not None and self.change[0] not in self.touchpoints:
            raise InputError(f"--feedback-change: unknown touchpoint {self.change[0]!r}; known: "
                             f"{', '.join(self.touchpoints)}")
        if not 0.0 <= self.complaint_rate <= 1.0:
            raise InputError(f"feedback: complaint rate must be in [0, 1], got {self.complaint_rate}")


def parse_change(text: str) -> tuple[str, int, float]:
    """``TOUCHPOINT:MONTH:POINTS`` (e.g. ``call_centre:12:-3``) as a change of :class:`FeedbackSpec`."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        touchpoint, month, points = parts[0], int(parts[1]), float(parts[2])
    except ValueError:
        raise InputError(f"--feedback-change: expected TOUCHPOINT:MONTH:POINTS such as call_centre:12:-3, "
                         f"got {text!r}") from None
    if month < 0 or not -10.0 <= points <= 10.0:
        raise InputError(f"--feedback-change: month must be 0 or more and points within ±10, got {text!r}")
    return touchpoint, month, points


def _words(ids: np.ndarray, period: np.ndarray, purpose: int, seed: int) -> np.ndarray:
    """The engine's four Philox words of each (customer, month) for ``purpose``, as uniforms in (0, 1)."""
    counters = np.column_stack([ids & np.uint64(0xFFFFFFFF), ids >> np.uint64(32), period,
                                np.full(ids.size, purpose)]).astype(np.uint32)
    k0, k1 = seed_key(seed)
    return (philox_block(counters, k0, k1).astype(np.float64) + 0.5) * 2.0**-32  # rng.to_unit, exactly


def engine_incidents(panel: pl.DataFrame, scenario: Scenario, seed: int) -> np.ndarray:
    """Whether the customer of each panel row had an incident in the row's month of the engine run.

    The kernel's own draw made again: word 1 of ``PURPOSE_STEP_A`` at counter (customer, month) below
    the segment's incident probability times the month's shock multiplier (engine/kernels.py, step 1),
    in the same floating-point operations, so the answer is the run's, not a second draw.
    """
    ids = panel["customer_id"].to_numpy().astype(np.uint64)
    period = panel["period"].to_numpy().astype(np.int64)
    names = [seg["name"] for seg in scenario["segments"]]
    seg = panel["segment"].cast(pl.Enum(names)).to_physical().to_numpy()
    inc_p = np.array([s["incident_probability"] for s in scenario["segments"]])
    months = np.unique(period)
    mult = np.array([incident_multiplier(scenario, int(t)) for t in months])
    c_inc = inc_p[seg] * mult[np.searchsorted(months, period)]
    return _words(ids, period, PURPOSE_STEP_A, seed)[:, 1] < c_inc


def feedback_events(panel: pl.DataFrame, seed: int, scenario: Scenario,
                    spec: FeedbackSpec | None = None) -> pl.DataFrame:
    """The feedback events of a panel sample (``SimulationResult.panel``) of a run of ``scenario``, in time order.

    Columns: customer_id, timestamp (UTC), touchpoint, nps, satisfaction, complaint, segment, and for
    tests against the known truth ``period`` (the simulated month) and ``incident`` (the engine's).
    """
    spec = spec or FeedbackSpec()
    rows = panel.filter(pl.col("nps").is_not_null())
    ids = rows["customer_id"].to_numpy().astype(np.uint64)
    period = rows["period"].to_numpy().astype(np.int64)
    u = _words(ids, period, PURPOSE_FEEDBACK, seed)
    incident = engine_incidents(rows, scenario, seed)
    tp = np.minimum(np.searchsorted(np.cumsum(spec.shares), u[:, 0], side="right"), len(spec.touchpoints) - 1)
    nps = rows["nps"].to_numpy().astype(np.float64)
    sat = rows["satisfaction"].to_numpy().astype(np.float64)
    if spec.change is not None:
        where, month, points = spec.change
        hit = (tp == spec.touchpoints.index(where)) & (period >= month)
        nps = np.where(hit, np.floor(nps + points + u[:, 2]), nps)
        sat = np.where(hit & np.isfinite(sat), np.floor(sat + 0.4 * points + u[:, 2]), sat)
    nps = np.clip(nps, *FEEDBACK_SCALES["nps"])
    sat = np.clip(sat, *FEEDBACK_SCALES["satisfaction"])
    complaint = incident & (u[:, 3] < spec.complaint_rate)
    offset_us = ((period + u[:, 1]) * (MONTH / dt.timedelta(microseconds=1))).astype(np.int64)
    epoch_us = int(EPOCH.timestamp() * 1_000_000)
    out = pl.DataFrame({
        "customer_id": rows["customer_id"],
        "timestamp": pl.Series(epoch_us + offset_us).cast(pl.Datetime("us", "UTC")),
        "touchpoint": pl.Series(np.asarray(spec.touchpoints)[tp]),
        "nps": pl.Series(nps).cast(pl.Int8),
        "satisfaction": pl.Series(sat).fill_nan(None).cast(pl.Int8),
        "complaint": complaint,
        "segment": rows["segment"],
        "period": rows["period"],
        "incident": incident,
    })
    return out.sort(["timestamp", "customer_id"])
