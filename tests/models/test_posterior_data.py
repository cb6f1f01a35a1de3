"""``PosteriorData``: a fit's groups without xarray, written and read in ArviZ's NetCDF layout.

The file it writes with h5netcdf alone must read back, through xarray and ArviZ, exactly as the
file xarray itself writes; and its reader must read what ArviZ writes (booleans, strings, fill
values) as xarray's default decoding does.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tenure.models._posterior_data import Group, PosteriorData, group_arrays

xr = pytest.importorskip("xarray")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    az = pytest.importorskip("arviz")


def _example() -> PosteriorData:
    rng = np.random.default_rng(3)
    data = PosteriorData.from_dict(
        {"r": rng.gamma(2.0, size=(2, 5)), "effect": rng.normal(size=(2, 5, 3)), "cell": rng.normal(size=(2, 5, 2, 2))},
        coords={"segment": ["loyal", "price-driven", "new"]}, dims={"effect": ["segment"]})
    data.add_groups(observed_data=Group({"frequency": (("row",), np.array([0.0, 2.0, 7.0])),
                                         "count": (("row",), np.array([5, 1, 2])),
                                         "churned": (("row",), np.array([True, False, True]))}),
                    log_likelihood=Group({"obs": (("chain", "draw", "row"), rng.normal(size=(2, 5, 3)))},
                                         {"chain": np.arange(2), "draw": np.arange(5)}))
    data.attrs.update({"tenure_model": "bgnbd", "tenure_map": '{"r": 1.5}', "n": 3})
    return data


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert list(a.data_vars) == list(b.data_vars) and dict(a.sizes) == dict(b.sizes)
    for k in a.data_vars:
        assert a[k].dims == b[k].dims and a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k].values, b[k].values)
    assert set(a.coords) == set(b.coords)
    for k in a.coords:
        np.testing.assert_array_equal(a[k].values.astype(str), b[k].values.astype(str))


def test_the_h5netcdf_file_reads_through_xarray_and_arviz_as_xarrays_own(tmp_path):
    data = _example()
    ours = data.to_netcdf(str(tmp_path / "ours.nc"))
    assert "xarray" not in {type(g).__module__.split(".")[0] for g in data._groups.values()}  # still arrays
    theirs = PosteriorData(attrs=data.attrs, **{g: data.arrays(g).to_dataset() for g in data.groups()})
    theirs.to_netcdf(str(tmp_path / "theirs.nc"))  # Datasets: written by xarray
    a, b = az.from_netcdf(ours), az.from_netcdf(str(tmp_path / "theirs.nc"))
    assert a.groups() == b.groups() == ["posterior", "log_likelihood", "observed_data"]
    for g in a.groups():
        _same(getattr(a, g), getattr(b, g))
    assert a.observed_data["churned"].dtype == bool
    assert list(a.posterior["effect"].coords["segment"].values) == ["loyal", "price-driven", "new"]
    assert a.attrs["tenure_model"] == "bgnbd" and int(a.attrs["n"]) == 3
    with xr.open_dataset(ours, group="posterior", engine="h5netcdf") as ds:
        _same(ds, b.posterior)


def test_the_reader_decodes_arviz_files_as_xarray_does(tmp_path):
    rng = np.random.default_rng(5)
    idata = az.from_dict(posterior={"a": rng.normal(size=(2, 4)), "v": rng.normal(size=(2, 4, 3))},
                         sample_stats={"diverging": rng.random((2, 4)) < 0.5, "lp": rng.normal(size=(2, 4))},
                         coords={"item": ["x", "y", "z"]}, dims={"v": ["item"]})
    idata.posterior["a"][0, 1] = np.nan
    path = str(tmp_path / "arviz.nc")
    idata.to_netcdf(path)
    ours = PosteriorData.from_netcdf(path)
    assert ours.groups() == idata.groups()
    for g in idata.groups():
        arrays = ours.arrays(g)
        for k, v in getattr(idata, g).data_vars.items():
            dims, values = arrays.variables[k]
            assert dims == v.dims and values.dtype == v.dtype, (g, k)
            np.testing.assert_array_equal(values, v.values)
    assert [str(c) for c in ours.arrays("posterior").labels("item")] == ["x", "y", "z"]
    assert ours.arrays("posterior").attrs["arviz_version"] == idata.posterior.attrs["arviz_version"]
    _same(ours.posterior, idata.posterior)  # the Dataset it builds on request


def test_a_group_becomes_a_dataset_on_request_and_keeps_changes(tmp_path):
    data = _example()
    post = data.posterior
    assert isinstance(post, xr.Dataset) and data.posterior is post
    post["r2"] = post["r"] ** 2
    assert "r2" in data.arrays("posterior") and "r2" in group_arrays(data, "posterior")
    again = PosteriorData.from_netcdf(data.to_netcdf(str(tmp_path / "mixed.nc")))  # now written by xarray
    np.testing.assert_array_equal(again.arrays("posterior").variables["r2"][1], post["r2"].values)
    np.testing.assert_array_equal(again.arrays("observed_data").variables["churned"][1], [True, False, True])
    idata = data.to_arviz()
    assert group_arrays(idata, "posterior").sizes == {"chain": 2, "draw": 5, "segment": 3, "cell_dim_0": 2,
                                                      "cell_dim_1": 2}


def test_draws_put_chain_and_draw_first_and_label_unnamed_dimensions():
    values = np.arange(24.0).reshape(3, 2, 4)  # (segment, chain, draw)
    group = Group({"v": (("segment", "chain", "draw"), values)}, {"segment": np.array(["a", "b", "c"])})
    dims, draws = group.draws("v")
    assert dims == ("segment",) and draws.shape == (2, 4, 3)
    np.testing.assert_array_equal(draws[1, 2], values[:, 1, 2])
    assert list(group.labels("chain")) == [0, 1] and group.sizes == {"segment": 3, "chain": 2, "draw": 4}
    with pytest.raises(ValueError, match="dimensions"):
        Group({"w": (("row",), np.zeros((2, 2)))})


def test_summary_and_diagnostics_from_arrays_match_arviz_on_its_datasets():
    # R-hat and bulk ESS per entry are computed on the (chain, draw) arrays of a Group (no Dataset built); they
    # must equal ArviZ's on the Dataset, entry by entry, for a scalar, a vector over a named dimension and a
    # matrix, and the R-hat warning must name the entries above 1.01 in summary.csv's labels, worst first.
    from tenure.models.base import diagnostics_warnings, summary_table

    rng = np.random.default_rng(8)
    r = rng.normal(size=(3, 200))
    effect = rng.normal(size=(3, 200, 3))
    effect[0, :, 1] += 0.5  # one chain off: R-hat of effect[price-driven] above 1.01
    effect[1, :, 2] += 0.3
    cell = rng.normal(size=(3, 200, 2, 2))
    data = PosteriorData.from_dict({"r": r, "effect": effect, "cell": cell},
                                   coords={"segment": ["loyal", "price-driven", "new"]}, dims={"effect": ["segment"]})
    data.attrs["tenure_method"] = "mcmc"
    table = summary_table(data)
    post = az.convert_to_dataset({"r": r, "effect": effect, "cell": cell}, coords={"segment": ["loyal", "price-driven",
                                 "new"]}, dims={"effect": ["segment"]})
    rhat = np.concatenate([np.ravel(az.rhat(post)[k].values) for k in ("r", "effect", "cell")])
    ess = np.concatenate([np.ravel(az.ess(post, method="bulk")[k].values) for k in ("r", "effect", "cell")])
    np.testing.assert_allclose(table["r_hat"].to_numpy(), rhat, rtol=1e-12)
    np.testing.assert_allclose(table["ess_bulk"].to_numpy(), ess, rtol=1e-12)
    assert table["parameter"].to_list()[:5] == ["r", "effect[loyal]", "effect[price-driven]", "effect[new]",
                                                "cell[0, 0]"]
    (warning,) = diagnostics_warnings(data)
    assert warning.startswith("R-hat above 1.01 (chains disagree): effect[price-driven]=")
    assert "effect[new]=" in warning and "effect[loyal]" not in warning and "cell" not in warning
    assert all(isinstance(data._groups[g], Group) for g in data.groups())  # still arrays: h5netcdf writes them
