"""`tenure report RUN`: render a run's report.html again from the files of its folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenure.commands._common import cli_errors, console
from tenure.commands._options import Quiet


@cli_errors
def report_cmd(
    run: Annotated[Path, typer.Argument(
        help="A run folder written by simulate, compare, decide, fit or evaluate (with its manifest.json), or a market "
        "file written by `tenure calibrate` (m.toml: the report goes to m.report.html).", metavar="RUN",
        show_default=False)],
    quiet: Quiet = False,
) -> None:
    """Write RUN/report.html: the answer first, then the evidence, in one self-contained page.

    Checks the run first: every file of its manifest present with the recorded size and
    checksum, and nothing written by a newer tenure; otherwise one line naming the file and
    exit code 2, and no report is written. The page holds its figures and styles inline and
    requests nothing from any network; it prints on A4.
    """
    from tenure.io import write_atomic
    from tenure.report import render

    found, html = render(run)
    target = found.report_path()
    write_atomic(target, lambda p: p.write_text(html, encoding="utf-8"))
    if not quiet:
        files = ", ".join(sorted(found.files))
        article = "an" if found.kind[0] in "aeiou" else "a"
        console.print(f"found {article} {found.kind} run in {run}: {files}", highlight=False, soft_wrap=True)
        console.print(f"wrote {target} ({target.stat().st_size / 1e3:,.0f} kB)", highlight=False)
