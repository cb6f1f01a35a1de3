"""The Numba cache folder is keyed by every kernel source (numba#1833: Numba re-checks only a kernel's own file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tenure import _numba_cache

ROOT = Path(__file__).resolve().parents[1]


def test_key_changes_with_any_source_byte(tmp_path: Path) -> None:
    sources = {}
    for name, path in _numba_cache.kernel_sources().items():
        copy = tmp_path / f"{name}.py"
        copy.write_bytes(path.read_bytes())
        sources[name] = copy
    base = _numba_cache.source_key(sources)
    assert base == _numba_cache.cache_key()  # same bytes, same key
    for name in ("tenure.models._fast", "tenure.engine.rng", "tenure.panel_format"):
        original = sources[name].read_bytes()
        sources[name].write_bytes(original + b"\n")
        assert _numba_cache.source_key(sources) != base, name
        sources[name].write_bytes(original)
    assert _numba_cache.source_key(sources) == base


def test_sources_hold_every_cached_kernel() -> None:
    found = set(_numba_cache.kernel_sources().values())
    assert ROOT / "models" / "_fast.py" in found
    assert ROOT / "engine" / "kernels.py" in found
    cached = {p for folder in ("engine", "models", "tenure") for p in (ROOT / folder).rglob("*.py")
              if "cache=True" in p.read_text(encoding="utf-8") and p.name != "_numba_cache.py"}
    assert cached <= found, sorted(map(str, cached - found))


def test_models_kernels_land_in_the_keyed_folder(tmp_path: Path) -> None:
    code = ("import numpy as np\n"
            "from tenure.models._draw_summary import summarise_buffer\n"
            "n = 5\n"
            "print(summarise_buffer(np.arange(5.0), n, 1.0, 3.0, np.empty(n), np.empty(n), np.empty(n)))\n"
            "import tenure.models._fast\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    keyed = tmp_path / _numba_cache.cache_key()
    assert any(keyed.rglob("_draw_summary.summarise_buffer*.nbi")), sorted(map(str, tmp_path.rglob("*")))
    assert not any(p for p in tmp_path.rglob("*.nbi") if keyed not in p.parents)
