"""The report a strategist opens: one self-contained HTML page per run (``report.html``).

It sits on the top floor, beside the CLI (tests/test_layers.py): it reads every kind of
run folder — the engine's tables, the models' posteriors, the simulations' comparisons and
calibrations — so it depends on every layer below and nothing below depends on it.

:func:`render` checks a run (:func:`tenure.report.runs.open_run`: manifest, checksums,
schema versions), builds the page's context (:mod:`tenure.report.pages`) and renders it
with Jinja2 from the templates in ``templates/``; :func:`write_report` writes it
atomically. The page holds everything inline (figures as data URIs, the style sheet) and
a Content-Security-Policy that forbids every network request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenure.report.runs import REPORT, Run, open_run

__all__ = ["REPORT", "Run", "open_run", "render", "write_report"]

#: The page's Content-Security-Policy: nothing may be fetched; images only from data: URIs, styles inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("tenure.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render(path: str | Path) -> tuple[Run, str]:
    """The checked run in ``path`` and its report as HTML text."""
    from tenure import __version__
    from tenure.report.pages import BUILDERS

    run = open_run(path)
    context = BUILDERS[run.kind](run)
    html = _environment().get_template("report.html.j2").render(csp=CSP, version=__version__, **context)
    return run, html


def write_report(path: str | Path) -> Path:
    """Render the report of the run in ``path`` and write it atomically (``report.html``, or ``m.report.html``)."""
    from tenure.io import write_atomic

    run, html = render(path)
    target = run.report_path()
    return write_atomic(target, lambda p: p.write_text(html, encoding="utf-8"))
