"""Where Numba caches the engine's compiled kernels.

Numba invalidates a cached kernel only when the kernel's own file changes, not
when a helper in another file does (numba#1833). The engine's kernels call the
Philox generator in ``rng.py``, so the cache folder is keyed by a hash of all
engine sources: any change to any of them starts a fresh cache. A user's own
``NUMBA_CACHE_DIR`` is respected (the hash becomes a sub-folder of it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path


def configure_cache() -> Path:
    """Point Numba's cache at a folder keyed by the engine's source hash; return it."""
    import numba

    here = Path(__file__).parent
    digest = hashlib.sha256()
    # the engine's sources, and the vocabulary whose constants the kernels compile in (panel columns);
    # found by its module name, since the engine sits beside it in a checkout and inside it once installed
    vocabulary = [Path(str(importlib.util.find_spec("tenure.panel_format").origin))]
    for src in [*sorted(here.glob("*.py")), *vocabulary]:
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    key = digest.hexdigest()[:16]
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "tenure", "numba"
    )
    path = Path(base) / key
    path.mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(path)
    return path
