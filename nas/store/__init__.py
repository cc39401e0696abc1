"""The hwnas store: SQLAlchemy models, repositories and Alembic migrations.

The database is the single source of truth for devices and their measurements. Typical use::

    engine = make_engine()  # HWNAS_DATABASE_URL, or SQLite under ./.hwnas/
    upgrade_database(engine)
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        device = DeviceRepository(session).add("laptop", runtime_version="1.18.0", threads=2)
"""

from nas.store.db import (
    DATABASE_URL_ENV,
    alembic_config,
    database_revision,
    database_url,
    head_revision,
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)
from nas.store.errors import DeviceExistsError, DeviceNotFoundError, StoreError
from nas.store.models import (
    LUT_SOURCES,
    Base,
    Calibration,
    Device,
    E2EMeasurement,
    Kit,
    LutEntry,
    LutSource,
)
from nas.store.repositories import (
    CalibrationData,
    CalibrationRepository,
    DeviceRepository,
    E2EMeasurementData,
    KitRepository,
    LutEntryData,
    LutRepository,
    MeasurementRepository,
)

__all__ = [
    "DATABASE_URL_ENV",
    "LUT_SOURCES",
    "Base",
    "Calibration",
    "CalibrationData",
    "CalibrationRepository",
    "Device",
    "DeviceExistsError",
    "DeviceNotFoundError",
    "DeviceRepository",
    "E2EMeasurement",
    "E2EMeasurementData",
    "Kit",
    "KitRepository",
    "LutEntry",
    "LutEntryData",
    "LutRepository",
    "LutSource",
    "MeasurementRepository",
    "StoreError",
    "alembic_config",
    "database_revision",
    "database_url",
    "head_revision",
    "make_engine",
    "session_factory",
    "session_scope",
    "upgrade_database",
]
