"""Scenarios with the model's feedbacks switched off, for the simulator's known-answer tests."""

import pytest

from tenure.scenario import load_scenario

QUIET_CHURN = {
    "satisfaction": 0.0, "trust": 0.0, "enthusiasm": 0.0, "stage": [0.0, 0.0, 0.0, 0.0],
    "incident": 0.0, "trust_protection": 0.0, "reference_trust": 0.5, "reference_enthusiasm": 0.3,
}
NO_ACQUISITION = {"budget": 0.0, "organic_rate": 0.0, "referral_rate": 0.0, "detractor_reach": 0.0}


def quiet_scenario(customers, periods, seed=7, segments=None, acquisition=None, market=None, **sections):
    """Churn driven only by each customer's base propensity; no acquisition unless asked."""
    seg = {"name": "only", "share": 1.0, "value_weight": 0.0, "switching_barrier": 0.0}
    over = {
        "run": {"customers": customers, "periods": periods, "seed": seed, "initial_tenure": "new"},
        "market": {"size": max(customers, 1) * 10, "competitor_pull": 0.0, **(market or {})},
        "churn": QUIET_CHURN,
        "levers": {"loyalty_barrier_max": 0.0},
        "acquisition": {**NO_ACQUISITION, **(acquisition or {})},
        "segments": [{**seg, **s} for s in (segments or [{}])],
        **sections,
    }
    return load_scenario(None, over)


@pytest.fixture
def quiet():
    return quiet_scenario
