"""The store's timeouts reach the real server (docs/configuration.md, ``store.*Timeout``).

``statementTimeout`` and ``idleInTransactionTimeout`` are sent in the startup
packet and are in force on every session; 0 sends nothing, so the server's
own settings apply (behind PgBouncer, which refuses startup options). The
agent's config keys map onto the engine's arguments one to one.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.store.engine import Timeouts, create_store_engine

pytestmark = pytest.mark.postgres


def settings(url: str, t: Timeouts) -> tuple[str, str, str]:
    eng = create_store_engine(url, timeouts=t)
    try:
        with eng.connect() as c:
            return (
                c.execute(sa.text("SHOW statement_timeout")).scalar_one(),
                c.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar_one(),
                c.execute(
                    sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
                ).scalar_one(),
            )
    finally:
        eng.dispose()


def test_timeouts_are_in_force_on_the_server(pg_url: str) -> None:
    assert settings(pg_url, Timeouts(statement=2.5, idle_in_transaction=7)) == (
        "2500ms",
        "7s",
        "stellaops-runtime",
    )


def test_zero_leaves_the_server_setting(pg_url: str) -> None:
    t = Timeouts(statement=0, idle_in_transaction=0)
    assert "options" not in t.postgres_connect_args()
    assert settings(pg_url, t)[:2] == ("0", "0")


def test_a_statement_past_the_timeout_is_cancelled(pg_url: str) -> None:
    eng = create_store_engine(pg_url, timeouts=Timeouts(statement=1))
    try:
        with eng.connect() as c, pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            c.execute(sa.text("SELECT pg_sleep(5)"))
    finally:
        eng.dispose()


def test_config_keys_map_to_the_engine_arguments() -> None:
    cfg = parse_config(
        {
            "store": {
                "connectTimeout": "4s",
                "statementTimeout": "1m",
                "idleInTransactionTimeout": 0,
                "tcpKeepalive": "9s",
                "flushTimeout": "45s",
                "spoolPath": "/var/lib/stellaops-runtime/spool/hot-symbols.spool",
            },
            "shutdown": {"graceSeconds": "25s"},
        }
    )
    st = cfg.store
    t = Timeouts(
        connect=st.connect_timeout,
        statement=st.statement_timeout,
        idle_in_transaction=st.idle_in_transaction_timeout,
        keepalive=st.tcp_keepalive,
    )
    args = t.postgres_connect_args()
    assert args["connect_timeout"] == 4 and args["keepalives_idle"] == 9 and args["tcp_user_timeout"] == 9000
    assert args["options"] == "-c statement_timeout=60000"
    assert (st.flush_timeout, cfg.shutdown.grace_seconds) == (45.0, 25.0)
