"""Fixtures the e2e tests share: a TCP proxy in front of the session's PostgreSQL.

``proxy`` (function) is a tests/pgproxy.py PgProxy to the ``pg`` server of tests/conftest.py:
an agent given its address can be cut off, black-holed or have its COMMIT acknowledgements
dropped. Six e2e modules each defined this fixture word for word.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg import PgServer
from pgproxy import PgProxy


@pytest.fixture
def proxy(pg: PgServer) -> Iterator[PgProxy]:
    p = PgProxy("127.0.0.1", pg.port)
    yield p
    p.close()
