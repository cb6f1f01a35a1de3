"""Each kind of report in a real browser: no console error, no request, the verdict on the first screen,
every figure loaded, no horizontal scroll at 1280 px; and at A4 with the print style sheet, no cut figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.browser import A4, look

#: (run fixture, report path inside the runs folder, words the first screen must hold)
KINDS = {
    "simulate": ("runs", "simulate/report.html", ["customers", "churned", "NPS", "TRI*M", "Profit"]),
    "compare": ("runs", "compare/report.html", ["Best split", "gains", "beats the current split", "five times"]),
    "calibrate": ("calibrated", "m.report.html", ["fit the panel", "Gauss-Newton"]),
    "decide": ("calibrated", "decide/report.html", ["Best choice", "beats the current split", "to acquire",
                                                     "to retain", "five times", "at the margin", "on average"]),
    "fit": ("fitted", "fit/report.html", ["monthly odds of churning", "90 % interval", "Diagnostics",
                                          "Posterior predictive check (churn events per tenure band)",
                                          "inside their 90 % band"]),
    "fit-sbg": ("fitted_sbg", "sbg/report.html", ["Posterior predictive check", "inside their 90 % band",
                                                   "Diagnostics"]),
    "evaluate": ("evaluated", "evaluate/report.html", ["repeat transactions", "bgnbd predicts", "actual", "MAE",
                                                        "RMSE"]),
}
SLOW = {"calibrate", "decide", "fit"}


def _params():
    return [pytest.param(k, marks=[pytest.mark.slow] if k in SLOW else []) for k in KINDS]


@pytest.mark.parametrize("kind", _params())
def test_the_report_reads_in_a_browser(kind, request, browser, tmp_path):
    fixture, rel, words = KINDS[kind]
    report = Path(request.getfixturevalue(fixture)) / rel
    seen = look(browser, report, tmp_path / f"{kind}.png")
    assert seen.errors == []
    assert seen.requests == []
    for word in words:
        assert word in seen.first_screen, (word, seen.first_screen)
    assert seen.images and all(i["complete"] and i["w"] > 0 and i["h"] > 0 for i in seen.images), seen.images
    assert seen.scroll_width <= seen.client_width == 1280
    assert (tmp_path / f"{kind}.png").stat().st_size > 10_000


@pytest.mark.parametrize("kind", _params())
def test_the_report_prints_on_a4_without_cut_figures(kind, request, browser, tmp_path):
    fixture, rel, _ = KINDS[kind]
    report = Path(request.getfixturevalue(fixture)) / rel
    seen = look(browser, report, tmp_path / f"{kind}-print.png", print_media=True)
    assert seen.errors == [] and seen.requests == []
    assert seen.scroll_width <= A4["width"]
    printable = (297 - 2 * 14) / 25.4 * 96  # the page less the print margins of report.css, in CSS px
    for img in seen.images:
        assert img["right"] <= A4["width"] and 0 < img["height"] <= printable, img
    page = browser.new_page()
    page.goto(report.resolve().as_uri())
    pdf = page.pdf(path=str(tmp_path / f"{kind}.pdf"), prefer_css_page_size=True)
    page.close()
    assert pdf.count(b"/Type /Page") >= 2 or pdf.count(b"/Type/Page") >= 2  # the page tree and at least one page
