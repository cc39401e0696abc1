"""Whether the store answers, and what the search queue holds (the service's health check)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from nas.store import SearchRepository, session_scope


def queued_searches(sessions: sessionmaker[Session]) -> int:
    """Searches waiting for a worker; raises whatever the database raises when it does not answer."""
    with session_scope(sessions) as session:
        session.execute(text("SELECT 1"))
        return SearchRepository(session).queue_length()
