"""tenure: simulate, estimate and decide on customer relationships.

The public Python API:

- :func:`tenure.simulate` runs a scenario and returns a :class:`tenure.engine.SimulationResult`;
- :func:`tenure.load_scenario` reads a scenario (a built-in name or a TOML file);
- model families live in :mod:`tenure.models`, economics and scenarios in
  :mod:`tenure.simulations`.

Heavy modules (Numba kernels, PyMC) are imported on first use, so that
``import tenure`` and ``tenure --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_scenario", "simulate"]


def __getattr__(name: str) -> Any:
    if name in ("simulate", "load_scenario"):
        from tenure import api

        return getattr(api, name)
    raise AttributeError(f"module 'tenure' has no attribute {name!r}")
