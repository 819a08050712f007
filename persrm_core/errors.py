"""The one error type users see: a bad input, named by file and record."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input. Its message is one line: `FILE[:RECORD]: problem`."""

    def __init__(self, path: str | Path, problem: str, record: str | int | None = None):
        self.path = str(path)
        self.record = record
        self.problem = problem
        where = self.path if record is None else f"{self.path}:{record}"
        super().__init__(f"{where}: {problem}")
