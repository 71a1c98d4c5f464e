"""Errors a user can fix, and how they are reported.

Anything the user hands lmforge (a data file, a recipe, a checkpoint, a command-line value)
can be wrong. Such a problem raises `InputError`, which carries where it was found (file,
line, field) so that the command line can print one clear sentence and exit with status 2,
without a traceback. Bugs in lmforge itself stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input from the user: names the file, the line and the field when they are known."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"field '{self.field}': " if self.field is not None else ""
        return f"{where}{field}{self.message}"


class ConfigError(InputError):
    """A recipe or a command-line override that does not fit the stage's config."""
