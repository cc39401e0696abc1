"""Trained supernets by key: what a `supernet` search looks up before it trains one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nas.store.models import Supernet


def _now() -> datetime:
    return datetime.now(UTC)


class SupernetRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str) -> Supernet | None:
        return self._session.scalars(
            select(Supernet).where(Supernet.key == key).execution_options(populate_existing=True)
        ).one_or_none()

    def start(self, key: str, *, dataset: str, space: str, train_resolution: int, recipe: dict[str, Any]) -> Supernet:
        """The row for `key`, (re)set to `training`: a new one, or one whose file was missing or corrupt."""
        row = self.get(key)
        if row is None:
            row = Supernet(key=key, dataset=dataset[:200], space=space, train_resolution=train_resolution)
            self._session.add(row)
        row.recipe = dict(recipe)
        row.status = "training"
        row.path = None
        row.train_seconds = None
        row.metrics = {}
        row.updated_at = _now()
        self._session.flush()
        return row

    def finish(self, key: str, *, path: str, train_seconds: float, metrics: dict[str, Any]) -> Supernet:
        row = self._require(key)
        row.status, row.path, row.train_seconds, row.metrics = "ready", path, train_seconds, dict(metrics)
        row.updated_at = _now()
        self._session.flush()
        return row

    def fail(self, key: str, reason: str) -> None:
        row = self.get(key)
        if row is not None:
            row.status, row.metrics, row.updated_at = "failed", {"error": reason[:2000]}, _now()
            self._session.flush()

    def list(self, limit: int = 50) -> list[Supernet]:
        return list(self._session.scalars(select(Supernet).order_by(Supernet.id.desc()).limit(limit)))

    def _require(self, key: str) -> Supernet:
        row = self.get(key)
        if row is None:
            raise LookupError(f"no supernet with key {key!r}")
        return row
