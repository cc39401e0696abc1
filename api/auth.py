"""Bearer-token authentication: `Authorization: Bearer hwnas_<key_id>_<secret>`.

Keys are stored hashed (`nas.store.account_repositories`). A request without a valid key gets 401
with `WWW-Authenticate: Bearer`; resources of another key read as 404 (their existence is not leaked).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import Problem
from nas.store import ApiKeyRepository, KeyIdentity, session_scope

bearer = HTTPBearer(auto_error=False, description="an API key from `hwnas key create`")


def current_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> KeyIdentity:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "an API key is required: send 'Authorization: Bearer <key>'", field="Authorization",
                      headers=challenge)  # fmt: skip
    with session_scope(request.app.state.sessions) as session:
        identity = ApiKeyRepository(session).authenticate(credentials.credentials)
    if identity is None:
        raise Problem(401, "the API key is not valid (unknown, malformed or revoked)", field="Authorization",
                      headers=challenge)  # fmt: skip
    return identity


def admin_key(identity: Annotated[KeyIdentity, Depends(current_key)]) -> KeyIdentity:
    if not identity.admin:
        raise Problem(403, "this needs an admin key (hwnas key create --admin)", field="Authorization")
    return identity


Key = Annotated[KeyIdentity, Depends(current_key)]
AdminKey = Annotated[KeyIdentity, Depends(admin_key)]


def owner_filter(identity: KeyIdentity) -> str | None:
    """The `owner` to filter lists by: None (everything) for admins, else the key's own id."""
    return None if identity.admin else identity.key_id
