"""The small public Python API: load a scenario, run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenure.scenario import Scenario
from tenure.scenario import load_scenario as _load


def load_scenario(spec: str | Path | None = None, **overrides: dict[str, Any]) -> Scenario:
    """Load a built-in scenario by name, or a TOML file, with optional section overrides.

    Examples
    --------
    >>> sc = load_scenario("default", run={"customers": 10_000, "periods": 12})
    >>> sc["run"]["customers"]
    10000
    """
    return _load(spec, overrides or None)


def simulate(
    scenario: Scenario | str | Path | None = None,
    *,
    customers: int | None = None,
    periods: int | None = None,
    seed: int | None = None,
    panel_sample: float = 0.0,
    track_customers: bool | None = None,
    shards: int = 1,
    budgets: dict[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Simulate a customer population and return a :class:`~tenure.engine.simulator.SimulationResult`.

    Parameters
    ----------
    scenario
        A :class:`Scenario`, a built-in name, a TOML path, or ``None`` for the default market.
    customers, periods, seed
        Override the scenario's initial base, months simulated and seed.
    panel_sample
        Share of customers whose every active month goes into ``result.panel``.
    track_customers
        Keep the per-customer summary (``None``: when the base is at most 2 million).
    shards
        Logical shards of the population; results are identical for any value.
    budgets
        Acquisition and retention budgets (currency per period) replacing the scenario's.
    progress
        Called as ``progress(done, total)`` after each period.

    Examples
    --------
    >>> r = simulate(customers=5_000, periods=6, seed=1)
    >>> r.periods.height
    6
    """
    from tenure.engine.simulator import Simulator

    over: dict[str, Any] = {}
    run = {k: v for k, v in (("customers", customers), ("periods", periods), ("seed", seed)) if v is not None}
    if run:
        over["run"] = run
    if isinstance(scenario, Scenario):
        sc = scenario.with_overrides(over) if over else scenario
    else:
        sc = _load(scenario, over or None)
    return Simulator(
        sc, shards=shards, panel_fraction=panel_sample, track_customers=track_customers, budgets=budgets
    ).run(progress=progress)
