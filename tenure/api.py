"""The small public Python API, the twin of the CLI: the same verbs, options and defaults.

``tenure.simulate``, ``tenure.compare`` and ``tenure.decide`` take a market (a built-in
name, a scenario file or a :class:`~tenure.scenario.Scenario`) and the CLI's run options:
``customers`` (``-n``: the same market with N customers, budgets and market size scaled
with it), ``periods`` (``-t``) and ``seed`` (``-s``, by default the market's ``run.seed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tenure.errors import InputError
from tenure.scenario import Scenario
from tenure.scenario import load_scenario as _load

MarketSpec = Scenario | str | Path | None

#: The sweep sizes of ``tenure compare`` and of ``tenure decide`` (which runs every allocation in
#: every calibrated market, hence a coarser grid and one seed per market).
COMPARE_STEPS, COMPARE_SEEDS = 7, 3
DECIDE_STEPS, DECIDE_SEEDS = 5, 1


def load_scenario(
    spec: MarketSpec = None,
    *,
    customers: int | None = None,
    periods: int | None = None,
    seed: int | None = None,
    **overrides: dict[str, Any],
) -> Scenario:
    """Load a market with the CLI's run options, after optional section overrides.

    Parameters
    ----------
    spec
        A built-in scenario name, a TOML path, a :class:`Scenario`, or ``None`` for the default market.
    customers
        The same market with this many initial customers (:meth:`Scenario.scaled`: the market
        size and every budget scale with it, so per-customer economics are unchanged).
    periods, seed
        Months simulated and the seed, replacing ``run.periods`` and ``run.seed``.
    overrides
        Sections of scenario keys applied first, e.g. ``churn={"trust": -2.0}``.

    Each value is checked by the scenario schema; a bad one raises :class:`~tenure.errors.InputError`
    naming the option and the key.

    Examples
    --------
    >>> sc = load_scenario("default", customers=10_000, periods=12)
    >>> sc["run"]["customers"], sc["market"]["size"], sc["acquisition"]["budget"]
    (10000, 200000, 15000.0)
    """
    if isinstance(spec, Scenario):
        sc = spec.with_overrides(overrides) if overrides else spec
    else:
        sc = _load(spec, overrides or None)
    if customers is not None:
        sc = sc.scaled(customers, "--customers")
    for flag, key, value in (("--periods", "periods", periods), ("--seed", "seed", seed)):
        if value is not None:
            sc = sc.with_overrides({"run": {key: value}}, flag)
    return sc


def simulate(
    scenario: MarketSpec = None,
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
        As ``tenure simulate -n/-t/-s``: the same market with N customers (market size and
        budgets scaled with it), months simulated, seed; see :func:`load_scenario`.
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

    sc = load_scenario(scenario, customers=customers, periods=periods, seed=seed)
    return Simulator(
        sc, shards=shards, panel_fraction=panel_sample, track_customers=track_customers, budgets=budgets
    ).run(progress=progress)


def _sweep_options(levers: str | Sequence[str] | None, mix: str | dict[str, float] | None
                   ) -> tuple[tuple[str, ...], dict[str, float] | None]:
    """The levers to sweep and the current mix, from the CLI's text or Python values."""
    from tenure.simulations.compare import parse_levers, parse_mix

    lever_list = parse_levers(levers if levers is None or isinstance(levers, str) else ",".join(levers))
    if isinstance(mix, str):
        return lever_list, parse_mix(mix)
    return lever_list, dict(mix) if mix else None


def compare(
    scenario: MarketSpec = None,
    *,
    customers: int | None = None,
    periods: int | None = None,
    seed: int | None = None,
    budget: float | None = None,
    levers: str | Sequence[str] | None = None,
    mix: str | dict[str, float] | None = None,
    acquisition_steps: int = COMPARE_STEPS,
    seeds: int = COMPARE_SEEDS,
    closed_form: bool = False,
    cluster: Any = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Split a budget between acquisition and retention on the simulator: ``tenure compare``.

    Returns a :class:`~tenure.simulations.compare.CompareResult` (runs, points, best, current,
    marginal analysis, closed form). ``customers``, ``periods`` and ``seed`` are as in
    :func:`simulate`; ``budget`` is the total per period (default: the market's acquisition plus
    retention budgets, after scaling); ``levers`` and ``mix`` take the CLI's text
    (``"service,loyalty"``, ``"service=0.5,loyalty=0.5"``) or a sequence and a dict;
    ``cluster`` is ``"local:N"``, ``"tcp://HOST:PORT"`` or a Dask client.

    Examples
    --------
    >>> r = compare(customers=2_000, periods=6, acquisition_steps=2, seeds=1, levers="service")
    >>> r.best["customer_equity"] == r.points["customer_equity"].max()
    True
    """
    from tenure.simulations.compare import compare as _compare

    sc = load_scenario(scenario, customers=customers, periods=periods, seed=seed)
    lever_list, base_mix = _sweep_options(levers, mix)
    return _compare(sc, budget, lever_list, base_mix, acquisition_steps, seeds, closed_form, progress=progress,
                    cluster=cluster)


def decide(
    market: str | Path,
    *,
    customers: int | None = None,
    periods: int | None = None,
    seed: int | None = None,
    budget: float | None = None,
    levers: str | Sequence[str] | None = None,
    mix: str | dict[str, float] | None = None,
    acquisition_steps: int = DECIDE_STEPS,
    seeds: int = DECIDE_SEEDS,
    max_markets: int | None = None,
    cluster: Any = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Choose a budget split under calibration uncertainty: ``tenure decide``.

    ``market`` is a market file written by ``tenure calibrate``, with its calibrated draws
    (``MARKET.draws.csv``) beside it. Every allocation runs in each calibrated market (at most
    the first ``max_markets``) on common random numbers; the result
    (:class:`~tenure.simulations.compare.UncertaintyResult`) gives per allocation the band of
    customer equity, P(beats the current split) and the expected loss. ``customers`` simulates
    each market with N customers (scaled as in :func:`simulate`) and reports equity at the
    market's own size; the other options are as in :func:`compare`.
    """
    from tenure.simulations.calibrate import load_markets
    from tenure.simulations.compare import compare_uncertainty

    if max_markets is not None and max_markets < 2:
        raise InputError(f"--max-markets: at least 2, got {max_markets}")
    _, markets, _ = load_markets(Path(market))
    markets = [load_scenario(sc, periods=periods, seed=seed) for sc in markets[:max_markets]]
    lever_list, base_mix = _sweep_options(levers, mix)
    t0 = time.perf_counter()
    result = compare_uncertainty(markets, budget, lever_list, base_mix, acquisition_steps, seeds, customers,
                                 progress=progress, cluster=cluster)
    result.settings["seconds"] = time.perf_counter() - t0
    result.settings["market_file"] = str(market)
    return result
