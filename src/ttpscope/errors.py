"""Errors that reach the user as one clear line: which file, which record, what was wrong."""

from __future__ import annotations


class TtpscopeError(Exception):
    """Base of every error ttpscope reports to the user instead of a traceback."""

    exit_code = 2


class InputError(TtpscopeError):
    """Bad input: names the source (file, URL), the record (line, object id) and the problem."""

    def __init__(self, source: str, record: str | int | None, problem: str):
        self.source = str(source)
        self.record = record
        self.problem = problem
        where = self.source if record is None else f"{self.source} [{record}]"
        super().__init__(f"{where}: {problem}")


class NotFoundError(TtpscopeError):
    """A lookup (technique, group, case...) that matched nothing."""


class OfflineError(TtpscopeError):
    """A download that could not reach its server."""


class WriteError(TtpscopeError):
    """A file or the workspace could not be written (a full disk, no permission); nothing half-written is left."""
