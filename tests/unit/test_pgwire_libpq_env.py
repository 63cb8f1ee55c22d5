"""Every environment variable libpq reads is either followed by pgwire as libpq follows it, or named
by ``pgwire.unsupported`` (the agent's store then opens its connections with psycopg, store/pg_connect.py).

A variable pgwire ignored without a word made the agent's session differ from the one libpq would
have opened for the same node (its time zone, its date style, SNI sent, the protocol versions it
accepts). libpq's own table is asked (``PQconndefaults`` through the installed psycopg), so a libpq
that learns a new variable fails this test until pgwire follows or names it.
"""

from __future__ import annotations

import psycopg

from stellaops_runtime import pgwire
from stellaops_runtime.pgwire.params import KEYWORDS

BASE = {"host": "db.example", "dbname": "stella", "user": "agent"}

# Read by libpq outside its keyword table (docs: libpq "Environment Variables"): the session defaults
# it puts in the startup packet, and the directory of the service file.
SESSION_AND_SERVICE = ("PGDATESTYLE", "PGTZ", "PGGEQO", "PGSYSCONFDIR")


def libpq_envvars() -> dict[str, str]:
    """libpq's keyword -> its environment variable, from the installed libpq's own table."""
    out = {}
    for o in psycopg.pq.Conninfo.get_defaults():
        if o.envvar:
            out[o.keyword.decode()] = o.envvar.decode()
    return out


def test_pgwire_reads_a_variable_only_where_libpq_reads_it_for_the_same_keyword() -> None:
    libpq = libpq_envvars()
    for key, name in KEYWORDS.items():
        assert name == libpq.get(key), (key, name, libpq.get(key))


def test_every_other_libpq_variable_set_to_a_value_of_its_own_is_named() -> None:
    followed = {v for v in KEYWORDS.values() if v}
    others = [n for n in libpq_envvars().values() if n not in followed] + list(SESSION_AND_SERVICE)
    assert "PGTZ" in others and "PGSSLSNI" in others
    for name in others:
        said = pgwire.unsupported(BASE, {name: "9"})
        assert said is not None and name in said, (name, said)


def test_a_variable_at_libpqs_own_default_keeps_pgwire() -> None:
    # libpq's defaults for these, which is what pgwire does: no reason to pay for psycopg.
    for name, value in (("PGSSLSNI", "1"), ("PGSSLCOMPRESSION", "0"), ("PGGSSENCMODE", "disable")):
        assert pgwire.unsupported(BASE, {name: value}) is None, name
