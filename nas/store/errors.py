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


class SearchNotFoundError(StoreError):
    """Raised when a search is required by its public id and no such search is stored."""

    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        super().__init__(f"no search with id {public_id!r} is stored")


class SearchStateError(StoreError):
    """Raised when a search is asked to do what its status does not allow (the API answers 409).

    For example cancelling a search that already finished, or deleting one a worker is running.
    """

    def __init__(self, public_id: str, status: str, action: str) -> None:
        self.public_id = public_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} search {public_id!r}: it is {status}")


class ArchitectureNotFoundError(StoreError):
    """Raised when an architecture is required by its public id and no such architecture is stored."""

    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        super().__init__(f"no architecture with id {public_id!r} is stored")


class DatasetNotFoundError(StoreError):
    """Raised when an uploaded dataset is required by its public id and none is stored (or visible)."""

    def __init__(self, public_id: str) -> None:
        self.public_id = public_id
        super().__init__(f"no dataset with id {public_id!r} is stored")


class DeviceAccessError(StoreError):
    """Raised when a key may see a device but not change it: its LUT, measurements and calibration are
    written by the key that registered it (its owner) or an admin."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"device {name!r} belongs to another API key: only its owner or an admin may change its lookup "
            "table, measurements or calibration (you may read it and search on it)"
        )
