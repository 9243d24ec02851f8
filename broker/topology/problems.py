"""Problems found in a topology, each pointing at a file, a line and a key path.

A topology is checked as a whole and every problem is reported at once: a
user fixing a file wants the full list, not one error per run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: `file:line: key.path: message` (`file: key.path: message` when no line is known).

    The line is None for a document that did not come from text (a dict
    handed to `validate_definitions`); the key path still says where.
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class TopologyError(ValueError):
    """A topology with problems; `str()` lists them, one a line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
