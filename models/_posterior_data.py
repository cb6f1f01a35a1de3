"""A fit's draws and attributes in ArviZ's layout, without importing ArviZ or, until asked, xarray.

Importing ArviZ costs about 4 s on this kind of machine (its plotting modules pull in
matplotlib backends, ``scipy.stats`` and compile a Numba ufunc at every import), and xarray
about 1 s of CPU (pandas), plus another second where dask is installed (xarray imports
``dask.array`` when it builds its first DataArray and ``distributed`` when it writes NetCDF):
together most of a MAP fit's time end to end. The closed-form MAP route and every reader of a
saved fit (the report, ``predict``, ``evaluate``) need only arrays with their dimension names,
coordinates and the attributes, so a group is held as a :class:`Group` of NumPy arrays and
becomes an xarray Dataset only when code asks for one (``data.posterior``, ``FitResult.posterior``,
``FitResult.idata``); :func:`group_arrays` reads a group either way without building one.

The NetCDF file it writes is the one ArviZ writes: the attributes on the root group, one
netCDF-4 group per InferenceData group with its dimensions, coordinate variables and data
variables, booleans as int8 marked ``dtype: bool`` as xarray marks them; deflate (level 1, after
the byte shuffle) on integer and boolean variables, none on floating-point ones (draws do not
compress: ArviZ's deflate saved 5-25 % for 0.7-1.5 s of every MCMC fit); so ``arviz.from_netcdf``
and ``xarray.open_dataset`` read it, and :meth:`PosteriorData.from_netcdf` reads theirs (tested both
ways). Groups that were built as Datasets (the PyMC route's) are written by xarray itself.
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


class Group:
    """One group's variables as NumPy arrays: ``variables[name] = (dims, values)``, ``coords[dim] = labels``.

    What tenure reads of a group, without xarray: :attr:`sizes`, ``name in group``, :meth:`draws`
    and :meth:`labels`; :meth:`to_dataset` and :meth:`from_dataset` convert.
    """

    __slots__ = ("attrs", "coords", "variables")

    def __init__(self, variables: Mapping[str, tuple[Sequence[str], np.ndarray]],
                 coords: Mapping[str, np.ndarray] | None = None, attrs: Mapping[str, Any] | None = None) -> None:
        self.variables = {k: (tuple(dims), np.asarray(v)) for k, (dims, v) in variables.items()}
        self.coords = {k: np.asarray(v) for k, v in (coords or {}).items()}
        self.attrs = dict(attrs or {})
        for name, (dims, values) in self.variables.items():
            if len(dims) != values.ndim:
                raise ValueError(f"{name}: {values.ndim}-dimensional values with dimensions {dims}")

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Group:
        """The arrays of ``ds`` (not copied), its index coordinates and its attributes."""
        return cls({k: (v.dims, v.values) for k, v in ds.data_vars.items()},
                   {k: ds[k].values for k in ds.dims if k in ds.coords}, ds.attrs)

    def to_dataset(self) -> xr.Dataset:
        """The same group as an xarray Dataset (imports xarray)."""
        import xarray as xr

        return xr.Dataset({k: (dims, v) for k, (dims, v) in self.variables.items()}, coords=self.coords,
                          attrs=self.attrs)

    @property
    def sizes(self) -> dict[str, int]:
        """Length of each dimension."""
        out: dict[str, int] = {k: len(v) for k, v in self.coords.items()}
        for dims, values in self.variables.values():
            out.update(zip(dims, values.shape, strict=True))
        return out

    def __contains__(self, name: object) -> bool:
        return name in self.variables

    def __iter__(self) -> Any:
        return iter(self.variables)

    def draws(self, name: str) -> tuple[tuple[str, ...], np.ndarray]:
        """The dimensions after ``chain`` and ``draw``, and the values with ``chain`` and ``draw`` first."""
        dims, values = self.variables[name]
        rest = tuple(d for d in dims if d not in ("chain", "draw"))
        order = [dims.index(d) for d in ("chain", "draw", *rest) if d in dims]
        return rest, values.transpose(order)

    def labels(self, dim: str) -> np.ndarray:
        """The coordinate of ``dim``, or 0, 1, ... where it has none."""
        return self.coords[dim] if dim in self.coords else np.arange(self.sizes[dim])


def group_arrays(idata: Any, name: str) -> Group:
    """Group ``name`` of a :class:`PosteriorData` or an ``arviz.InferenceData`` as arrays (no Dataset built)."""
    if isinstance(idata, PosteriorData):
        return idata.arrays(name)
    return Group.from_dataset(getattr(idata, name))


class PosteriorData:
    """Groups by name and a dict of attributes, read like ``az.InferenceData``.

    Supports what tenure uses of an InferenceData: a group as an attribute (``.posterior``, an
    xarray Dataset, built on first access from a :class:`Group`), ``groups()``, ``get()``, ``in``,
    ``add_groups()``, ``attrs``, ``to_netcdf()`` and :meth:`to_arviz`; and :meth:`arrays`, a
    group's arrays without xarray.
    """

    def __init__(self, attrs: Mapping[str, Any] | None = None, **groups: Any) -> None:
        self.attrs: dict[str, Any] = dict(attrs or {})
        self._groups: dict[str, Any] = {}  # a Group, or the xarray Dataset it became
        self.add_groups(**groups)

    @classmethod
    def from_dict(cls, posterior: Mapping[str, np.ndarray], *, coords: Mapping[str, Sequence[Any]] | None = None,
                  dims: Mapping[str, Sequence[str]] | None = None) -> PosteriorData:
        """A posterior from ``(chain, draw, ...)`` arrays, as ``az.from_dict(posterior=...)`` builds it.

        Entries without named dimensions get ArviZ's default names ``<name>_dim_<i>``.
        """
        coords, dims = dict(coords or {}), dict(dims or {})
        variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        labels: dict[str, np.ndarray] = {}
        for name, values in posterior.items():
            values = np.asarray(values)
            extra = list(dims.get(name, [])) + [f"{name}_dim_{i}" for i in range(len(dims.get(name, [])),
                                                                                  values.ndim - 2)]
            variables[name] = (("chain", "draw", *extra), values)
            for i, d in enumerate(extra):
                labels[d] = np.asarray(coords[d]) if d in coords else np.arange(values.shape[2 + i])
        first = np.asarray(next(iter(posterior.values()))) if posterior else np.empty((0, 0))
        return cls(posterior=Group(variables, {"chain": np.arange(first.shape[0]),
                                               "draw": np.arange(first.shape[1]), **labels}))

    @classmethod
    def from_netcdf(cls, path: str) -> PosteriorData:
        """Read a file written by :meth:`to_netcdf`, ``az.InferenceData.to_netcdf`` or xarray, into memory.

        Decodes what xarray's writer encodes in these files: booleans stored as int8 (``dtype: bool``),
        ``_FillValue`` as NaN, ``scale_factor``/``add_offset``, byte strings.
        """
        import h5netcdf

        with h5netcdf.File(path, mode="r") as handle:
            attrs = {k: _attr(v) for k, v in handle.attrs.items()}
            groups = {name: _read_group(group) for name, group in handle.groups.items()}
        return cls(attrs=attrs, **groups)

    @classmethod
    def from_arviz(cls, idata: az.InferenceData) -> PosteriorData:
        """The same groups as :class:`Group` arrays (not copied) and the same attributes dict.

        As Groups, tenure's readers use them without building Datasets again and :meth:`to_netcdf` writes
        them with h5netcdf alone (half the time of xarray's writer for an MCMC fit's draws).
        """
        out = cls(**{g: Group.from_dataset(getattr(idata, g)) for g in idata.groups()})
        out.attrs = idata.attrs
        return out

    def to_arviz(self) -> az.InferenceData:
        """An ``arviz.InferenceData`` sharing this object's Datasets and attributes dict."""
        import arviz as az

        idata = az.InferenceData(**{g: self._dataset(g) for g in self._groups})
        idata.attrs.update(self.attrs)
        self.attrs = idata.attrs  # one dict from now on: a change through either object shows in both
        return idata

    def groups(self) -> list[str]:
        """Group names, in ArviZ's order."""
        return list(self._groups)

    def add_groups(self, **groups: Any) -> None:
        """Add (or replace) groups: xarray Datasets or :class:`Group` objects."""
        for name, value in groups.items():
            if not isinstance(value, Group) and not hasattr(value, "data_vars"):
                raise TypeError(f"group {name!r}: a Group or an xarray Dataset, not {type(value).__name__}")
            self._groups[name] = value
        self._groups = {g: self._groups[g] for g in sorted(self._groups, key=_group_rank)}

    def arrays(self, name: str) -> Group:
        """Group ``name``'s arrays, dimensions and coordinates, without building an xarray Dataset."""
        value = self._groups[name]
        return value if isinstance(value, Group) else Group.from_dataset(value)

    def _dataset(self, name: str) -> xr.Dataset:
        value = self._groups[name]
        if isinstance(value, Group):  # from now on the Dataset, so that changes made to it are kept
            value = self._groups[name] = value.to_dataset()
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """The group ``name`` as an xarray Dataset, or ``default``."""
        return self._dataset(name) if name in self._groups else default

    def __contains__(self, name: object) -> bool:
        return name in self._groups

    def __getattr__(self, name: str) -> xr.Dataset:
        groups = self.__dict__.get("_groups", {})
        if name in groups:
            return self._dataset(name)
        raise AttributeError(f"{type(self).__name__} has no group {name!r}; it has {', '.join(groups) or 'none'}")

    def to_netcdf(self, path: str, engine: str = "h5netcdf") -> str:
        """Write the attributes and every group to ``path`` in ArviZ's layout (compression: module docstring).

        Where every group is still a :class:`Group` this writes with h5netcdf alone; a group that
        became a Dataset is written by xarray (with ``engine``), and then all are.
        """
        if all(isinstance(g, Group) for g in self._groups.values()):
            import h5netcdf

            with h5netcdf.File(path, mode="w") as handle:
                for key, value in self.attrs.items():
                    handle.attrs[key] = value
                for name, group in self._groups.items():
                    _write_group(handle.create_group(name), group)
            return path
        import xarray as xr

        mode = "w"
        if self.attrs:
            xr.Dataset(attrs=self.attrs).to_netcdf(path, mode=mode, engine=engine)
            mode = "a"
        for name in self._groups:
            ds = self._dataset(name)
            encoding = {k: {"zlib": True} for k, v in ds.variables.items()
                        if np.issubdtype(v.dtype, np.number) or v.dtype == bool}
            ds.to_netcdf(path, mode=mode, group=name, engine=engine, encoding=encoding)
            mode = "a"
        return path

    def __repr__(self) -> str:
        return "PosteriorData with groups: " + ", ".join(self._groups)


def _write_group(handle: Any, group: Group) -> None:
    """One netCDF-4 group as xarray's h5netcdf writer lays it out: dimensions, coordinates, variables."""
    for dim, size in group.sizes.items():
        handle.dimensions[dim] = size
    for dim, labels in group.coords.items():
        _write_variable(handle, dim, (dim,), labels)
    for name, (dims, values) in group.variables.items():
        _write_variable(handle, name, dims, values)
    for key, value in group.attrs.items():
        handle.attrs[key] = value


def _write_variable(handle: Any, name: str, dims: tuple[str, ...], values: np.ndarray) -> None:
    attrs = {}
    if values.dtype == bool:  # netCDF has no boolean type; xarray writes int8 and marks it
        values, attrs = values.astype(np.int8), {"dtype": "bool"}
    if values.dtype.kind in "UO":
        import h5py

        var = handle.create_variable(name, dims, dtype=h5py.string_dtype())
        var[...] = np.asarray(values, dtype=object)
    elif values.dtype.kind == "f":
        # Draws and log-likelihoods are noise to a compressor: deflate saved 5-25 % of an MCMC fit's pointwise
        # log-likelihood (4 × 1000 × 1016 doubles, 32 MB) and took 0.7-1.5 s of every fit; stored as they are,
        # 0.06 s. (ArviZ deflates them at level 4.)
        var = handle.create_variable(name, dims, data=values)
    else:
        # Counts, indices and flags compress well: deflate at level 1 after the byte shuffle (netCDF-4's
        # standard filters).
        var = handle.create_variable(name, dims, data=values, compression="gzip", compression_opts=1,
                                     shuffle=True)
    for key, value in attrs.items():
        var.attrs[key] = value


def _read_group(handle: Any) -> Group:
    dims = set(handle.dimensions)
    coords = {d: _decode(handle.variables[d]) for d in handle.dimensions if d in handle.variables}
    variables = {k: (v.dimensions, _decode(v)) for k, v in handle.variables.items() if k not in dims}
    return Group(variables, coords, {k: _attr(v) for k, v in handle.attrs.items()})


def _decode(var: Any) -> np.ndarray:
    """A variable's values as xarray's default decoding gives them."""
    values = np.asarray(var[...])
    attrs = var.attrs
    if values.dtype.kind == "O" or values.dtype.kind == "S":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values.ravel()],
                        dtype=object).reshape(values.shape)
    if attrs.get("dtype") == "bool":
        return values.astype(bool)
    fill = attrs.get("_FillValue")
    if fill is not None and not (np.issubdtype(np.asarray(fill).dtype, np.floating) and np.isnan(fill)):
        missing = values == fill
        if missing.any():
            values = np.where(missing, np.nan, values.astype(np.float64))
    if "scale_factor" in attrs or "add_offset" in attrs:
        values = values * attrs.get("scale_factor", 1.0) + attrs.get("add_offset", 0.0)
    return values


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _group_rank(name: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(name), "") if name in GROUP_ORDER else (len(GROUP_ORDER), name)
