"""An adversarial pass over the CLI: a few hundred bad inputs, each expected to end in exit code 2 and one line.

Run ``python benchmarks/adversarial.py [--fits]`` (``--fits`` adds the slower ``tenure fit`` cases). It
prints one line per case that did not end in a one-line refusal, then the tally: refused (exit code 2,
one line), internal error or traceback, accepted (exit code 0). The command lines are data: edit
``CASES`` (and the option names in it) when the CLI grammar changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from tenure.cli import app
from tenure.scenario import SCHEMA

BAD_VALUES = ["nan", "inf", "-inf", "1e308", "-1e308", "18446744073709551616", '"text"', "true", "[1, 2]", "-1"]
COHORTS = "cohort,period,alive\na,0,100\na,1,80\na,2,70\n"
PRIORS = ['[r]\ndist = "HalfNormal"\nsigma = -1\n', '[alpha]\ndist = "HalfNormal"\nsigma = nan\n',
          '[alpha]\ndist = "Nope"\n', "alpha = [1]\n", '[alpha]\ndist = "HalfNormal"\nsigma = "x"\n']
FILES = {
    "binary.toml": b"\x00\xff\xfe binary",
    "latin1.toml": "[meta]\nname = 'caf\xe9'\n".encode("latin-1"),
    "cohorts.csv": COHORTS.encode(),
    "a_file": b"x",
    "negative.csv": b"customer_id,date,amount\n1,2024-01-01,10\n1,2024-02-01,-5\n2,2024-01-03,3\n",
}

# Each case: the arguments after `tenure`; {d} is the case's scratch folder.
CASES: list[list[str]] = []
for section, fields in SCHEMA.items():
    for key, field in fields.items():
        values = BAD_VALUES if field.kind in ("int", "float") else ["1e308", "[1, 2]"]
        for value in [v for v in values if v != "-1" or field.bounds[0] >= 0]:
            CASES.append(["scenario", "validate", f"{section}.{key}={value}"])
CASES += [["scenario", "validate", "{d}/binary.toml"], ["scenario", "validate", "{d}/latin1.toml"],
          ["scenario", "show", "{d}/binary.toml"], ["scenario", "scale", "default", "0"],
          ["scenario", "scale", "{d}/latin1.toml", "10"], ["scenario", "scale", "default", str(2**64)],
          ["scenario", "validate", "{d}"]]
for opts in (["--seed", "-1"], ["--seed", str(2**64)], ["-n", "0"], ["-t", "0"], ["-t", "100000"],
             ["--panel-sample", "nan"], ["--panel-sample", "2"], ["--out", "{d}/a_file/o"], ["--format", "xls"]):
    CASES.append(["simulate", "-n", "50", "-t", "2", "-q", *opts] + ([] if "--out" in opts else ["--out", "{d}/o"]))
for opts in (["--budget", "nan"], ["--budget", "-1"], ["--seeds", "0"], ["--acquisition-steps", "0"],
             ["--seed", "-1"], ["--mix", "nan,1"], ["--levers", "nope"], ["--out", "{d}/a_file/o"]):
    CASES.append(["compare", "-n", "50", "-t", "2", "-q", *opts])
for opts in (["--seed", "-1"], ["--markets", "0"], ["--simulation-ratio", "nan"], ["--out", "{d}/a_file/x.toml"]):
    CASES.append(["calibrate", "{d}/cohorts.csv", "--out", "{d}/m.toml", *opts])
FIT_CASES: list[list[str]] = [
    *[["fit", "sbg", "{d}/cohorts.csv", "--method", "map", "--out", "{d}/f", "--discount-rate", r]
      for r in ("-1", "nan", "inf", "0")],
    *[["fit", "sbg", "{d}/cohorts.csv", "--method", "map", "--out", "{d}/f", "--priors", f"{{d}}/p{i}.toml"]
      for i in range(len(PRIORS))],
    ["fit", "sbg", "{d}/cohorts.csv", "--method", "map", "--out", "{d}/f", "--priors", "{d}"],
    ["fit", "sbg", "{d}/cohorts.csv", "--method", "map", "--out", "{d}/f", "--seed", "-1"],
    ["fit", "bgnbd", "{d}/negative.csv", "--method", "map", "--out", "{d}/f"],
    ["fit", "trim", "{d}/cohorts.csv", "--weights", "nan,1,1,1", "--out", "{d}/f"],
]


def _scenario_file(d: Path, spec: str) -> str:
    """``section.key=value`` becomes a scenario file setting that key."""
    section, _, rest = spec.partition(".")
    key, _, value = rest.partition("=")
    path = d / "case.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    return str(path)


def run(cases: list[list[str]]) -> dict[str, int]:
    runner = CliRunner()
    tally = {"refused (exit 2, one line)": 0, "internal error / traceback": 0, "accepted": 0, "other": 0}
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            for name, content in FILES.items():
                (d / name).write_bytes(content)
            for i, body in enumerate(PRIORS):
                (d / f"p{i}.toml").write_text(body)
            args = [_scenario_file(d, a) if "=" in a and "." in a.split("=")[0] else a.format(d=d) for a in case]
            result = runner.invoke(app, args)
            lines = result.stderr.strip().splitlines()
            leftover = [p.name for p in d.iterdir() if p.name in ("o", "f", "m.toml")]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                kind = "internal error / traceback"
            elif result.exit_code == 2 and len(lines) == 1 and not leftover:
                kind = "refused (exit 2, one line)"
            elif result.exit_code == 0:
                kind = "accepted"
            else:
                kind = "other"
            tally[kind] += 1
            if kind != "refused (exit 2, one line)":
                detail = repr(result.exception) if kind.startswith("internal") else (lines[-1] if lines else "")
                print(f"{kind}: tenure {' '.join(case)} -> exit {result.exit_code}: {detail[:160]}")
    return tally


if __name__ == "__main__":
    tally = run(CASES + (FIT_CASES if "--fits" in sys.argv else []))
    print(" | ".join(f"{k}: {v}" for k, v in tally.items()), f"| total: {sum(tally.values())}")
