"""The simulation core (imported as ``tenure.engine``): state, kernels, random numbers, shards.

Python orchestrates, Numba computes: kernels are pure functions over
structure-of-arrays state (:mod:`~tenure.engine.state`,
:mod:`~tenure.engine.kernels`); :class:`~tenure.engine.simulator.Simulator`
drives them period by period.
"""

from tenure.engine._cache import configure_cache

CACHE_DIR = configure_cache()
