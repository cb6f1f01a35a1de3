"""Small runs of every kind (simulate, compare, calibrate, decide, fit, evaluate), made once per session,
each with the report.html its command wrote.

The browser tests need headless Chromium (Debian's ``chromium`` package, /usr/bin/chromium, which
``.ci/run`` installs when missing) driven by Playwright; without either they are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenure.cli import app

CHROMIUM = os.environ.get("TENURE_CHROMIUM", "/usr/bin/chromium")
runner = CliRunner()


def tenure(*args: str) -> None:
    res = runner.invoke(app, [*args, "-q"])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """simulate (3 000 customers, 12 months, full panel), compare (small sweep) and the market they start from."""
    from tenure.scenario import load_scenario

    d = tmp_path_factory.mktemp("runs")
    base = load_scenario(None).scaled(3_000).with_overrides({"run": {"periods": 12}})
    (d / "base.toml").write_text(base.to_toml())
    tenure("simulate", str(d / "base.toml"), "--panel-sample", "1", "-o", str(d / "simulate"))
    tenure("compare", "-n", "1000", "-t", "6", "--acquisition-steps", "3", "--seeds", "2", "--levers", "service",
           "-o", str(d / "compare"))
    return d


@pytest.fixture(scope="session")
def calibrated(runs) -> Path:
    """A market calibrated on the simulate run's panel (4 markets, 3 for the check), then decide on it."""
    tenure("calibrate", str(runs / "base.toml"), str(runs / "simulate" / "panel.parquet"), "-o",
           str(runs / "m.toml"), "--markets", "4", "--check-markets", "3", "-s", "11")
    tenure("decide", str(runs / "m.toml"), "-n", "500", "-t", "4", "--max-markets", "3", "--levers", "service",
           "--acquisition-steps", "3", "-o", str(runs / "decide"))
    return runs


@pytest.fixture(scope="session")
def fitted(runs) -> Path:
    """`tenure fit retention --method map` on the simulate run's panel."""
    tenure_fit = runner.invoke(app, ["fit", "retention", str(runs / "simulate" / "panel.parquet"), "-o",
                                     str(runs / "fit"), "--method", "map", "--draws", "200"])
    assert tenure_fit.exit_code == 0, tenure_fit.output
    return runs


@pytest.fixture(scope="session")
def fitted_sbg(tmp_path_factory) -> Path:
    """`tenure fit sbg --per-cohort --method map` on Fader & Hardie's (2007) two cohorts (it has a predictive check)."""
    import polars as pl

    d = tmp_path_factory.mktemp("sbg")
    alive = {"regular": [1000, 631, 468, 380, 326, 289, 262, 241],
             "highend": [1000, 869, 743, 653, 593, 551, 517, 491]}
    pl.DataFrame({"cohort": [c for c, a in alive.items() for _ in a],
                  "period": [t for a in alive.values() for t in range(len(a))],
                  "alive": [v for a in alive.values() for v in a]}).write_csv(d / "cohorts.csv")
    res = runner.invoke(app, ["fit", "sbg", str(d / "cohorts.csv"), "--per-cohort", "-o", str(d / "sbg"), "--method",
                              "map", "--draws", "200"])
    assert res.exit_code == 0, res.output
    return d


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory) -> Path:
    """`tenure evaluate --models bgnbd --method map` on the first 200 customers of the CDNOW cohort (ids 1-200)."""
    import numpy as np
    import polars as pl

    d = tmp_path_factory.mktemp("evaluated")
    master = Path(__file__).resolve().parents[1] / "data" / "CDNOW_master.txt"
    rows = [line.split() for line in master.read_text().splitlines()[1:] if line.strip()]
    ids, dates, _, amounts = zip(*(r for r in rows if int(r[0]) <= 200), strict=True)
    pl.DataFrame({"customer_id": np.array(ids, dtype=np.int64), "date": list(dates),
                  "amount": np.array(amounts, dtype=float)}).write_csv(d / "log.csv")
    res = runner.invoke(app, ["evaluate", str(d / "log.csv"), "--holdout-start", "1997-10-01", "--models", "bgnbd",
                              "--method", "map", "-o", str(d / "evaluate")])
    assert res.exit_code == 0, res.output
    return d


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Playwright (no browser download: the system's Chromium)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TENURE_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
