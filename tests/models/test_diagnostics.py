"""NumPy R-hat and bulk ESS against ArviZ's (the values ``summary.csv`` and the warnings reported before)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from tenure.models._diagnostics import ess_bulk, rhat


def _chains(shape, seed):
    """AR(1) chains (autocorrelation 0.6) with chain offsets, so that R-hat and ESS are far from their limits."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=shape)
    out = np.empty(shape)
    out[:, 0] = noise[:, 0]
    for t in range(1, shape[1]):
        out[:, t] = 0.6 * out[:, t - 1] + noise[:, t]
    return out + 0.3 * np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))


@pytest.mark.parametrize("shape", [(4, 1000), (2, 7), (3, 101, 2, 3), (1, 50)])
def test_rhat_and_bulk_ess_equal_arviz(shape):
    values = _chains(shape, seed=sum(shape))
    values[0, 3] = values[0, 4]  # a tie between draws: average ranks
    entries = values.reshape(shape[0], shape[1], -1)
    ours_rhat = np.array([rhat(entries[:, :, k]) for k in range(entries.shape[2])])
    ours_ess = np.array([ess_bulk(entries[:, :, k]) for k in range(entries.shape[2])])
    theirs_rhat = np.ravel(az.rhat(az.convert_to_dataset(values))["x"].values)
    theirs_ess = np.ravel(az.ess(az.convert_to_dataset(values), method="bulk")["x"].values)
    if shape[0] == 1:  # ArviZ gives NaN below 2 chains; the summary skips them
        assert np.isnan(ours_rhat).all() and np.isnan(theirs_rhat).all()
    else:
        np.testing.assert_allclose(ours_rhat, theirs_rhat, rtol=1e-10, atol=0)
    np.testing.assert_allclose(ours_ess, theirs_ess, rtol=1e-10, atol=0)


def test_a_constant_parameter_and_a_constant_chain():
    constant = np.full((4, 100), 2.5)
    assert ess_bulk(constant) == az.ess(constant, method="bulk") == 400
    assert np.isnan(rhat(constant)) == np.isnan(az.rhat(constant))
    stuck = _chains((4, 100), seed=3)
    stuck[1] = stuck[1, 0]  # one chain that never moved
    assert rhat(stuck) == pytest.approx(float(az.rhat(stuck)), rel=1e-10)
    assert ess_bulk(stuck) == pytest.approx(float(az.ess(stuck, method="bulk")), rel=1e-10)
    assert rhat(stuck) > 1.1
