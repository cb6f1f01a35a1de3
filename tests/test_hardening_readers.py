"""The panel and transaction readers: generated CSV cells give InputError or a valid, finite table."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenure.models.clv_data import summary_from_transactions
from tenure.models.panel import read_panel

from tenure.errors import InputError
from tenure.io import read_table

HEADER = "customer_id,period,churned,trust,enthusiasm,satisfaction,products,cross_sold,segment"
GOOD = ["1", "0", "false", "3", "4", "", "1", "0", "a"]
CELLS = st.sampled_from(["", "nan", "inf", "-1", "1e300", "18446744073709551616", "x", "true", "2.5", "0", "3",
                         "caf\u00e9", "null"])


@given(col=st.integers(0, len(GOOD) - 1), cell=CELLS)
def test_panel_cell_is_refused_or_valid(tmp_path_factory, col, cell):
    row = list(GOOD)
    row[col] = cell
    path = tmp_path_factory.mktemp("p") / "panel.csv"
    path.write_text(HEADER + "\n" + ",".join(GOOD) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    try:
        df = read_panel(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    for c in df.columns:
        if df[c].dtype.is_float():
            assert df[c].is_finite().all()


@given(cell=CELLS, col=st.sampled_from(["customer_id", "date", "amount"]))
def test_transactions_cell_is_refused_or_valid(tmp_path_factory, cell, col):
    row = {"customer_id": "1", "date": "2024-02-01", "amount": "5", col: cell}
    path = tmp_path_factory.mktemp("t") / "t.csv"
    path.write_text("customer_id,date,amount\n1,2024-01-01,10\n" + ",".join(row.values()) + "\n", encoding="utf-8")
    try:
        out = summary_from_transactions(read_table(path))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert (out["monetary_value"] >= 0).all() and out["monetary_value"].is_finite().all()


@pytest.mark.parametrize("seg", ["customer_id", "churned", "revenue_share"])
def test_segment_column_must_hold_labels(tmp_path, seg):
    path = tmp_path / "panel.csv"
    path.write_text(HEADER + ",revenue_share\n" + ",".join(GOOD) + ",0.5\n")
    with pytest.raises(InputError, match="--segment-col"):
        read_panel(path, segment_col=seg)


# -- engine checkpoints: --resume refuses a checkpoint whose shard files are missing or changed -----------------
@pytest.mark.parametrize("change", ["truncate", "remove", "none"])
def test_resume_refuses_a_tampered_checkpoint(tmp_path, change):
    from tenure.engine.simulator import Simulator
    from typer.testing import CliRunner

    from tenure.api import load_scenario
    from tenure.cli import app

    class Stop(Exception):
        pass

    def stop(done, total):
        if done == 3:
            raise Stop

    sc = load_scenario("default", run={"customers": 500, "periods": 4, "seed": 5})
    with pytest.raises(Stop):
        Simulator(sc, 2, checkpoint_every=2, checkpoint_dir=tmp_path / "ck").run(progress=stop)
    shard = sorted((tmp_path / "ck").glob("shard-*.npz"))[1]
    if change == "truncate":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif change == "remove":
        shard.unlink()
    res = CliRunner().invoke(app, ["simulate", "--resume", str(tmp_path / "ck"), "-o", str(tmp_path / "o"), "-q"])
    if change == "none":
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and shard.name in res.stderr
    assert not (tmp_path / "o").exists()


# -- cohort tables, RFM summaries: generated cells give InputError (one line) or a valid, finite table ----------
COHORT = [["a", "0", "100"], ["a", "1", "80"], ["a", "2", "70"], ["b", "0", "50"], ["b", "1", "40"]]


@given(row=st.integers(0, len(COHORT) - 1), col=st.integers(0, 2), cell=CELLS)
def test_cohort_table_cell_is_refused_or_valid(tmp_path_factory, row, col, cell):
    from tenure.models.clv_data import validate_cohort_table

    rows = [list(r) for r in COHORT]
    rows[row][col] = cell
    path = tmp_path_factory.mktemp("c") / "cohorts.csv"
    path.write_text("cohort,period,alive\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    try:
        table = validate_cohort_table(read_table(path), where=str(path))
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert table["alive"].min() >= 0 and table["period"].min() == 0
    for _, g in table.group_by("cohort"):
        alive = g.sort("period")["alive"].to_list()
        assert alive[0] > 0 and all(b <= a for a, b in itertools.pairwise(alive))


SUMMARY = [["1", "2", "5.0", "10.0", "12.5"], ["2", "0", "0", "8.0", "0"], ["3", "1", "3.0", "6.0", "20"]]


@given(row=st.integers(0, len(SUMMARY) - 1), col=st.integers(1, 4), cell=CELLS,
       kind=st.sampled_from(["continuous", "discrete", "monetary"]))
def test_rfm_summary_cell_is_refused_or_valid(tmp_path_factory, row, col, cell, kind):
    from tenure.models.clv_data import validate_summary

    rows = [list(r) for r in SUMMARY]
    if kind == "discrete":
        rows = [["1", "2", "4", "6", "1"], ["2", "0", "0", "6", "1"], ["3", "1", "3", "6", "1"]]
    rows[row][col] = cell
    path = tmp_path_factory.mktemp("s") / "summary.csv"
    path.write_text("customer_id,frequency,recency,T,monetary_value\n" + "\n".join(",".join(r) for r in rows) + "\n")
    try:
        out = validate_summary(read_table(path), where=str(path), monetary=kind == "monetary",
                               discrete=kind == "discrete")
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    for c in ("frequency", "recency", "T"):
        assert out[c].cast(float).is_finite().all() and (out[c] >= 0).all()
    assert (out["recency"] <= out["T"]).all()
    if kind == "monetary":
        assert out["monetary_value"].is_finite().all() and (out["monetary_value"] >= 0).all()


# -- fit folders: a posterior that is partial, corrupted, of another model, or a folder without its manifest ------
@pytest.fixture(scope="module")
def fit_folder(tmp_path_factory):
    from typer.testing import CliRunner

    from tenure.cli import app

    d = tmp_path_factory.mktemp("fit")
    (d / "c.csv").write_text("cohort,period,alive\na,0,100\na,1,80\na,2,70\na,3,62\n")
    res = CliRunner().invoke(app, ["fit", "sbg", str(d / "c.csv"), "--method", "map", "-o", str(d / "f")])
    assert res.exit_code == 0, res.output
    return d / "f"


@given(cut=st.floats(0.0, 1.0), flip=st.integers(0, 255), how=st.sampled_from(["truncate", "flip", "manifest"]))
def test_fit_folder_is_refused_or_loads(fit_folder, tmp_path_factory, cut, flip, how):
    import shutil

    from tenure.models import load

    d = tmp_path_factory.mktemp("f") / "f"
    shutil.copytree(fit_folder, d)
    post = d / "posterior.nc"
    data = bytearray(post.read_bytes())
    at = int(cut * (len(data) - 1))
    if how == "truncate":
        post.write_bytes(bytes(data[:at]))
    elif how == "flip":
        data[at] ^= flip or 1
        post.write_bytes(bytes(data))
    else:  # the posterior untouched, the manifest gone: read as a folder made by the Python API
        (d / "manifest.json").unlink()
    try:
        result = load(d)
    except InputError as exc:
        assert "\n" not in str(exc) and "posterior.nc" in str(exc)
        assert how != "manifest"
        return
    assert how == "manifest" and result.model_name == "sbg"


def test_fit_folder_of_another_model_or_no_posterior(fit_folder, tmp_path):
    import shutil

    import arviz as az
    import numpy as np
    from tenure.models import load

    idata = az.from_dict(posterior={"alpha": np.ones((1, 5))})
    idata.attrs["tenure_model"] = "no-such-model"
    idata.to_netcdf(str(tmp_path / "posterior.nc"), engine="h5netcdf")
    with pytest.raises(InputError, match="unknown model 'no-such-model'"):
        load(tmp_path)
    shutil.copytree(fit_folder, tmp_path / "g")
    (tmp_path / "g" / "posterior.nc").unlink()
    with pytest.raises(InputError, match=r"posterior\.nc: missing, yet listed in"):
        load(tmp_path / "g")


@pytest.mark.parametrize(("cell", "ok"), [("yes", True), ("NO", True), ("True", True), ("1", True), ("y", False),
                                          ("2", False), ("churned", False)])
def test_churned_as_text_follows_the_documented_mapping(tmp_path, cell, ok):
    path = tmp_path / "panel.csv"
    row = list(GOOD)
    row[0], row[2] = "2", cell
    path.write_text(HEADER + "\n" + ",".join(GOOD).replace(",false,", ",no,") + "\n" + ",".join(row) + "\n")
    if ok:
        assert read_panel(path)["churned"].dtype == pl.Boolean
    else:
        with pytest.raises(InputError, match=f"column 'churned': expected true/false, found '{cell}' at row 2"):
            read_panel(path)
