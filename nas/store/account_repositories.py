"""API keys and uploaded datasets: what belongs to whom."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from nas.store.errors import DatasetNotFoundError
from nas.store.models import ApiKey, Dataset

TOKEN_PREFIX = "hwnas"


@dataclass(frozen=True)
class KeyIdentity:
    """Who a request is: the key's public id (the `owner` of what it creates) and whether it is admin."""

    key_id: str
    name: str
    admin: bool

    def may_see(self, owner: str | None) -> bool:
        return self.admin or owner == self.key_id


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """`hwnas_<key_id>_<secret>` -> (key_id, secret); None when it is not shaped like a token."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class ApiKeyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str, admin: bool = False) -> tuple[KeyIdentity, str]:
        """A new key; returns its identity and the token, which is shown once and never stored."""
        if not name.strip() or len(name) > 100:
            raise ValueError("a key's name must be 1-100 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self.session.add(ApiKey(key_id=key_id, name=name.strip(), secret_sha256=_digest(secret), admin=admin))
        self.session.flush()
        return KeyIdentity(key_id, name.strip(), admin), f"{TOKEN_PREFIX}_{key_id}_{secret}"

    def authenticate(self, token: str) -> KeyIdentity | None:
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        row = self.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
            return None
        return KeyIdentity(row.key_id, row.name, row.admin)

    def list(self) -> list[KeyIdentity]:
        rows = self.session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id))
        return [KeyIdentity(r.key_id, r.name, r.admin) for r in rows]

    def revoke(self, key_id: str) -> bool:
        row = self.session.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        return True


class DatasetRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, **values: object) -> Dataset:
        row = Dataset(**values)
        self.session.add(row)
        self.session.flush()
        return row

    def get(self, public_id: str) -> Dataset | None:
        return self.session.scalar(select(Dataset).where(Dataset.public_id == public_id))

    def require(self, public_id: str, viewer: KeyIdentity | None = None) -> Dataset:
        """The dataset, if it exists and `viewer` (when given) may see it; else DatasetNotFoundError."""
        row = self.get(public_id)
        if row is None or (viewer is not None and not viewer.may_see(row.owner)):
            raise DatasetNotFoundError(public_id)
        return row

    def list(self, owner: str | None = None, limit: int = 50, offset: int = 0) -> list[Dataset]:
        statement = select(Dataset).order_by(Dataset.id.desc()).limit(limit).offset(offset)
        if owner is not None:
            statement = statement.where(Dataset.owner == owner)
        return list(self.session.scalars(statement))

    def count(self, owner: str | None = None) -> int:
        from sqlalchemy import func

        statement = select(func.count()).select_from(Dataset)
        if owner is not None:
            statement = statement.where(Dataset.owner == owner)
        return int(self.session.scalar(statement) or 0)
