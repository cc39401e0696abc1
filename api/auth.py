"""Bearer-token authentication: `Authorization: Bearer hwnas_<key_id>_<secret>`.

Keys are stored hashed (`nas.store.account_repositories`). A request without a valid key gets 401
with `WWW-Authenticate: Bearer`; resources of another key read as 404 (their existence is not leaked).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.problems import Problem
from nas.store import ApiKeyRepository, KeyIdentity, session_scope

bearer = HTTPBearer(auto_error=False, description="an API key from `hwnas key create`")


KEY_CACHE_TTL_S = 10.0
"""A valid key is remembered this long per process (one database read fewer per request); a revoked
key therefore stops working within this many seconds. Unknown or invalid keys are never cached."""


class KeyCache:
    def __init__(self, ttl_s: float = KEY_CACHE_TTL_S, max_entries: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, KeyIdentity]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself

    def get(self, token: str) -> KeyIdentity | None:
        digest = self._digest(token)
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._entries[digest]
                return None
            return hit[1]

    def put(self, token: str, identity: KeyIdentity) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._digest(token)] = (time.monotonic() + self.ttl_s, identity)


def _cache(request: Request) -> KeyCache:
    state = request.app.state
    if not hasattr(state, "key_cache"):
        state.key_cache = KeyCache()
    return state.key_cache


def _authenticate(sessions: sessionmaker[Session], token: str) -> KeyIdentity | None:
    with session_scope(sessions) as session:
        return ApiKeyRepository(session).authenticate(token)


async def current_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> KeyIdentity:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "an API key is required: send 'Authorization: Bearer <key>'", field="Authorization",
                      headers=challenge)  # fmt: skip
    cache: KeyCache = _cache(request)
    identity = cache.get(credentials.credentials)
    if identity is None:  # only a miss reads the database (in the thread pool); a hit costs no thread hop
        identity = await run_in_threadpool(_authenticate, request.app.state.sessions, credentials.credentials)
        if identity is not None:
            cache.put(credentials.credentials, identity)
    if identity is None:
        raise Problem(401, "the API key is not valid (unknown, malformed or revoked)", field="Authorization",
                      headers=challenge)  # fmt: skip
    return identity


async def admin_key(identity: Annotated[KeyIdentity, Depends(current_key)]) -> KeyIdentity:
    if not identity.admin:
        raise Problem(403, "this needs an admin key (hwnas key create --admin)", field="Authorization")
    return identity


Key = Annotated[KeyIdentity, Depends(current_key)]
AdminKey = Annotated[KeyIdentity, Depends(admin_key)]


def owner_filter(identity: KeyIdentity) -> str | None:
    """The `owner` to filter lists by: None (everything) for admins, else the key's own id."""
    return None if identity.admin else identity.key_id
