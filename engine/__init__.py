"""The simulation core (imported as ``tenure.engine``): state, kernels, random numbers, shards.

Python orchestrates, Numba computes: kernels are pure functions over
structure-of-arrays state (:mod:`~tenure.engine.state`,
:mod:`~tenure.engine.kernels`); :class:`~tenure.engine.simulator.Simulator`
drives them period by period, its shards held by a backend
(:mod:`~tenure.engine.shards` in this process, :mod:`~tenure.engine.cluster`
on Dask workers); :mod:`~tenure.engine.tables` builds the end-of-run tables.
"""

from tenure._numba_cache import configure_cache

CACHE_DIR = configure_cache()
