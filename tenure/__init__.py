"""tenure: simulate, estimate and decide on customer relationships.

The public Python API, the twin of the CLI (same options, same defaults):

- :func:`tenure.simulate` runs a market and returns a :class:`tenure.engine.SimulationResult`;
- :func:`tenure.compare` splits a budget between acquisition and retention on the simulator;
- :func:`tenure.decide` chooses a split across the calibrated markets of ``tenure calibrate``;
- :func:`tenure.load_scenario` reads a market (a built-in name or a TOML file), optionally with
  ``customers`` (the same market with N customers), ``periods`` and ``seed``;
- model families live in :mod:`tenure.models`, economics in :mod:`tenure.simulations`.

Heavy modules (Numba kernels, PyMC) are imported on first use, so that
``import tenure`` and ``tenure --help`` stay fast.
"""

from __future__ import annotations

import warnings
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "compare", "decide", "load_scenario", "simulate"]

# PyTensor warns at every compilation that a pip-installed NumPy gives it no BLAS to link. The models
# here do no large matrix products (the panel likelihoods run on compressed cells), so the warning says
# nothing a user can act on. Set here, it holds for every command, the Python API and Dask workers.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)


def __getattr__(name: str) -> Any:
    if name in ("simulate", "compare", "decide", "load_scenario"):
        from tenure import api

        return getattr(api, name)
    raise AttributeError(f"module 'tenure' has no attribute {name!r}")
