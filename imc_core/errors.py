"""Error types shared by every module of :mod:`imc_core`.

Bad input must produce one readable line that names the file, the row (when there is one) and the problem, so
that the CLI can print it and exit non-zero and the dashboard can show it without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class ImcError(Exception):
    """Base class of every error :mod:`imc_core` raises on purpose."""


class InputError(ImcError, ValueError):
    """Bad user input (a CSV, an image, a config value).

    Args:
        path: the offending file (or ``None`` when the input did not come from a file).
        problem: what is wrong, one sentence, no trailing period needed.
        row: 1-based line number in the file (the header is line 1), when the problem is in one row.

    ``str(err)`` is ``"{path}:{row}: {problem}"`` (parts that are missing are left out).
    """

    def __init__(self, path: str | Path | None, problem: str, row: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.row = row
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.row is not None:
            where = f"{where}:{self.row}"
        return f"{where}: {self.problem}"


class WeightsError(ImcError, FileNotFoundError):
    """A model's weights are not available locally; the message says how to fetch them."""


class ConfigError(ImcError, ValueError):
    """Unknown config key, bad value type or unknown variant."""


class Cancelled(ImcError):
    """A run was cancelled by the user (progress callback or cancel file)."""


class RunFolderRemoved(ImcError):
    """A run's folder was removed while the run went on (``runs rm --force``, or by hand): the run stops rather
    than make the folder again and finish there as a run without its config."""
