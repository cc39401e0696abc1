"""Refusals of the service floor: typed, each naming the input at fault.

A service raises one of these instead of a bare message, so no caller recovers the field from the text.
`field` is the input's name as the caller spelled it (a query parameter, a JSON path such as
`measurements.3.arch_hash`, or the upload itself); `details` are further facts worth returning (the
problems of a results file, a job's status now). The API maps each class to one status code
(`api.service_errors`); the CLI prints the message.
"""

from __future__ import annotations

from typing import Any


class ServiceError(ValueError):
    """A request the service refuses; nothing was stored. (A `ValueError`, so a CLI prints it as a bad value.)"""

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details


class InvalidInput(ServiceError):
    """The input is readable but not acceptable (a bad key, a measurement of another thread count)."""


class UnreadableInput(ServiceError):
    """The input cannot be read at all (not JSON)."""


class NotFound(ServiceError):
    """The input names something that does not exist (or that the caller may not see)."""


class WrongState(ServiceError):
    """The stored state does not allow it now: nothing left to measure, no measurements yet, a job answered."""
