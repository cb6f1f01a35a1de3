"""A fit's draws and attributes in ArviZ's layout, without importing ArviZ.

Importing ArviZ costs about 4 s on this kind of machine (its plotting modules pull in
matplotlib backends, ``scipy.stats`` and compile a Numba ufunc at every import), which is
most of a MAP fit's time end to end. The closed-form MAP route and every reader of a saved
fit (the report, ``predict``, ``evaluate``) need only the groups as xarray Datasets and the
attributes, so they use :class:`PosteriorData`; ``FitResult.idata`` turns it into a real
``arviz.InferenceData`` (sharing the Datasets and the attributes) for ArviZ's functions.

The NetCDF file it writes is the one ArviZ writes: the attributes on the root group, one
netCDF group per InferenceData group, zlib compression of numeric variables; so
``arviz.from_netcdf`` reads it and :meth:`PosteriorData.from_netcdf` reads ArviZ's files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import arviz as az
    import xarray as xr

#: ArviZ's order of the InferenceData groups (``arviz.data.inference_data.SUPPORTED_GROUPS``).
GROUP_ORDER = ("posterior", "posterior_predictive", "predictions", "log_likelihood", "sample_stats",
               "prior", "prior_predictive", "sample_stats_prior", "observed_data", "constant_data",
               "predictions_constant_data", "unconstrained_posterior")


class PosteriorData:
    """Groups (xarray Datasets) by name and a dict of attributes, read like ``az.InferenceData``.

    Supports what tenure uses of an InferenceData: a group as an attribute (``.posterior``),
    ``groups()``, ``get()``, ``in``, ``add_groups()``, ``attrs``, ``to_netcdf()`` and
    :meth:`to_arviz`.
    """

    def __init__(self, attrs: Mapping[str, Any] | None = None, **groups: xr.Dataset) -> None:
        self.attrs: dict[str, Any] = dict(attrs or {})
        self._groups: dict[str, xr.Dataset] = {}
        self.add_groups(**groups)

    @classmethod
    def from_dict(cls, posterior: Mapping[str, np.ndarray], *, coords: Mapping[str, Sequence[Any]] | None = None,
                  dims: Mapping[str, Sequence[str]] | None = None) -> PosteriorData:
        """A posterior from ``(chain, draw, ...)`` arrays, as ``az.from_dict(posterior=...)`` builds it.

        Entries without named dimensions get ArviZ's default names ``<name>_dim_<i>``.
        """
        import xarray as xr

        coords, dims = dict(coords or {}), dict(dims or {})
        variables = {}
        for name, values in posterior.items():
            values = np.asarray(values)
            extra = list(dims.get(name, [])) + [f"{name}_dim_{i}" for i in range(len(dims.get(name, [])),
                                                                                  values.ndim - 2)]
            variables[name] = xr.DataArray(values, dims=("chain", "draw", *extra),
                                           coords={d: coords.get(d, np.arange(values.shape[2 + i]))
                                                   for i, d in enumerate(extra)})
        first = np.asarray(next(iter(posterior.values()))) if posterior else np.empty((0, 0))
        ds = xr.Dataset(variables, coords={"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1])})
        return cls(posterior=ds)

    @classmethod
    def from_netcdf(cls, path: str, engine: str = "h5netcdf") -> PosteriorData:
        """Read a file written by :meth:`to_netcdf` or by ``az.InferenceData.to_netcdf``, into memory."""
        import h5netcdf
        import xarray as xr

        with h5netcdf.File(path, mode="r") as handle:
            names = list(handle.groups)
        groups = {}
        for name in names:
            with xr.open_dataset(path, group=name, engine=engine) as ds:
                groups[name] = ds.load()
        with xr.open_dataset(path, engine=engine) as root:
            attrs = dict(root.attrs)
        return cls(attrs=attrs, **groups)

    @classmethod
    def from_arviz(cls, idata: az.InferenceData) -> PosteriorData:
        """The same groups (not copied) and the same attributes dict."""
        out = cls(**{g: getattr(idata, g) for g in idata.groups()})
        out.attrs = idata.attrs
        return out

    def to_arviz(self) -> az.InferenceData:
        """An ``arviz.InferenceData`` sharing this object's Datasets and attributes dict."""
        import arviz as az

        idata = az.InferenceData(**self._groups)
        idata.attrs.update(self.attrs)
        self.attrs = idata.attrs  # one dict from now on: a change through either object shows in both
        return idata

    def groups(self) -> list[str]:
        """Group names, in ArviZ's order."""
        return list(self._groups)

    def add_groups(self, **groups: xr.Dataset | Mapping[str, Any]) -> None:
        """Add (or replace) groups; a mapping of arrays becomes a Dataset with ``chain`` and ``draw`` first."""
        import xarray as xr

        for name, value in groups.items():
            self._groups[name] = value if isinstance(value, xr.Dataset) else xr.Dataset(
                {k: (v if isinstance(v, xr.DataArray) else xr.DataArray(np.asarray(v))) for k, v in value.items()})
        self._groups = {g: self._groups[g] for g in sorted(self._groups, key=_group_rank)}

    def get(self, name: str, default: Any = None) -> Any:
        """The group ``name``, or ``default``."""
        return self._groups.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._groups

    def __getattr__(self, name: str) -> xr.Dataset:
        groups = self.__dict__.get("_groups", {})
        if name in groups:
            return groups[name]
        raise AttributeError(f"{type(self).__name__} has no group {name!r}; it has {', '.join(groups) or 'none'}")

    def to_netcdf(self, path: str, engine: str = "h5netcdf") -> str:
        """Write the attributes and every group to ``path`` as ArviZ does (zlib on numeric variables)."""
        import xarray as xr

        mode = "w"
        if self.attrs:
            xr.Dataset(attrs=self.attrs).to_netcdf(path, mode=mode, engine=engine)
            mode = "a"
        for name, ds in self._groups.items():
            encoding = {k: {"zlib": True} for k, v in ds.variables.items()
                        if np.issubdtype(v.dtype, np.number) or v.dtype == bool}
            ds.to_netcdf(path, mode=mode, group=name, engine=engine, encoding=encoding)
            mode = "a"
        return path

    def __repr__(self) -> str:
        return "PosteriorData with groups: " + ", ".join(self._groups)


def _group_rank(name: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(name), "") if name in GROUP_ORDER else (len(GROUP_ORDER), name)
