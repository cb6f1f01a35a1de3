"""The layering rule (README, Layout): imports only point down.

Bottom: the shared vocabulary in ``tenure/`` (errors, io, scenario, panel format,
metrics, curves, ...). Above it, side by side and never importing each other,
``engine/`` and ``models/``. Above both, ``simulations/``. On top, the CLI
(``tenure/commands``, ``tenure/cli.py``) and the public API (``tenure/api.py``,
``tenure/__init__.py``). The test reads every import statement, including those
inside functions, so a lazy import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"engine": "tenure.engine", "models": "tenure.models", "simulations": "tenure.simulations"}
#: The public face: the CLI, the API module and what the package exports from it.
TOP = {"tenure.cli", "tenure.api", "tenure", "tenure.simulate", "tenure.compare", "tenure.decide",
       "tenure.load_scenario"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    package = FOLDERS.get(rel.parts[0], "tenure")
    parts = [package, *rel.parts[1:-1]] if rel.parts[0] in FOLDERS else ["tenure", *rel.parts[1:-1]]
    if path.stem != "__init__":
        parts.append(path.stem)
    return ".".join(parts)


#: Top-floor packages inside ``tenure/``: the report reads every kind of run folder (the engine's tables,
#: the models' posteriors, the simulations' comparisons and calibrations), so it depends on every layer
#: below; the commands call it, nothing below may.
TOP_PACKAGES = ("tenure.report",)


def _layer(module: str) -> str:
    if any(module == p or module.startswith(p + ".") for p in TOP_PACKAGES):
        return "top"
    for layer in ("engine", "models", "simulations", "commands"):
        if module == f"tenure.{layer}" or module.startswith(f"tenure.{layer}."):
            return layer
    if module in TOP or module in {"tenure.api", "tenure.cli"}:
        return "top"
    return "vocabulary"


#: What each layer may import (besides itself).
ALLOWED = {
    "vocabulary": {"vocabulary"},
    "engine": {"vocabulary", "engine"},
    "models": {"vocabulary", "models"},
    "simulations": {"vocabulary", "engine", "models", "simulations"},
    "commands": {"vocabulary", "engine", "models", "simulations", "commands", "top"},
    "top": {"vocabulary", "engine", "models", "simulations", "commands", "top"},
}


def _sources() -> list[Path]:
    files = [p for folder in (*FOLDERS, "tenure") for p in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "tenure" and node.level == 0:
            # ``from tenure import models`` names a package through the attribute; ``__version__`` is vocabulary
            found += [(node.lineno, f"tenure.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name == "tenure" or name.startswith("tenure.")]


def test_module_names_are_mapped():
    assert _module_name(ROOT / "engine" / "kernels.py") == "tenure.engine.kernels"
    assert _module_name(ROOT / "tenure" / "commands" / "fit.py") == "tenure.commands.fit"
    assert _layer("tenure.scenario") == "vocabulary"
    assert _layer("tenure.models.bgnbd") == "models"
    assert _layer("tenure.report.pages") == "top"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path):
    layer = _layer(_module_name(path))
    upward = []
    for line, name in _imports(path):
        if name == "tenure" and layer != "top":
            upward.append(f"line {line}: import tenure (the public API sits on top)")
            continue
        target = _layer(name)
        if target not in ALLOWED[layer]:
            upward.append(f"line {line}: {name} ({target}) from the {layer} layer")
    assert not upward, f"{path.relative_to(ROOT)} imports upward: " + "; ".join(upward)


ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)


def test_no_reference_outside_the_repository():
    """No source, test or doc points at files outside the repository or at issue numbers."""
    offenders = []
    for p in [*_sources(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md",
              *(ROOT / "benchmarks").glob("*")]:
        if "__pycache__" in p.parts or not p.is_file() or p == Path(__file__):
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        for bad in ("../shared", "shared/data", "shared/domain"):
            if bad in text:
                offenders.append(f"{p.relative_to(ROOT)}: {bad}")
    assert not offenders, offenders
