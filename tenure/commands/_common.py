"""What every command shares: turning bad input into one line and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from tenure.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr and return the ``typer.Exit(2)`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code=InputError.exit_code)


def cli_errors(fn: F) -> F:
    """Decorate a command so that :class:`InputError` ends it with one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise fail(str(exc).replace("[", "\\[")) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: nothing was written for unfinished outputs")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
