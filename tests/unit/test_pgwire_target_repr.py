"""pgwire's resolved settings keep the password out of their text (review RW, session 50)."""

from __future__ import annotations

from stellaops_runtime.pgwire.params import resolve


def test_the_resolved_target_does_not_show_its_password() -> None:
    """A Target in a log line, an assertion message or a traceback's locals must not carry the
    store's password (the password itself is still there for authentication)."""
    t = resolve({"host": "db", "user": "u", "password": "s3cret-pw", "sslmode": "disable"}, {})
    assert "s3cret-pw" not in repr(t) and "s3cret-pw" not in str(t)
    assert t.password == "s3cret-pw"
