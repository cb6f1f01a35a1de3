"""Checks of single values at the boundary: finite, in range, whole, a seed, a UTF-8 text file.

Each check raises :class:`~tenure.errors.InputError` with a one-line message
that starts with ``what`` (an option such as ``--discount-rate``, a key such as
``priors.r.alpha`` or a column), so the CLI can print it and exit with code 2.
They are the bottom vocabulary: every layer may use them, they import nothing
from the layers above.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tenure.errors import InputError

#: The largest seed: the engine keys its Philox generator with a signed 64-bit integer.
SEED_MAX = 2**63 - 1


def finite(value: Any, what: str) -> float:
    """``value`` as a finite float; booleans, text, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except OverflowError:
        raise InputError(f"{what}: {value} is too large") from None
    if not math.isfinite(out):
        raise InputError(f"{what}: expected a finite number, got {value!r}")
    return out


def in_range(value: Any, what: str, lo: float = -math.inf, hi: float = math.inf, *,
             open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (ends open where asked)."""
    v = finite(value, what)
    if v < lo or v > hi or (open_low and v == lo) or (open_high and v == hi):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise InputError(f"{what}: expected a value in {left}{lo:g}, {hi:g}{right}, got {v:g}")
    return v


def whole(value: Any, what: str, lo: int = 0, hi: int = SEED_MAX) -> int:
    """``value`` as an int in ``[lo, hi]`` (a float only when it is a whole number)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what}: expected a whole number, got {value!r}")
    if value < lo or value > hi:
        raise InputError(f"{what}: expected a whole number in [{lo}, {hi}], got {value}")
    return value


def seed(value: int | None, what: str = "--seed") -> int | None:
    """A seed in ``[0, 2**63 - 1]``, or ``None`` (the default seed)."""
    return None if value is None else whole(value, what, 0, SEED_MAX)


def discount_rate(value: Any, what: str = "--discount-rate") -> float:
    """A discount rate per period in (0, 10]: at 0 a long-lived customer's discounted lifetime is infinite."""
    return in_range(value, what, 0.0, 10.0, open_low=True)


def read_text(path: str | Path, what: str, kind: str = "TOML") -> str:
    """The text of a UTF-8 file; a missing file, a folder or other bytes give one line naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: file not found")
    if p.is_dir():
        raise InputError(f"{what}: is a folder, expected a {kind} file")
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what}: not a UTF-8 {kind} file") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot read: {exc.strerror or exc}") from None
