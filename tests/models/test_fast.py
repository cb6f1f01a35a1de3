"""The fast route (tenure.models._fast): each closed-form Numba density equals its PyMC model's, and fits use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.bgbb import BGBBModel
from tenure.models.bgnbd import BGNBDModel
from tenure.models.gamma_gamma import GammaGammaModel
from tenure.models.pnbd import ParetoNBDModel
from tenure.models.sbg import SBGModel

DATA = Path(__file__).resolve().parents[1] / "data"
# Fader & Hardie (2007), "How to project customer retention", survivors per 1000 in years 0-7.
REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


def cohorts() -> pl.DataFrame:
    return pl.DataFrame({"cohort": ["regular"] * 8 + ["high_end"] * 8, "period": list(range(8)) * 2,
                         "alive": REGULAR + HIGH_END})


def spend() -> pl.DataFrame:
    df = pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")
    return df.rename({"x": "frequency", "t_x": "recency", "zbar": "monetary_value"}).head(400)


def donations() -> pl.DataFrame:
    return pl.read_csv(DATA / "donations.csv")


def rfm() -> pl.DataFrame:
    return pl.read_csv(DATA / "cdnow_customers_summary.csv").head(400)


PROPER = {"dist": "Gamma", "alpha": 2.0, "beta": 1.5}


def weibull(alpha: float, beta: float) -> dict:
    return {"dist": "Weibull", "alpha": alpha, "beta": beta}


# pymc-marketing 0.19.2's default priors of its Pareto/NBD (clv/models/pareto_nbd.py, default_model_config; its
# BG/NBD's r and alpha too); the other models' cases add Weibull shapes below 1 and above 2 (q not 2).
PMM_PNBD = {"r": weibull(2.0, 1.0), "alpha": weibull(2.0, 10.0), "s": weibull(2.0, 1.0), "beta": weibull(2.0, 10.0)}
MODELS = {
    "sbg-pooled": lambda: SBGModel(cohorts()),
    "sbg-per-cohort": lambda: SBGModel(cohorts(), pooled=False,
                                       priors={"alpha": {"dist": "HalfNormal", "sigma": 2.0},
                                               "beta": {"dist": "LogNormal", "mu": 0.5, "sigma": 1.0}}),
    "gamma-gamma": lambda: GammaGammaModel(spend()),
    "gamma-gamma-proper": lambda: GammaGammaModel(spend(), priors={"p": PROPER, "q": {"dist": "Exponential",
                                                                                  "lam": 0.5}, "v": PROPER}),
    "bgbb": lambda: BGBBModel(donations()),
    "bgbb-proper": lambda: BGBBModel(donations(), priors={"alpha": PROPER, "delta": {"dist": "HalfNormal",
                                                                                     "sigma": 3.0}}),
    "bgbb-weibull": lambda: BGBBModel(donations(), priors={"alpha": weibull(0.7, 3.0), "beta": weibull(2.0, 1.0),
                                                           "gamma": weibull(1.5, 0.5), "delta": PROPER}),
    "bgnbd-weibull": lambda: BGNBDModel(rfm(), priors={"r": weibull(2.0, 1.0), "alpha": weibull(2.0, 10.0),
                                                       "a": weibull(0.7, 3.0), "b": weibull(3.0, 2.0)}),
    "pnbd-weibull": lambda: ParetoNBDModel(rfm(), priors=PMM_PNBD),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_density_and_gradient_equal_the_pymc_model(name):
    model = MODELS[name]()
    fast = model.fast_model()
    assert fast is not None
    pm_model = model.build()
    assert [v.name for v in pm_model.value_vars] == [f"{p}_log__" for p in fast.params]
    logp, dlogp = pm_model.compile_logp(), pm_model.compile_dlogp()
    sizes = [int(np.prod(pm_model.initial_point()[v.name].shape)) or 1 for v in pm_model.value_vars]
    splits = np.cumsum(sizes)[:-1]
    rng = np.random.default_rng(11)
    for theta in rng.normal(0.0, 1.0, (6, fast.n_dim)):
        point = {v.name: part.reshape(pm_model.initial_point()[v.name].shape)
                 for v, part in zip(pm_model.value_vars, np.split(theta, splits), strict=True)}
        value, grad = fast.logp(theta)
        assert value == pytest.approx(float(logp(point)), rel=1e-9)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-8, atol=1e-8 * max(1.0, abs(value)) * 1e-2)
        # and against central differences of the Numba density itself
        h = 1e-6
        numeric = [(fast.logp(theta + h * e)[0] - fast.logp(theta - h * e)[0]) / (2 * h) for e in np.eye(fast.n_dim)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * max(1.0, abs(value)) * 1e-2)


def test_fast_route_falls_back_where_it_cannot_express_the_model():
    assert SBGModel(cohorts(), priors={"alpha": {"dist": "HalfCauchy", "beta": 1.0}}).fast_model() is None
    records = pl.DataFrame({"periods": [1, 2, 3, 4] * 5, "churned": [1, 0] * 10, "trust": [1.0, 2.0, 3.0, 4.0] * 5})
    assert SBGModel(records, covariates=["trust"]).fast_model() is None
    assert GammaGammaModel(spend(), priors={"q": {"dist": "Gamma", "mu": 2.0, "sigma": 1.0}}).fast_model() is None
    inverse_gamma = {"dist": "InverseGamma", "alpha": 2.0, "beta": 1.0}
    assert BGBBModel(donations(), priors={"gamma": inverse_gamma}).fast_model() is None
    assert ParetoNBDModel(rfm(), priors={"s": inverse_gamma}).fast_model() is None
    off = BGBBModel(donations())
    off.fast_sampler = False
    assert off.fast_route() is None


def test_map_on_the_fast_route_equals_the_pymc_route():
    for model in (SBGModel(cohorts(), pooled=False), BGBBModel(donations())):
        fast = model.fit(method="map", draws=500, chains=2, seed=1).idata
        model.fast_sampler = False
        slow = model.fit(method="map", draws=500, chains=2, seed=1).idata
        assert (fast.attrs["tenure_sampler"], slow.attrs["tenure_sampler"]) == ("numba-closed-form", "pymc")
        f, s = json.loads(fast.attrs["tenure_map"]), json.loads(slow.attrs["tenure_map"])
        assert f.keys() == s.keys()
        for k in f:  # PyMC's find_MAP stops on its tolerance (BG/BB delta 2.78373); the Newton polish reaches the
            np.testing.assert_allclose(f[k], s[k], rtol=2e-4)  # mode to a gradient of 1e-11 (2.78344)
        fm = model.fast_model()
        at = {name: np.log(np.concatenate([np.ravel(d[k]) for k in fm.params])) for name, d in (("fast", f),
                                                                                                ("pymc", s))}
        assert fm.logp_without_jacobian(at["fast"])[0] >= fm.logp_without_jacobian(at["pymc"])[0] - 1e-9
        assert list(fast.posterior.data_vars) == list(slow.posterior.data_vars)
        for k in fast.posterior.data_vars:
            assert fast.posterior[k].dims == slow.posterior[k].dims
            # The same normal approximation (eigenvector signs may differ, so the draws themselves do too).
            f_sd, s_sd = (np.log(i.posterior[k].values).std(axis=(0, 1)) for i in (fast, slow))
            np.testing.assert_allclose(f_sd, s_sd, rtol=0.15)
        assert set(fast.groups()) == set(slow.groups())


def test_nuts_on_the_fast_route_has_the_pymc_layout():
    model = SBGModel(cohorts(), pooled=False)
    idata = model.fit(method="mcmc", draws=200, tune=200, chains=2, seed=2).idata
    assert idata.attrs["tenure_sampler"] == "numba-closed-form"
    assert list(idata.posterior.data_vars) == [v.name for v in model.build().unobserved_value_vars]
    assert idata.posterior["alpha"].dims == ("chain", "draw", "cohort")
    assert list(idata.posterior["alpha"].cohort.values) == ["high_end", "regular"]
    assert {"observed_data", "log_likelihood"} <= set(idata.groups())
    # Fader & Hardie (2007): regular (0.704, 1.182), high end (0.668, 3.806); flat priors put the means near them.
    mean = idata.posterior["beta"].mean(("chain", "draw")).values
    assert 3.0 < mean[0] < 6.0 and 0.9 < mean[1] < 1.8


def test_fast_route_does_not_import_pymc(tmp_path):
    code = ("import sys, polars as pl\n"
            "from tenure.models.sbg import SBGModel\n"
            "from tenure.models.bgbb import BGBBModel\n"
            "from tenure.models.gamma_gamma import GammaGammaModel\n"
            f"SBGModel(pl.read_csv({str(tmp_path / 'c.csv')!r})).fit(method='map', draws=10, chains=1)\n"
            f"BGBBModel(pl.read_csv({str(DATA / 'donations.csv')!r})).fit(method='mcmc', draws=20, tune=20, chains=1)\n"
            f"s = pl.read_csv({str(DATA / 'cdnow_customers_summary_with_transactions.csv')!r})\n"
            "s = s.rename({'x': 'frequency', 't_x': 'recency', 'zbar': 'monetary_value'})\n"
            "GammaGammaModel(s).fit(method='map', draws=10, chains=1)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pymc', 'pytensor')))\n")
    cohorts().write_csv(tmp_path / "c.csv")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
