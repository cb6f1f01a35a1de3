"""The fast route's NUTS driver against ``nutpie.sample`` on the same Rust sampler, and nutpie's loader."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.bgnbd import BGNBDModel
from tenure.models.sbg import SBGModel

DATA = Path(__file__).resolve().parents[1] / "data"


def _cohorts() -> pl.DataFrame:  # Fader & Hardie (2007), regular and high-end cohorts, years 0-7
    return pl.DataFrame({"cohort": ["regular"] * 8 + ["high_end"] * 8, "period": list(range(8)) * 2,
                         "alive": [1000, 631, 468, 382, 326, 289, 262, 241, 1000, 869, 743, 653, 593, 551, 517, 491]})


def _through_nutpie_sample(fast, **kwargs):
    """What the fast route gave before it drove ``nutpie._lib`` itself: ``nutpie.sample`` + ``from_arviz``."""
    import nutpie
    from nutpie.sample import CompiledModel
    from tenure.models._posterior_data import PosteriorData

    make = fast.compiled()
    names = fast.expanded()

    @dataclasses.dataclass(frozen=True)
    class Compiled(CompiledModel):
        @property
        def n_dim(self) -> int:
            return fast.n_dim

        @property
        def shapes(self) -> dict:
            return {n: fast.shape(n.removesuffix("_log__")) for n in names}

        @property
        def coords(self) -> dict:
            return fast._coords_and_dims(fast.params)["coords"]

        def _make_sampler(self, settings, init_mean, cores, progress_type, store):
            return make(settings, cores, progress_type, store)

    dims = {n: [fast.dims[n]] for n in fast.params if n in fast.dims}
    return PosteriorData.from_arviz(nutpie.sample(Compiled(dims=dims), progress_bar=False, store_divergences=False,
                                                  **kwargs))


@pytest.mark.parametrize("make", [lambda: BGNBDModel(pl.read_csv(DATA / "cdnow_customers_summary.csv")),
                                  lambda: SBGModel(_cohorts(), pooled=False)], ids=["bgnbd", "sbg-per-cohort"])
def test_nuts_fit_gives_the_groups_nutpie_sample_gives(make):
    fast = make().fast_route()
    ours = fast.nuts_fit(draws=30, tune=40, chains=2, seed=5, progress=False)
    theirs = _through_nutpie_sample(fast, draws=30, tune=40, chains=2, seed=5)
    assert ours.groups() == theirs.groups() == ["posterior", "sample_stats", "warmup_posterior",
                                                "warmup_sample_stats"]
    for name in ours.groups():
        a, b = ours.arrays(name), theirs.arrays(name)
        assert list(a.variables) == list(b.variables), name
        assert set(a.attrs) == set(b.attrs) and a.attrs["arviz_version"] == b.attrs["arviz_version"]
        for var, (dims, values) in b.variables.items():
            assert a.variables[var][0] == dims, (name, var)
            assert a.variables[var][1].dtype == values.dtype, (name, var)
            np.testing.assert_array_equal(a.variables[var][1], values, err_msg=f"{name}/{var}")
        assert list(a.coords) == list(b.coords)
        for dim, labels in b.coords.items():
            np.testing.assert_array_equal(a.coords[dim], labels)
    if "cohort" in ours.arrays("posterior").coords:
        assert ours.arrays("posterior").variables["alpha"][0] == ("chain", "draw", "cohort")


def test_nutpie_lib_loads_without_nutpie_python_and_import_nutpie_reuses_it():
    both = ("import sys\n"
            "from tenure.models._fast import nutpie_lib\n"
            "{first}\n{second}\n"
            "import nutpie, nutpie._lib\n"
            "assert nutpie._lib is lib is sys.modules['nutpie._lib'], 'two extension modules'\n"
            "assert hasattr(lib, 'PySampler')\n")
    fast_first = both.format(first="lib = nutpie_lib()",
                             second="assert 'nutpie' not in sys.modules and 'nutpie.sample' not in sys.modules")
    nutpie_first = both.format(first="import nutpie", second="lib = nutpie_lib()")
    for code in (fast_first, nutpie_first):
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
