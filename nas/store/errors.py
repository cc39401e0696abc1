"""Failures the store reports in the service's own terms.

Callers (the API, the CLI, the worker) catch these instead of SQLAlchemy exceptions, so a duplicate
name or a missing device reads the same whichever database is underneath.
"""


class StoreError(Exception):
    """Base class for every error the store raises on purpose."""


class DeviceExistsError(StoreError):
    """Raised when adding a device whose name is already taken (names are the user-facing key)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a device named {name!r} already exists; pick another name or reuse that device")


class DeviceNotFoundError(StoreError):
    """Raised when a device is required by name (or id) and no such device is stored."""

    def __init__(self, name: str | int) -> None:
        self.name = name
        what = f"with id {name}" if isinstance(name, int) else f"named {name!r}"
        super().__init__(f"no device {what} is stored; add it first (hwnas device add)")
