"""Where Numba caches the compiled kernels of the engine and the models.

Numba invalidates a cached kernel only when the kernel's own file changes, not when a helper
it inlines from another file does (numba#1833): the engine's kernels call the Philox generator
in ``engine/rng.py``, the models' densities call ``prior_logp``, ``digamma`` and the buffer
layout of ``models/_fast.py``. Changing such a helper would leave every cached kernel that
inlined it stale, a silent wrong answer. So the cache folder is keyed by a hash of every
kernel source (each module of the engine and the models with a Numba decorator, and the
vocabulary whose constants the kernels compile in): a change to any of them starts a fresh
cache. One key serves the engine and the models together; a change in either costs one
recompile of both. A user's own ``NUMBA_CACHE_DIR`` is respected (the key becomes a
sub-folder of it).

Numba fixes a kernel's cache folder when the decorator runs (its cache locator reads
``numba.config.CACHE_DIR`` then), so each kernel package's ``__init__`` (``tenure.engine``,
``tenure.models``) calls :func:`configure_cache`: Python runs it before any module of the package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path

#: The packages whose modules hold kernels.
KERNEL_PACKAGES = ("tenure.engine", "tenure.models")
#: Vocabulary whose constants the kernels compile in: the engine's panel columns (``engine/kernels.py``
#: turns ``ENGINE_PANEL_INDEX`` into the column constants of its kernels). The other vocabulary the
#: kernel modules import (operations and metrics columns, checks) is read by Python code only.
KERNEL_VOCABULARY = ("tenure.panel_format",)

# A Numba decorator on a line of its own (``@njit``, ``@numba.njit(...)``, ``@intrinsic``, ...) or an
# explicit ``numba.cfunc(...)``-style call; a mention in a docstring only costs a recompile.
_NUMBA_DECORATOR = re.compile(
    rb"^[ \t]*@(?:numba\.|nb\.)?(?:njit|jit|cfunc|vectorize|guvectorize|stencil|intrinsic|overload\w*"
    rb"|register_jitable)\b|\bnumba\.(?:njit|jit|cfunc|vectorize|guvectorize)\(",
    re.MULTILINE,
)


def _package_folder(package: str) -> Path:
    """The folder of ``package``, found by its module name: in a checkout ``engine/`` sits beside
    ``tenure/``, once installed it sits inside it. Finding it does not import it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"cannot locate the package {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def kernel_sources() -> dict[str, Path]:
    """Every source a cached kernel compiles: module name to file, sorted by name.

    The modules of :data:`KERNEL_PACKAGES` whose source holds a Numba decorator (read from the files,
    not imported, so that asking costs no compilation), and the modules of :data:`KERNEL_VOCABULARY`.
    """
    found: dict[str, Path] = {}
    for package in KERNEL_PACKAGES:
        for path in sorted(_package_folder(package).glob("*.py")):
            if _NUMBA_DECORATOR.search(path.read_bytes()):
                found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    for module in KERNEL_VOCABULARY:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ImportError(f"cannot locate the module {module}")
        found[module] = Path(spec.origin)
    return dict(sorted(found.items()))


def source_key(sources: Mapping[str, Path]) -> str:
    """A short SHA-256 over the names and bytes of ``sources`` (16 hex digits): equal only for equal sources."""
    digest = hashlib.sha256()
    for name, path in sorted(sources.items()):
        data = path.read_bytes()
        # lengths delimit the fields, so that no two different source sets hash the same bytes
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


@functools.cache
def cache_key() -> str:
    """The key of the kernel sources of this installation (read once per process)."""
    return source_key(kernel_sources())


def cache_folder() -> Path:
    """``$NUMBA_CACHE_DIR/<key>``, else ``$XDG_CACHE_HOME/tenure/numba/<key>`` (``~/.cache`` by default)."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "tenure", "numba"
    )
    return Path(base) / cache_key()


def configure_cache() -> Path:
    """Point Numba's cache at the folder keyed by the kernel sources (created if missing); return it.

    Sets it on every call, since Numba re-reads ``NUMBA_CACHE_DIR`` into its configuration when its
    environment changes (a Dask worker's, say); only the first call reads the sources.
    """
    import numba

    path = cache_folder()
    path.mkdir(parents=True, exist_ok=True)
    numba.config.CACHE_DIR = str(path)
    return path
