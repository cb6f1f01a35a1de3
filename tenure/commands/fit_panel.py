"""Sub-commands of `tenure fit` (registered on fit_app)."""

from __future__ import annotations

from tenure.commands.fit import fit_app  # noqa: F401
