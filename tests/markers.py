"""Marks shared across test modules.

`SQLITE_ONLY`: a test that takes the `db_url` fixture (directly or through `session_factory`,
`live_server`, `search_server`) runs on SQLite and PostgreSQL by default. Slow end-to-end tests whose
database work another PostgreSQL test already covers run on SQLite only, to keep CI short; the test
says which PostgreSQL test covers it.
"""

import pytest

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
