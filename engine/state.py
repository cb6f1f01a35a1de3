"""Customer state as structure-of-arrays, one :class:`Shard` per customer-id range.

A shard owns the customers whose ids the simulator assigned to it: a contiguous
slice of the initial base and, each period, a contiguous slice of the newly
acquired ids. Its arrays grow by amortised doubling-like steps (25 %), one
array at a time, so the peak memory of a growth is one array's worth; the
first allocation already leaves 25 % room for the acquisitions to come (pages
never written cost no memory).

Customers who are gone stay in the arrays (the end-of-run tables count them),
but in a block of rows at the front: once the gone rows among those stepped
pass :data:`COMPACT_ABOVE` of them, :func:`tenure.engine.kernels.compact` moves
them there, and later periods step only the rows after it.

Bytes per customer: 39 for the core state, plus 12 when per-customer summaries
are tracked and 4 when a panel sample is drawn.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from tenure.engine import kernels as K

CORE_FIELDS: dict[str, type] = {
    "ids": np.int64,
    "alive": np.uint8,
    "segment": np.uint8,
    "stage": np.uint8,
    "streak": np.uint8,
    "tenure": np.int16,
    "products": np.uint8,
    "satisfaction": np.float32,
    "trust": np.float32,
    "enthusiasm": np.float32,
    "value": np.float32,
    "base_logit": np.float32,
    "channel": np.uint8,
    "cohort": np.int16,
    "in_panel": np.uint8,
}
TRACK_FIELDS: dict[str, type] = {"revenue": np.int64, "purchases": np.int16, "last_purchase": np.int16}
PANEL_FIELDS: dict[str, type] = {"panel_slot": np.int32}
# Below these sizes a kernel call runs on one thread: waking Numba's thread pool costs more than the
# work, and much more on a busy machine (a 20k-customer, 36-month run took 0.17 s with the pool
# against 0.04 s on one thread at load 3). Both variants compute the same blocks, so results are
# identical either way.
SERIAL_STEP_BELOW = 65_536  # customers in the shard (~1 ms of work per month)
SERIAL_BIRTHS_BELOW = 16_384  # customers born in one call
# Compact once the gone rows exceed this share of the rows a period steps: a compaction is one pass over
# the alive flags plus a swap per gone row, a few per cent of a period's step.
COMPACT_ABOVE = 1 / 32
# Numba's default threading layer must not be entered by two threads at once: a calling thread takes this
# lock around every thread-pool kernel. The one-thread kernels need no lock (they release the GIL, so
# several runs' kernels compute at the same time on different threads).
KERNEL_LOCK = threading.Lock()
_LOCAL = threading.local()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run every kernel this thread calls on this thread, whatever the shard size (same results).

    :func:`tenure.engine.pool.map_runs` wraps each run in it: parallelism then comes from running
    several runs at once rather than from Numba's thread pool inside each.
    """
    before = getattr(_LOCAL, "serial", False)
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = before


def _serial() -> bool:
    return getattr(_LOCAL, "serial", False)


def _call(serial_kernel, pool_kernel, use_serial: bool, *args) -> None:
    if use_serial or _serial():
        serial_kernel(*args)
    else:
        with KERNEL_LOCK:
            pool_kernel(*args)
_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY = {name: np.zeros(0, dtype=dt) for name, dt in {**TRACK_FIELDS, **PANEL_FIELDS}.items()}


@dataclass
class Shard:
    """The customers of one id range and the arrays that hold them."""

    track: bool = False
    panel: bool = False
    capacity: int = 0
    n: int = 0
    gone: int = 0  # rows [0, gone) hold only customers who are gone; periods step rows [gone, n)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    panel_ids: np.ndarray = field(default_factory=lambda: _EMPTY_I64.copy())
    panel_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    panel_out: np.ndarray = field(default_factory=lambda: np.zeros((0, K.N_PANEL), dtype=np.int64))

    def __post_init__(self) -> None:
        fields = dict(CORE_FIELDS)
        if self.track:
            fields.update(TRACK_FIELDS)
        if self.panel:
            fields.update(PANEL_FIELDS)
        self.arrays = {name: np.zeros(self.capacity, dtype=dt) for name, dt in fields.items()}
        if self.panel:
            self.arrays["panel_slot"][:] = -1

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def nbytes(self) -> int:
        """Bytes held by the state arrays (capacity, not just used rows)."""
        return sum(a.nbytes for a in self.arrays.values()) + self.panel_out.nbytes

    def state(self, rows: int, start: int = 0) -> K.State:
        """The kernels' view of rows ``start`` to ``rows`` (empty arrays for what this shard does not keep)."""
        return K.State(**{name: self.arrays.get(name, _EMPTY.get(name))[start:rows] for name in K.State._fields})

    def reserve(self, needed: int) -> None:
        """Make room for ``needed`` customers in total, growing each array by at least 25 %."""
        if needed <= self.capacity:
            return
        new_cap = int(max(needed, self.capacity) * 1.25) + 1024
        for name in list(self.arrays):
            old = self.arrays[name]
            grown = np.zeros(new_cap, dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            if name == "panel_slot":
                grown[self.n :] = -1
            self.arrays[name] = grown
            del old
        self.capacity = new_cap

    def add(
        self,
        first_id: int,
        count: int,
        channel_bounds: np.ndarray,
        cohort: int,
        initial_base: bool,
        age_cdf: np.ndarray,
        g: np.ndarray,
        s: np.ndarray,
        key: tuple[int, int],
    ) -> None:
        """Create ``count`` customers with ids ``first_id .. first_id + count - 1``."""
        if count <= 0:
            return
        self.reserve(self.n + count)
        a = self.arrays
        inputs = K.BirthInputs(
            self.n, count, np.int64(first_id), channel_bounds, cohort, initial_base, age_cdf, g, s,
            np.uint32(key[0]), np.uint32(key[1]),
        )
        _call(K.birth_serial, K.birth, count < SERIAL_BIRTHS_BELOW, self.state(self.capacity), inputs)
        if self.panel:
            rows = np.flatnonzero(a["in_panel"][self.n : self.n + count]) + self.n
            first_slot = self.panel_ids.size
            a["panel_slot"][rows] = np.arange(first_slot, first_slot + rows.size, dtype=np.int32)
            self.panel_ids = np.concatenate([self.panel_ids, a["ids"][rows]])
            self.panel_segment = np.concatenate([self.panel_segment, a["segment"][rows]])
            self.panel_out = np.concatenate(
                [self.panel_out, np.zeros((rows.size, K.N_PANEL), dtype=np.int64)], axis=0
            )
        self.n += count

    def step(
        self, period: int, g: np.ndarray, s: np.ndarray, p: np.ndarray, ntab: np.ndarray, key: tuple[int, int]
    ) -> np.ndarray:
        """Advance every customer one period; return the aggregate vector (int64, length ``N_A``).

        Only rows ``gone`` on are stepped (the rows before hold gone customers, whom a step leaves
        unchanged); afterwards the gone rows among them are moved to the front once they pass
        :data:`COMPACT_ABOVE` of them. Both depend on this shard's state alone, so a replayed shard does
        the same, and neither changes a result.
        """
        rows = self.n - self.gone
        nblocks = max((rows + K.BLOCK - 1) // K.BLOCK, 1)
        out = np.zeros((nblocks, K.N_A), dtype=np.int64)
        if self.panel:
            self.panel_out[:, K.PC_ACTIVE] = 0
        inputs = K.StepInputs(self.panel_out, g, s, p, ntab, np.uint32(period), np.uint32(key[0]), np.uint32(key[1]))
        _call(K.step_serial, K.step, rows < SERIAL_STEP_BELOW, self.state(self.n, self.gone), inputs, out)
        agg = out.sum(axis=0)
        if rows - (agg[K.A_ACTIVE] - agg[K.A_CHURNED]) > COMPACT_ABOVE * rows:
            self.gone += int(K.compact(self.state(self.n, self.gone), 0))
        return agg

    def panel_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last period's panel rows: (customer ids, segments, the kernel's panel columns)."""
        active = self.panel_out[:, K.PC_ACTIVE] == 1
        return self.panel_ids[active], self.panel_segment[active], self.panel_out[active]

    def view(self, name: str) -> np.ndarray:
        """The used part of one state array."""
        return self.arrays[name][: self.n]
