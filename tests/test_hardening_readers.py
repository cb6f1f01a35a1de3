"""The panel and transaction readers: generated CSV cells give InputError or a valid, finite table."""

from __future__ import annotations

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
