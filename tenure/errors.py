"""One error type for bad input, so the CLI can turn it into a one-line message and exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: a file, key, column or value that cannot be used.

    The message is one line and names the offending file, key or column. The CLI
    prints it and exits with code 2; library users get an ordinary ``ValueError``.
    """

    exit_code = 2
