"""docs/model.md keeps up with the scenario schema: every key documented, every documented default true.

The parameter tables of docs/model.md (§9) have one row per key, named `section.key` (segments as
`segments.key`, shocks as `shocks.key`), followed by the default as a TOML literal in backticks.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tenure.scenario import SCHEMA, SEGMENT_SCHEMA, SHOCK_SCHEMA, load_scenario

DOC = Path(__file__).resolve().parents[1] / "docs" / "model.md"
ROW = re.compile(r"^\|\s*`([a-z_]+)\.([a-z_0-9]+)`\s*\|(.*)$")


def documented_rows() -> dict[str, list[str]]:
    """Parameter-table rows of the document: dotted key -> the cells after the key."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            key = f"{m.group(1)}.{m.group(2)}"
            assert key not in rows, f"{key} has two rows in docs/model.md"
            rows[key] = [c.strip() for c in m.group(3).split("|")]
    return rows


def schema_keys() -> list[str]:
    keys = [f"{section}.{key}" for section, fields in SCHEMA.items() if section != "segment_defaults"
            for key in fields]
    keys += [f"segments.{key}" for key in SEGMENT_SCHEMA]
    keys += [f"shocks.{key}" for key in SHOCK_SCHEMA]
    return keys


def literal(cell: str) -> Any:
    """The TOML literal in a table cell such as `0.3` or `[1.0, 2.0]`; None for prose (—, required, (text))."""
    m = re.fullmatch(r"`(.+)`", cell)
    if not m:
        return None
    return tomllib.loads(f"v = {m.group(1)}")["v"]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def test_every_schema_key_has_a_row():
    rows = documented_rows()
    missing = [k for k in schema_keys() if k not in rows]
    assert not missing, f"keys of the scenario schema not documented in docs/model.md: {missing}"


def test_every_row_is_a_schema_key():
    stale = sorted(set(documented_rows()) - set(schema_keys()))
    assert not stale, f"docs/model.md documents keys the schema no longer has: {stale}"


def test_documented_defaults_are_those_of_default_toml():
    sc = load_scenario("default")
    rows = documented_rows()
    wrong = []
    for key in schema_keys():
        cells = rows.get(key)
        section, name = key.split(".")
        if cells is None:
            continue  # reported by test_every_schema_key_has_a_row
        if section == "meta":
            continue
        if section == "segments":
            # columns: [segment_defaults], then one per segment of the default market
            truth = [sc["segment_defaults"].get(name), *(seg[name] for seg in sc["segments"])]
            for cell, value in zip(cells, truth, strict=False):
                doc = literal(cell)
                if doc is not None and not same(doc, value):
                    wrong.append(f"{key}: documented {doc!r}, default.toml {value!r}")
        elif section == "shocks":
            continue  # checked against the loader below
        else:
            doc = literal(cells[0])
            if doc is None or not same(doc, sc[section][name]):
                wrong.append(f"{key}: documented {cells[0]}, default.toml {sc[section][name]!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("key", [k for k in SHOCK_SCHEMA if k not in ("start", "end")])
def test_documented_shock_defaults_are_the_loaders(key):
    filled = load_scenario(None, {"shocks": [{"start": 1, "end": 2}]})["shocks"][0]
    assert same(literal(documented_rows()[f"shocks.{key}"][0]), filled[key])
