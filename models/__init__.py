"""Bayesian models of customer relationships (imported as ``tenure.models``).

Every family has one shape (see :mod:`tenure.models.base`), like scikit-learn's estimators:

>>> from tenure.models import BGNBDModel, load  # doctest: +SKIP
>>> result = BGNBDModel(summary, time_unit="weeks").fit(method="map")  # doctest: +SKIP
>>> result.summary()  # doctest: +SKIP
>>> result.save("fit/posterior.nc")  # doctest: +SKIP
>>> load("fit").model_name  # doctest: +SKIP
'bgnbd'

``Model(data, priors=..., **options)`` takes the family's tidy data (a panel frame, an RFM
summary, a cohort table) and compresses it; ``fit(method=...)`` returns a
:class:`~tenure.models.base.FitResult`. The classes are imported on first use, so that
``import tenure.models`` does not import PyMC.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tenure._numba_cache import configure_cache

# Numba fixes a kernel's cache folder when its decorator runs; Python runs this file before any module of
# the package, so every models kernel is cached in the folder keyed by the kernel sources.
CACHE_DIR = configure_cache()

# PyTensor's BLAS warning is filtered in tenure/__init__.py, which runs before this package; models/base.py
# filters it again around every fit (BLAS_WARNING) for callers, such as test runners, that reset the filters.

#: Every model family by the name of its ``tenure fit`` command (and of ``tenure_model`` in a saved fit).
MODELS: dict[str, str] = {
    "retention": "tenure.models.retention:RetentionModel",
    "cross-sell": "tenure.models.cross_sell:CrossSellModel",
    "joint": "tenure.models.joint:JointModel",
    "nps": "tenure.models.nps:NPSModel",
    "trim": "tenure.models.trim:TrimModel",
    "sbg": "tenure.models.sbg:SBGModel",
    "bgnbd": "tenure.models.bgnbd:BGNBDModel",
    "pnbd": "tenure.models.pnbd:ParetoNBDModel",
    "mbgnbd": "tenure.models.mbgnbd:MBGNBDModel",
    "gamma-gamma": "tenure.models.gamma_gamma:GammaGammaModel",
    "bgbb": "tenure.models.bgbb:BGBBModel",
}
_CLASSES = {target.split(":")[1]: target for target in MODELS.values()}
_LEGACY_NAMES = {"cross_sell": "cross-sell"}

__all__ = ["MODELS", "FitResult", "load", "model_class", *_CLASSES]


def model_class(name: str) -> type:
    """The class of the family called ``name`` in :data:`MODELS`."""
    from tenure.errors import InputError

    name = _LEGACY_NAMES.get(name, name)
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load(path: str | Path) -> Any:
    """Read a saved fit (``posterior.nc`` or a fit folder) back as a :class:`~tenure.models.base.FitResult`.

    The result knows its model name, method, configuration (priors, options, fit
    settings), time unit and posterior; an unknown model name is an ``InputError``, and
    so is a folder whose ``manifest.json`` (written by `tenure fit`) does not match its
    files (:func:`tenure.io.verify_manifest`: a run stopped part-way, or an edited file).
    """
    from tenure.models.base import load_result

    from tenure.errors import InputError
    from tenure.io import verify_manifest

    if Path(path).is_dir():
        verify_manifest(path, required=False)  # a folder written by `tenure fit`: whole and unchanged
    result = load_result(path)
    name = _LEGACY_NAMES.get(result.model_name, result.model_name)
    if name not in MODELS:
        raise InputError(f"{path}: a fit of unknown model {result.model_name!r}; known: {', '.join(MODELS)}")
    result.attrs["tenure_model"] = name
    return result


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        module, cls = _CLASSES[name].split(":")
        return getattr(importlib.import_module(module), cls)
    if name == "FitResult":
        from tenure.models.base import FitResult

        return FitResult
    raise AttributeError(f"module 'tenure.models' has no attribute {name!r}")
