"""Alarms on contact feedback: negative experiences of single customers, and drops of a group's scores.

**Individual alarms.** An event is a negative experience when it carries a complaint (where the
rules count complaints) or a score at or below its touchpoint's threshold (rules TOML,
docs/operations.md). With a score table from ``tenure score``, each alarm carries the customer's
value at risk and call rank, so the list can be worked from the top.

**Aggregate alarms.** Every group (each touchpoint, and each segment where events carry one) is
watched on three metrics of its responses: the detractor share (NPS answer ≤
:data:`~tenure.metrics.DETRACTOR_MAX`), the NPS (Reichheld 2003) and the mean satisfaction. At each
response the detector compares the group's last ``window`` responses with the ``baseline``
responses before them, each summarised by its posterior: the detractor share by Beta(1 + d, 1 + n − d)
(a Beta-binomial model with a uniform prior), the NPS by the difference of the promoter and
detractor shares under Dirichlet(1 + p, 1 + passives, 1 + d), the mean satisfaction by a normal
posterior with the sample variance. With the two posterior means and variances, the probability
that the metric is worse now than in the baseline by at least ``min_change`` is taken as
Φ((worse − min_change) / sqrt(v_now + v_baseline)) (the normal approximation to the difference of
two independent posteriors). An alarm fires when it reaches ``alarm_probability``; the detector is
then disarmed until the probability falls below ``rearm_probability``, so one drop gives one alarm.
Windows count responses, not time: the test runs at every response, the same in a batch and in a
stream, and the detector is a pure function of the order of the events. Its false-alarm rate and
detection delay, measured by simulation, are in docs/operations.md.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import polars as pl
from tenure.models.panel import _as_bool, _as_integer, _first_bad, _in_range

from tenure.checks import in_range, read_text, whole
from tenure.errors import InputError
from tenure.io import read_table
from tenure.metrics import DETRACTOR_MAX, PROMOTER_MIN
from tenure.operations_format import (
    FEEDBACK_COLUMNS,
    FEEDBACK_SCALES,
    FEEDBACK_SCORE_COLUMNS,
)

#: The aggregate metrics, in the order of the detector's metric codes.
METRICS = ("detractor_share", "nps", "mean_satisfaction")
#: The score column each metric reads.
METRIC_SCORE = {"detractor_share": "nps", "nps": "nps", "mean_satisfaction": "satisfaction"}
#: What the groups are formed by.
GROUP_BY = ("touchpoint", "segment")


# -- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """Thresholds of negative experiences per touchpoint, and the aggregate detector's settings.

    ``thresholds[touchpoint][score]``: an answer at or below it is negative; ``default`` applies to
    touchpoints the rules do not name (``None``: such a touchpoint is unknown). ``complaint``: a
    complaint flag is a negative experience at every touchpoint.
    """

    thresholds: dict[str, dict[str, float]]
    default: dict[str, float] | None = None
    complaint: bool = True
    window: int = 200
    baseline: int = 2000
    alarm_probability: float = 0.999
    rearm_probability: float = 0.5
    min_change: dict[str, float] = field(default_factory=lambda: {
        "detractor_share": 0.05, "nps": 0.05, "mean_satisfaction": 0.2})

    def threshold(self, touchpoint: str) -> dict[str, float] | None:
        """The thresholds of ``touchpoint`` (the default's for one not named; ``None`` if there is none)."""
        return self.thresholds.get(touchpoint, self.default)


_THRESHOLD_KEYS = {f"{s}_max": s for s in FEEDBACK_SCORE_COLUMNS}
_AGGREGATE_KEYS = ("window", "baseline", "alarm_probability", "rearm_probability",
                   *(f"min_change_{m}" for m in METRICS))


def read_rules(path: str | os.PathLike[str]) -> Rules:
    """Read a rules TOML file (docs/operations.md; an example in docs/examples/alarm-rules.toml).

    Unknown keys, thresholds off their score's scale and settings out of range are an
    :class:`~tenure.errors.InputError` naming the file and the key.
    """
    where = str(path)
    text = read_text(path, where)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None
    return rules_from_dict(raw, where)


def rules_from_dict(raw: Mapping[str, Any], where: str = "rules") -> Rules:
    """Rules from the parsed TOML (see :func:`read_rules`)."""
    known = {"complaint", "touchpoints", "default", "aggregate"}
    for key in raw:
        if key not in known:
            raise InputError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
    complaint = raw.get("complaint", True)
    if not isinstance(complaint, bool):
        raise InputError(f"{where}: complaint: expected true or false, got {complaint!r}")
    tps = raw.get("touchpoints", {})
    if not isinstance(tps, dict) or not tps:
        raise InputError(f"{where}: touchpoints: expected at least one [touchpoints.NAME] table")
    thresholds = {str(name): _thresholds(spec, f"{where}: touchpoints.{name}") for name, spec in tps.items()}
    default = _thresholds(raw["default"], f"{where}: default") if "default" in raw else None
    agg = raw.get("aggregate", {})
    if not isinstance(agg, dict):
        raise InputError(f"{where}: aggregate: expected a table")
    for key in agg:
        if key not in _AGGREGATE_KEYS:
            raise InputError(f"{where}: aggregate.{key}: unknown key; known: {', '.join(_AGGREGATE_KEYS)}")
    base = Rules(thresholds={})
    window = whole(agg.get("window", base.window), f"{where}: aggregate.window", 5, 10**6)
    baseline = whole(agg.get("baseline", base.baseline), f"{where}: aggregate.baseline", window, 10**7)
    p_alarm = in_range(agg.get("alarm_probability", base.alarm_probability), f"{where}: aggregate.alarm_probability",
                       0.5, 1.0, open_high=True)
    p_rearm = in_range(agg.get("rearm_probability", base.rearm_probability), f"{where}: aggregate.rearm_probability",
                       0.0, p_alarm, open_high=True)
    min_change = {m: in_range(agg.get(f"min_change_{m}", base.min_change[m]), f"{where}: aggregate.min_change_{m}",
                              0.0, 10.0) for m in METRICS}
    return Rules(thresholds=thresholds, default=default, complaint=complaint, window=window, baseline=baseline,
                 alarm_probability=p_alarm, rearm_probability=p_rearm, min_change=min_change)


def _thresholds(spec: Any, where: str) -> dict[str, float]:
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a table of thresholds ({', '.join(_THRESHOLD_KEYS)})")
    out = {}
    for key, value in spec.items():
        if key not in _THRESHOLD_KEYS:
            raise InputError(f"{where}.{key}: unknown key; known: {', '.join(_THRESHOLD_KEYS)}")
        score = _THRESHOLD_KEYS[key]
        out[score] = in_range(value, f"{where}.{key}", *FEEDBACK_SCALES[score])
    return out


def check_touchpoints(rules: Rules, touchpoints: Sequence[str], where: str) -> list[str]:
    """Touchpoints of the events that the rules do not know; an error when there is no default to apply.

    Returns the unknown ones that the default covers (for a warning).
    """
    unknown = sorted(set(touchpoints) - set(rules.thresholds))
    if unknown and rules.default is None:
        raise InputError(f"{where}: touchpoint {unknown[0]!r} is not in the rules (known: "
                         f"{', '.join(sorted(rules.thresholds))}); add it or a [default] table")
    return unknown


# -- feedback events -------------------------------------------------------------------------


def read_feedback(source: str | os.PathLike[str] | pl.DataFrame, *, where: str | None = None,
                  row_offset: int = 0) -> pl.DataFrame:
    """Read and validate feedback events (docs/operations.md) from CSV, Parquet or a frame.

    Returns ``customer_id``, ``timestamp`` (UTC, microseconds), ``touchpoint``, the score columns
    present (``nps`` and ``satisfaction`` as Int8, null when not asked), ``complaint`` (Boolean,
    false when absent) and ``segment`` where given, in the order given. Errors name the column and
    the first offending row (counted from ``row_offset`` + 1).
    """
    where = where or ("feedback" if isinstance(source, pl.DataFrame) else str(source))
    df = source if isinstance(source, pl.DataFrame) else read_table(Path(source))
    missing = [c for c in FEEDBACK_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{where}: missing required column {missing[0]!r} (required: {', '.join(FEEDBACK_COLUMNS)} "
                         f"and at least one of {', '.join(FEEDBACK_SCORE_COLUMNS)})")
    scores = [c for c in FEEDBACK_SCORE_COLUMNS if c in df.columns]
    if not scores:
        raise InputError(f"{where}: no score column; expected at least one of {', '.join(FEEDBACK_SCORE_COLUMNS)}")
    df = df.with_row_index("_row", offset=row_offset + 1)
    cid = df["customer_id"]
    if not (cid.dtype.is_integer() or cid.dtype == pl.String):
        raise InputError(f"{where}: column 'customer_id': expected integers or text, found type {cid.dtype}")
    if cid.null_count():
        row, _ = _first_bad(df, "customer_id", cid.is_null())
        raise InputError(f"{where}: column 'customer_id': missing value at row {row}")
    cols: list[pl.Series] = [cid, _timestamps(df, where)]
    tp = df["touchpoint"]
    if tp.dtype != pl.String:
        raise InputError(f"{where}: column 'touchpoint': expected text labels, found type {tp.dtype}")
    if tp.null_count():
        row, _ = _first_bad(df, "touchpoint", tp.is_null())
        raise InputError(f"{where}: column 'touchpoint': missing value at row {row}")
    cols.append(tp)
    for c in FEEDBACK_SCORE_COLUMNS:
        if c in df.columns:
            v = _as_integer(df, c, where, nullable=True)
            lo, hi = FEEDBACK_SCALES[c]
            _in_range(df, v, c, where, lo, hi, what=f"off the {lo}–{hi} scale")
            cols.append(v.cast(pl.Int8))
        else:
            cols.append(pl.Series(c, [None] * df.height, dtype=pl.Int8))
    if "complaint" in df.columns:
        filled = df.with_columns(pl.col("complaint").fill_null(False)) if df["complaint"].dtype != pl.String else df
        cols.append(_as_bool(filled, "complaint", where))
    else:
        cols.append(pl.Series("complaint", [False] * df.height, dtype=pl.Boolean))
    if "segment" in df.columns:
        cols.append(df["segment"].cast(pl.String).fill_null("unknown").alias("segment"))
    return pl.DataFrame(cols)


def _timestamps(df: pl.DataFrame, where: str) -> pl.Series:
    s = df["timestamp"]
    if s.dtype == pl.String:
        out = s.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        bad = s.is_not_null() & out.is_null()
        if bad.any():
            row, value = _first_bad(df, "timestamp", bad)
            raise InputError(f"{where}: column 'timestamp': expected an ISO 8601 date and time, found {value!r} "
                             f"at row {row}")
    elif isinstance(s.dtype, pl.Datetime):
        out = s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None else s.dt.convert_time_zone("UTC")
        out = out.dt.cast_time_unit("us")
    else:
        raise InputError(f"{where}: column 'timestamp': expected date-times (ISO 8601 text or a datetime column), "
                         f"found type {s.dtype}")
    if out.null_count():
        row, _ = _first_bad(df, "timestamp", out.is_null())
        raise InputError(f"{where}: column 'timestamp': missing value at row {row}")
    return out.alias("timestamp")


# -- individual alarms ----------------------------------------------------------------------


def negative_experiences(events: pl.DataFrame, rules: Rules) -> pl.DataFrame:
    """The events that are negative experiences under ``rules``, with the reason.

    Adds ``event`` (the event's position in ``events``) and ``reason``: what was negative, ``complaint``,
    ``nps`` or ``satisfaction`` (a score at or below its threshold), several joined by ``"; "``. A
    touchpoint without thresholds (unknown, no default) counts complaints only.
    """
    tps = sorted(events["touchpoint"].unique().to_list())
    # one pass over the touchpoint labels gives a code; thresholds and hits are then NumPy lookups and masks
    code = events["touchpoint"].replace_strict(tps, np.arange(len(tps)), return_dtype=pl.Int64).to_numpy()
    hits: dict[str, np.ndarray] = {}
    if rules.complaint:
        hits["complaint"] = events["complaint"].fill_null(False).to_numpy()
    for score in FEEDBACK_SCORE_COLUMNS:
        limits = np.array([np.nan if (v := (rules.threshold(tp) or {}).get(score)) is None else v for tp in tps])
        value = events[score].cast(pl.Float64).fill_null(np.inf).to_numpy()
        hits[score] = value <= limits[code]  # a missing score (inf) or no threshold (NaN) is never a hit
    if not hits:
        return events.with_row_index("event").clear().with_columns(reason=pl.lit("", dtype=pl.String))
    combo = np.zeros(events.height, dtype=np.int64)
    for bit, hit in enumerate(hits.values()):
        combo |= hit.astype(np.int64) << bit
    rows = np.flatnonzero(combo)
    labels = ["; ".join(k for bit, k in enumerate(hits) if c >> bit & 1) for c in range(1 << len(hits))]
    reason = pl.Series("reason", combo[rows]).replace_strict(np.arange(len(labels)), labels, return_dtype=pl.String)
    return events.with_row_index("event")[rows].with_columns(reason)


def prioritise(alarms: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """Individual alarms with the customer's value at risk and call rank from a score table, highest first.

    Without scores (or for customers the table lacks) the value at risk is null; those come last,
    in time order.
    """
    if scores is None:
        return alarms.with_columns(value_at_risk=pl.lit(None, dtype=pl.Float64),
                                   call_rank=pl.lit(None, dtype=pl.Int64))
    keep = scores.select("customer_id", "value_at_risk", "call_rank")
    if keep["customer_id"].dtype != alarms["customer_id"].dtype:
        keep = keep.with_columns(pl.col("customer_id").cast(alarms["customer_id"].dtype, strict=False))
    out = alarms.join(keep, on="customer_id", how="left", maintain_order="left")
    return out.sort(["value_at_risk", "event"], descending=[True, False], nulls_last=True)


# -- the aggregate detector ------------------------------------------------------------------


def _z_band(p: float, side: int) -> float:
    """The edge of a band around Φ⁻¹(p) outside which Φ(z) >= p is decided by z alone (``side`` −1: below it,
    +1: above it). The band is wider than the rounding of ``erfc`` and ``ndtri`` (an absolute error near
    1e-16 in Φ is one of 1e-16/φ(z) in z) and infinite where Φ⁻¹(p) is beyond about ±8, where Φ rounds."""
    from scipy.special import ndtri

    z = float(ndtri(p))
    density = math.exp(-z * z / 2) / math.sqrt(2 * math.pi) if math.isfinite(z) else 0.0
    slack = 1e-9 + 1e-13 / density if density > 1e-12 else math.inf
    return z + side * slack


@numba.njit(cache=True)
def _normal_cdf(z):  # pragma: no cover - compiled
    """Φ(z)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@numba.njit(cache=True)
def _worse_probability(kind, s_now, q_now, n_now, s_base, q_base, n_base, min_change):  # pragma: no cover
    """P(metric worse now than in the baseline by at least ``min_change``), normal approximation."""
    return _normal_cdf(_worse_z(kind, s_now, q_now, n_now, s_base, q_base, n_base, min_change))


@numba.njit(cache=True)
def _worse_z(kind, s_now, q_now, n_now, s_base, q_base, n_base, min_change):  # pragma: no cover
    """The standardised drop of :func:`_worse_probability`: its probability is Φ of this."""
    if kind == 0:  # detractor share: Beta(1 + d, 1 + n − d)
        m_now = (1.0 + s_now) / (2.0 + n_now)
        m_base = (1.0 + s_base) / (2.0 + n_base)
        v = m_now * (1.0 - m_now) / (3.0 + n_now) + m_base * (1.0 - m_base) / (3.0 + n_base)
        worse = m_now - m_base
    elif kind == 1:  # NPS: Dirichlet(1 + p, 1 + passives, 1 + d); x in {−1, 0, 1}, so p = (s + q)/2, d = (q − s)/2
        p_now, d_now, a_now = 1.0 + (s_now + q_now) / 2.0, 1.0 + (q_now - s_now) / 2.0, 3.0 + n_now
        p_base, d_base, a_base = 1.0 + (s_base + q_base) / 2.0, 1.0 + (q_base - s_base) / 2.0, 3.0 + n_base
        v = ((p_now * (a_now - p_now) + d_now * (a_now - d_now) + 2.0 * p_now * d_now) / (a_now * a_now * (a_now + 1.0))
             + (p_base * (a_base - p_base) + d_base * (a_base - d_base) + 2.0 * p_base * d_base)
             / (a_base * a_base * (a_base + 1.0)))
        worse = (p_base - d_base) / a_base - (p_now - d_now) / a_now
    else:  # mean satisfaction: normal posterior of the mean with the sample variance (+1 pseudo-unit)
        m_now, m_base = s_now / n_now, s_base / n_base
        v = ((q_now - s_now * m_now + 1.0) / (n_now * (n_now - 1.0))
             + (q_base - s_base * m_base + 1.0) / (n_base * (n_base - 1.0)))
        worse = m_base - m_now
    return (worse - min_change) / math.sqrt(v)


@numba.njit(cache=True)
def _detect(stream, values, kinds, min_change, ring, count, sums, armed, window, baseline, p_alarm,
            p_rearm, z_alarm_below, z_rearm_above):  # pragma: no cover - compiled
    """Run the detector over responses in order; returns the positions that fired, their probabilities and
    the window's and the baseline's mean value then.

    Per stream (group × metric): ``ring`` holds its last window + baseline values, ``count`` the
    responses seen, ``sums`` the window's and the baseline's Σx and Σx², ``armed`` whether it may fire.
    The state is updated in place, so a stream can be fed in blocks. Below ``z_alarm_below`` the
    probability is surely under ``p_alarm``, above ``z_rearm_above`` surely not under ``p_rearm``
    (:func:`_z_band`).
    """
    size = window + baseline
    fired = np.empty(values.size, dtype=np.int64)
    prob = np.empty(values.size)
    levels = np.empty((values.size, 2))
    n_fired = 0
    for i in range(values.size):
        s = stream[i]
        x = values[i]
        c = count[s]
        if c >= window:  # the value leaving the window joins the baseline
            y = ring[s, (c - window) % size]
            sums[s, 0] -= y
            sums[s, 1] -= y * y
            sums[s, 2] += y
            sums[s, 3] += y * y
        if c >= size:  # the oldest value leaves the baseline
            y = ring[s, c % size]
            sums[s, 2] -= y
            sums[s, 3] -= y * y
        ring[s, c % size] = x
        sums[s, 0] += x
        sums[s, 1] += x * x
        count[s] = c + 1
        if c + 1 < size:
            continue
        z = _worse_z(kinds[s], sums[s, 0], sums[s, 1], float(window), sums[s, 2], sums[s, 3], float(baseline),
                     min_change[s])
        # P = Φ(z) is monotone in z: compare z with the thresholds' z, and evaluate Φ only near them (and to
        # report it), so that every decision is the one Φ(z) >= p would make, at a fraction of the cost
        if armed[s]:
            if z < z_alarm_below:
                continue
            p = _normal_cdf(z)
            fire = p >= p_alarm
        else:
            if z >= z_rearm_above:
                continue
            p = _normal_cdf(z)
            fire = False
        if fire:
            armed[s] = False
            fired[n_fired] = i
            prob[n_fired] = p
            levels[n_fired, 0] = sums[s, 0] / window
            levels[n_fired, 1] = sums[s, 2] / baseline
            n_fired += 1
        elif not armed[s] and p < p_rearm:
            armed[s] = True
    return fired[:n_fired], prob[:n_fired], levels[:n_fired]


class Detector:
    """The aggregate detector's state: one stream per (group, metric), fed responses in order.

    ``feed(events)`` returns the aggregate alarms raised by these events; the state carries over,
    so feeding a stream in blocks gives the alarms of feeding it at once. ``state()`` and
    :meth:`from_state` turn it into arrays and back (the ``--follow`` cursor persists it).
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.streams: dict[tuple[str, str, str], int] = {}
        size = rules.window + rules.baseline
        self._ring = np.zeros((0, size))
        self._count = np.zeros(0, dtype=np.int64)
        self._sums = np.zeros((0, 4))
        self._armed = np.zeros(0, dtype=np.bool_)
        self._kinds = np.zeros(0, dtype=np.int64)
        self._min_change = np.zeros(0)

    def _stream_ids(self, by: str, names: list[str], metric: str) -> np.ndarray:
        """Stream index of each label in ``names`` for ``metric``, adding streams for labels not seen before."""
        ids = []
        new = []
        for name in names:
            key = (by, str(name), metric)
            if key not in self.streams:
                self.streams[key] = len(self.streams)
                new.append(key)
            ids.append(self.streams[key])
        if new:
            k = len(new)
            self._ring = np.vstack([self._ring, np.zeros((k, self._ring.shape[1]))])
            self._count = np.r_[self._count, np.zeros(k, dtype=np.int64)]
            self._sums = np.vstack([self._sums, np.zeros((k, 4))])
            self._armed = np.r_[self._armed, np.ones(k, dtype=np.bool_)]
            self._kinds = np.r_[self._kinds, [METRICS.index(key[2]) for key in new]]
            self._min_change = np.r_[self._min_change, [self.rules.min_change[key[2]] for key in new]]
        return np.asarray(ids, dtype=np.int64)

    def feed(self, events: pl.DataFrame, first_event: int = 0) -> pl.DataFrame:
        """Aggregate alarms of ``events`` (validated, in arrival order); ``first_event``: the stream position
        of the first of them (alarm ids and ``event`` count from it)."""
        r = self.rules
        thresholds = (_z_band(r.alarm_probability, -1), _z_band(r.rearm_probability, +1))
        found = []
        for by in GROUP_BY:
            if by not in events.columns:
                continue
            names = events[by].unique(maintain_order=True)
            codes = events[by].replace_strict(names, np.arange(names.len()), return_dtype=pl.Int64).to_numpy()
            for metric in METRICS:
                score = events[METRIC_SCORE[metric]]
                have = score.is_not_null()
                if not have.any():
                    continue
                x = score.filter(have).cast(pl.Float64).to_numpy()
                if metric == "detractor_share":
                    x = (x <= DETRACTOR_MAX).astype(np.float64)
                elif metric == "nps":
                    x = np.where(x >= PROMOTER_MIN, 1.0, np.where(x <= DETRACTOR_MAX, -1.0, 0.0))
                pos = np.flatnonzero(have.to_numpy())
                stream = self._stream_ids(by, names.to_list(), metric)[codes[pos]]
                # streams are independent: each (grouping, metric) block runs on its own, in event order
                fired, prob, level = _detect(stream, x, self._kinds, self._min_change, self._ring, self._count,
                                             self._sums, self._armed, r.window, r.baseline, r.alarm_probability,
                                             r.rearm_probability, *thresholds)
                keys = list(self.streams)
                for i, p, (now, before) in zip(fired.tolist(), prob.tolist(), level.tolist(), strict=True):
                    _, label, _ = keys[stream[i]]
                    found.append({"event": first_event + int(pos[i]), "group_by": by, "group": label,
                                  "metric": metric, "probability": p, "current": now, "baseline": before})
        if not found:
            return _empty_aggregate()
        out = pl.DataFrame(found, schema=_AGGREGATE_SCHEMA).sort("event", maintain_order=True)
        return out.with_columns(timestamp=events["timestamp"].gather(out["event"] - first_event))

    def state(self) -> dict[str, np.ndarray]:
        """The state as arrays (for ``np.savez``)."""
        keys = np.array(["\x1f".join(k) for k in self.streams], dtype=object).astype(str)
        return {"keys": keys, "ring": self._ring, "count": self._count, "sums": self._sums, "armed": self._armed}

    @classmethod
    def from_state(cls, rules: Rules, state: Mapping[str, np.ndarray]) -> Detector:
        """A detector continuing from :meth:`state` (the same rules)."""
        det = cls(rules)
        keys = [tuple(str(k).split("\x1f")) for k in state["keys"].tolist()]
        if state["ring"].shape[1] != rules.window + rules.baseline:
            raise InputError("cursor: saved with other window or baseline sizes; remove it to start again")
        det.streams = {k: i for i, k in enumerate(keys)}  # type: ignore[misc]
        det._ring = np.array(state["ring"], dtype=float)
        det._count = np.array(state["count"], dtype=np.int64)
        det._sums = np.array(state["sums"], dtype=float)
        det._armed = np.array(state["armed"], dtype=np.bool_)
        det._kinds = np.array([METRICS.index(k[2]) for k in keys], dtype=np.int64)
        det._min_change = np.array([rules.min_change[k[2]] for k in keys], dtype=float)
        return det


#: Columns of the aggregate alarms: the event that raised it, the group, the metric, the probability of a
#: drop beyond the minimum change, and the window's and the baseline's level (the detractor share, the NPS
#: as a share in [−1, 1], the mean satisfaction).
_AGGREGATE_SCHEMA = {"event": pl.Int64, "group_by": pl.String, "group": pl.String, "metric": pl.String,
                     "probability": pl.Float64, "current": pl.Float64, "baseline": pl.Float64}


def _empty_aggregate() -> pl.DataFrame:
    return pl.DataFrame(schema={**_AGGREGATE_SCHEMA, "timestamp": pl.Datetime("us", "UTC")})


@dataclass(frozen=True)
class Alarms:
    """The alarms of a batch of events: ``individual`` (prioritised) and ``aggregate`` (in time order)."""

    individual: pl.DataFrame
    aggregate: pl.DataFrame
    warnings: list[str]


def alarms(events: pl.DataFrame, rules: Rules, scores: pl.DataFrame | None = None, *,
           where: str = "feedback") -> Alarms:
    """Individual and aggregate alarms of a batch of validated events (sorted by timestamp, stable)."""
    events = events.sort("timestamp", maintain_order=True)
    unknown = check_touchpoints(rules, events["touchpoint"].unique().to_list(), where)
    warnings = [f"touchpoints not in the rules, judged by [default]: {', '.join(unknown)}"] if unknown else []
    individual = prioritise(negative_experiences(events, rules), scores)
    aggregate = Detector(rules).feed(events)
    return Alarms(individual=individual, aggregate=aggregate, warnings=warnings)
