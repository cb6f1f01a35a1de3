"""`tenure calibrate MARKET PANEL -o market.toml`, then `tenure decide market.toml`: the new spellings end to end."""

import json
import os
import stat

import pytest
from tenure.engine.simulator import Simulator
from typer.testing import CliRunner

from tenure.cli import app
from tenure.scenario import load_scenario

runner = CliRunner()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A 3 000-customer, 12-month market, its full panel, and the market calibrated on it (umask 022)."""
    d = tmp_path_factory.mktemp("cal")
    base = load_scenario(None).scaled(3_000).with_overrides({"run": {"periods": 12}})
    (d / "base.toml").write_text(base.to_toml())
    Simulator(base.with_overrides({"run": {"seed": 7}}), panel_fraction=1.0).run().panel.write_parquet(d / "p.parquet")
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["calibrate", str(d / "base.toml"), str(d / "p.parquet"), "-o", str(d / "m.toml"),
                                  "--markets", "4", "--check-markets", "3", "-s", "11", "-q"])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert "note:" not in res.output  # the new spelling needs no note
    return d


def test_calibrate_writes_the_market_and_its_draws_with_normal_permissions(calibrated):
    for name in ("m.toml", "m.draws.csv", "m.calibration.json", "m.check.png"):
        assert stat.S_IMODE((calibrated / name).stat().st_mode) == 0o644, name
    assert load_scenario(str(calibrated / "m.toml"))["run"]["customers"] == 3_000
    assert len((calibrated / "m.draws.csv").read_text().strip().splitlines()) == 1 + 4  # header + 4 markets


def test_decide_reads_the_calibrated_market(calibrated, tmp_path):
    res = runner.invoke(app, ["decide", str(calibrated / "m.toml"), "-n", "500", "-t", "4", "--max-markets", "3",
                              "--levers", "service", "--acquisition-steps", "2", "-o", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "d" / "uncertainty.json").read_text())
    assert doc["settings"]["markets"] == 3 and doc["settings"]["customers"] == 3_000
    # expected loss is E[max CE] - E[CE]: zero only for an allocation best in every (market, seed), never negative
    assert min(p["expected_loss"] for p in doc["points"]) >= 0


def test_the_set_has_a_manifest_of_every_file(calibrated):
    from tenure.io import verify_manifest

    doc = verify_manifest(calibrated / "m.toml")
    assert sorted(doc["files"]) == ["m.calibration.json", "m.check.png", "m.draws.csv", "m.toml"]
    assert doc["command"] == "tenure calibrate" and doc["seed"] == 11
    assert not [p.name for p in calibrated.iterdir() if p.name.startswith(".")]  # no staging folder left


def _copy_set(src, dst):
    import shutil

    for p in src.glob("m.*"):
        shutil.copy2(p, dst / p.name)
    return dst / "m.toml"


@pytest.mark.parametrize(("change", "needle"), [
    ("truncate", "m.draws.csv: changed since the run wrote it"),
    ("remove", "m.draws.csv: missing, yet listed in"),
    ("edit_market", "m.toml: changed since the run wrote it"),
])
def test_decide_refuses_an_incomplete_or_edited_set(calibrated, tmp_path, change, needle):
    market = _copy_set(calibrated, tmp_path)
    draws = tmp_path / "m.draws.csv"
    if change == "truncate":
        draws.write_bytes(draws.read_bytes()[:-20])
    elif change == "remove":
        draws.unlink()
    else:
        market.write_text(market.read_text() + "\n# edited by hand\n")
    res = runner.invoke(app, ["decide", str(market), "-n", "500", "-t", "4", "--max-markets", "3",
                              "-o", str(tmp_path / "d"), "-q"])
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()
