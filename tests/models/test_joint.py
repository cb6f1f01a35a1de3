"""Joint model: correlated customer effects recovered; the size guard; the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from panelgen import simulate_panel
from tenure.models.joint import JointModel
from tenure.models.panel import read_panel
from typer.testing import CliRunner

import tenure.commands.fit_panel  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app
from tenure.errors import InputError


def test_refuses_panels_too_large_for_customer_effects() -> None:
    df, _ = simulate_panel(300, 3, seed=1)
    with pytest.raises(InputError, match="fit retention and cross-sell separately"):
        JointModel(read_panel(df), max_customers=100)


def test_builds_with_named_parameters() -> None:
    df, _ = simulate_panel(200, 6, seed=2)
    model = JointModel(read_panel(df))
    for name in JointModel.named_parameters:
        assert name in model.model.named_vars
    # one effect pair per customer with a usable row: rows before a customer's first survey answer have
    # nothing to carry forward and are dropped, so a few of the 200 customers have no cell at all
    assert model.model["customer_z"].eval().shape == (model.customers.size, 2)
    assert 150 < model.customers.size <= 200


@pytest.mark.slow
def test_recovers_attachment_correlation_and_effects(tmp_path: Path) -> None:
    """~2 min. Truth: customer sds (0.7, 0.7), correlation +0.6; fixed seeds, first tried.

    The frailty sd of a discrete hazard is weakly identified beside the tenure
    effect in 24 periods, so only the correlation and the slopes are checked.
    """
    df, truth = simulate_panel(1500, 24, seed=12, customer_sd=(0.7, 0.7), customer_corr=0.6)
    df.write_parquet(tmp_path / "panel.parquet")
    result = CliRunner().invoke(fit_app, ["joint", str(tmp_path / "panel.parquet"), "--out", str(tmp_path / "o"),
                                          "--draws", "400", "--tune", "400", "--chains", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    import arviz as az

    post = az.from_netcdf(tmp_path / "o" / "posterior.nc").posterior
    for name in ("attachment_corr", "churn_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm"):
        value = 0.6 if name == "attachment_corr" else getattr(truth, name)
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo < value < hi, (name, lo, value, hi)


def test_attachment_line_does_not_claim_a_direction_the_interval_does_not_support() -> None:
    import arviz as az

    df, _ = simulate_panel(200, 6, seed=2)
    model = JointModel(read_panel(df))
    rng = np.random.default_rng(0)
    base = {name: rng.normal(0.0, 0.1, (1, 400)) for name in ("churn_trust", "churn_enthusiasm",
                                                             "churn_satisfaction", "xsell_trust",
                                                             "xsell_enthusiasm", "xsell_trust_x_enthusiasm",
                                                             "xsell_products")}
    wide = az.from_dict(posterior={**base, "attachment_corr": rng.normal(0.1, 0.4, (1, 400))})
    assert model.effect_lines(wide)[-1].endswith("the data do not settle the direction")
    clear = az.from_dict(posterior={**base, "attachment_corr": rng.normal(0.5, 0.05, (1, 400))})
    assert model.effect_lines(clear)[-1].startswith("customers who stay longer than their scores predict also "
                                                    "buy more: correlation +0.50")


def test_rhat_warning_names_every_parameter_that_fails() -> None:
    import arviz as az
    from tenure.models.base import diagnostics_warnings

    rng = np.random.default_rng(0)
    apart = np.array([0.0, 1.0])[:, None]  # two chains a whole sd apart: R-hat far above 1.01
    post = {"attachment_corr": rng.normal(0, 1, (2, 300)) + apart,
            "customer_sd": rng.normal(0, 1, (2, 300, 2)) + np.array([[[0.0, 0.0]], [[1.0, 0.0]]]),
            "churn_trust": rng.normal(0, 1, (2, 300)),
            "customer_z": rng.normal(0, 1, (2, 300, 5, 2)) + apart[..., None, None]}
    idata = az.from_dict(posterior=post, coords={"effect": ["retention", "cross_sell"]},
                         dims={"customer_sd": ["effect"]})
    names = JointModel.diagnostic_var_names(None, idata)  # type: ignore[arg-type]
    assert "customer_z" not in names
    (warning,) = diagnostics_warnings(idata, names)
    assert "attachment_corr=" in warning and "customer_sd[retention]=" in warning
    assert "customer_sd[cross_sell]" not in warning and "churn_trust" not in warning
