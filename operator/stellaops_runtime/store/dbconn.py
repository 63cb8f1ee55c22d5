"""The agent's database connections: plain DB-API (sqlite3, pgwire or psycopg 3), no SQLAlchemy.

The agent only writes (and checks the schema version), and SQLAlchemy alone
costs it ~16 MB of memory (issue 13). :class:`Database` opens connections from
a store URL with the settings SQLAlchemy's engine used (PostgreSQL: libpq
keywords from the URL, then :class:`Timeouts`' connect arguments, opened with the agent's
own client, pgwire, or psycopg where pgwire does not speak them, store/pg_connect.py; SQLite: the
absolute file, the busy timeout, ``check_same_thread=False``, sqlite3's own
transaction handling), keeps a few idle ones, pings a PostgreSQL connection
before reusing it (one that died during an outage is replaced, not used;
one whose ping an abort cut fails the call instead), and
tracks every connection it opened so that :meth:`Database.abort` can shut them
all down from another thread: PostgreSQL at the socket (a hung peer cannot
hold them), SQLite by interrupting. A connection open at an abort is closed
when it comes back, so the next call gets a new one.

Statements are :class:`Statement` values: SQL text in the driver's positional
style, the parameter names in order and the bind conversion of each (what
SQLAlchemy's column types do to a value before the driver sees it). They are
generated from the SQLAlchemy schema into :mod:`stellaops_runtime.store.agent_sql`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from stellaops_runtime.store.dbvalues import convert_for
from stellaops_runtime.store.pg_connect import PgOpener, refuse_aborted_commit
from stellaops_runtime.store.pgcancel import cancel_in_background
from stellaops_runtime.store.store_url import StoreURL, safe_text

CONNECT_TIMEOUT_SECONDS = 10
MAX_IDLE = 5  # idle connections kept (SQLAlchemy's pool_size)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the store may take before the agent gives up on a connection (``store.*`` keys).

    - ``connect``: libpq ``connect_timeout``;
    - ``statement``: the server's ``statement_timeout`` (SQLite: the busy timeout);
    - ``idle_in_transaction``: the server ends a session that sits inside a
      transaction this long (an abandoned write's locks are released);
      0 for either: not sent, the server's setting applies;
    - ``keepalive``: TCP keepalive idle time and ``tcp_user_timeout``, so a
      peer that vanished from the network is noticed.
    """

    connect: float = CONNECT_TIMEOUT_SECONDS
    statement: float = 30.0
    idle_in_transaction: float = 60.0
    keepalive: float = 30.0

    def postgres_connect_args(self, url_options: str | None = None) -> dict[str, Any]:
        """libpq keywords for these timeouts; ``url_options``: the store URL's own ``options``.

        The URL's options are kept, after the timeouts' (so a setting given in both is the
        URL's): before, the timeouts' options replaced them, and a URL's ``-c lock_timeout=...``
        or ``-c role=...`` was dropped without a word.
        """
        ka = max(1, round(self.keepalive))
        args: dict[str, Any] = {
            "connect_timeout": max(2, round(self.connect)),
            "application_name": "stellaops-runtime",
            "keepalives": 1,
            "keepalives_idle": ka,
            "keepalives_interval": max(1, ka // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": ka * 1000,
        }
        # Server settings go in the startup packet's options; 0 leaves the server's own
        # (a pooler such as PgBouncer refuses startup options: set both to 0 there).
        options = [
            f"-c {name}={round(seconds * 1000)}"
            for name, seconds in (
                ("statement_timeout", self.statement),
                ("idle_in_transaction_session_timeout", self.idle_in_transaction),
            )
            if seconds > 0
        ]
        if url_options and url_options.strip():
            options.append(url_options.strip())
        if options:
            args["options"] = " ".join(options)
        return args

    def sqlite_connect_args(self) -> dict[str, Any]:
        return {"timeout": self.statement or 30.0, "check_same_thread": False}


class Statement(NamedTuple):
    """One SQL statement for one backend: text, parameter names in order, their bind conversions.

    A conversion is ``""`` (none), ``"utc_datetime"``, ``"json"`` or ``"float"``.
    """

    sql: str
    names: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    consts: tuple[tuple[str, Any], ...] = ()  # the statement's own literals, bound like the rest


# -- results and connections ---------------------------------------------------


class Result:
    """What a statement returned: its rows (fetched at once) and rowcount."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list[Any]:
        return [r[0] for r in self.rows]


class Conn:
    """One DB-API connection inside :meth:`Database.begin` or :meth:`Database.connect`."""

    def __init__(self, raw: Any, dialect: str, hooks: list[Callable[[str, Any, bool], None]]) -> None:
        self.raw = raw
        self.dialect = dialect
        self._convert = convert_for(raw, dialect)
        self._hooks = hooks

    def bind(self, stmt: Statement, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """``params`` in the statement's order, each converted as its column type does."""
        conv = self._convert
        if stmt.consts:
            params = {**dict(stmt.consts), **params}
        return tuple(
            conv[kind](params[name]) if kind else params[name]
            for name, kind in zip(stmt.names, stmt.kinds, strict=True)
        )

    def execute(
        self, stmt: Statement | str, params: Mapping[str, Any] | Sequence[Any] | None = None
    ) -> Result:
        """Run one statement; named ``params`` for a :class:`Statement`, positional for plain text."""
        if isinstance(stmt, Statement):
            sql, args = stmt.sql, ()
            if stmt.names:
                if not isinstance(params, Mapping):
                    raise TypeError(f"named parameters expected for {stmt.sql[:60]!r}")
                args = self.bind(stmt, params)
        else:
            sql, args = stmt, tuple(params or ())
        for hook in self._hooks:
            hook(sql, args, False)
        cur = self.raw.cursor()
        try:
            if args:
                cur.execute(sql, args)
            else:  # no parameters: the text goes as it is (a '%' is no placeholder)
                cur.execute(sql)
            rows = cur.fetchall() if cur.description is not None else []
            return Result(rows, cur.rowcount)
        finally:
            cur.close()

    def executemany(self, stmt: Statement, rows: Iterable[Mapping[str, Any]]) -> int:
        """One ``executemany`` of the statement over named rows; returns how many rows were sent."""
        args = [self.bind(stmt, r) for r in rows]
        if not args:
            return 0
        for hook in self._hooks:
            hook(stmt.sql, args, True)
        cur = self.raw.cursor()
        try:
            cur.executemany(stmt.sql, args)
        finally:
            cur.close()
        return len(args)


def _broken(raw: Any, dialect: str) -> bool:
    if dialect == "postgresql":  # psycopg's and pgwire's connections both say so
        return bool(raw.closed or raw.broken)
    return False


class Database:
    """Connections to one store database, from any thread; :meth:`abort` from any other."""

    def __init__(self, url: StoreURL, timeouts: Timeouts | None = None) -> None:
        self.url = url
        self.timeouts = timeouts or Timeouts()
        backend = url.backend
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(f"unsupported backend {backend!r}")
        self.dialect = backend
        self.hooks: list[Callable[[str, Any, bool], None]] = []  # (sql, params, many), for tools/tests
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._generation = 0
        self._born: dict[int, int] = {}  # id(raw) -> generation it was opened in
        # Every connection opened and not closed: what abort() reaches. By id: sqlite3
        # connections take no weak references.
        self._raw: dict[int, Any] = {}
        self._pg = PgOpener(safe_text(url)) if backend == "postgresql" else None

    # -- opening and pooling --------------------------------------------------

    def _open(self) -> Any:
        if self._pg is not None:
            params = self.url.postgres_params()
            params.update(self.timeouts.postgres_connect_args(params.get("options")))
            try:
                raw = self._pg.open(params)
            except Exception as e:
                # Refused or not reached: either driver's (pgwire keeps a refusing server's SQLSTATE,
                # psycopg has none), read alike by agent/store_wait.py ``out_of_reach``.
                with contextlib.suppress(AttributeError, TypeError):
                    e.connect_failed = True  # type: ignore[attr-defined]
                raise
        else:  # imported here: a node's agent on PostgreSQL never maps SQLite (~0.9 MB, issue 13)
            import sqlite3

            filename, uri = self.url.sqlite_target()
            raw = sqlite3.connect(filename, uri=uri, **self.timeouts.sqlite_connect_args())
        with self._lock:
            self._raw[id(raw)] = raw
            self._born[id(raw)] = self._generation
        return raw

    def _close(self, raw: Any) -> None:
        with self._lock:
            self._raw.pop(id(raw), None)
            self._born.pop(id(raw), None)
        with contextlib.suppress(Exception):
            raw.close()

    def _checkout(self) -> Any:
        with self._lock:
            generation = self._generation
        while True:
            with self._lock:
                raw = self._idle.pop() if self._idle else None
            if raw is None:
                return self._open()
            if self.dialect == "sqlite":
                return raw
            if _broken(raw, self.dialect):
                self._close(raw)
                continue
            try:  # pre-ping: a connection that died while idle is replaced, not used
                with raw.cursor() as cur:
                    cur.execute("SELECT 1")
            except Exception as e:
                self._close(raw)
                if self._generation != generation:  # aborted during the ping: fail now, no new connection
                    e.connection_broken = True  # type: ignore[attr-defined]
                    raise
                continue
            return raw

    def _checkin(self, raw: Any, *, broken: bool) -> None:
        with self._lock:
            stale = self._born.get(id(raw)) != self._generation
            keep = not broken and not stale and len(self._idle) < MAX_IDLE
            if keep:
                self._idle.append(raw)
        if not keep:
            self._close(raw)

    @contextlib.contextmanager
    def begin(self) -> Iterator[Conn]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        with self._use(commit=True) as conn:
            yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[Conn]:
        """A connection for reading; whatever it did is rolled back at the end."""
        with self._use(commit=False) as conn:
            yield conn

    @contextlib.contextmanager
    def _use(self, *, commit: bool) -> Iterator[Conn]:
        raw = self._checkout()
        broken = False
        try:
            yield Conn(raw, self.dialect, self.hooks)
            if commit:
                if self._pg is not None:
                    refuse_aborted_commit(raw)  # never a silent loss, on either driver
                raw.commit()
            else:
                raw.rollback()
        except BaseException as e:
            try:
                raw.rollback()
            except Exception:
                broken = True
            broken = broken or _broken(raw, self.dialect)
            if broken:
                with contextlib.suppress(AttributeError, TypeError):
                    e.connection_broken = True  # type: ignore[attr-defined]
            raise
        finally:
            self._checkin(raw, broken=broken or _broken(raw, self.dialect))

    # -- from other threads ---------------------------------------------------

    def abort(self) -> None:
        """Make every call in progress fail now; connections in use are closed when they return."""
        with self._lock:
            self._generation += 1
            conns = list(self._raw.values())
            idle, self._idle = self._idle, []
        for raw in conns:
            if self.dialect == "postgresql" and not any(raw is i for i in idle):
                cancel_in_background(raw)  # the server would run it on, holding its locks
            cut(raw, self.dialect)
        for raw in idle:
            self._close(raw)

    def dispose(self) -> None:
        """Close the idle connections; those in use close when they come back."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for raw in idle:
            self._close(raw)


def cut(raw: Any, dialect: str) -> None:
    """End whatever a DB-API connection is doing, from another thread; never raises.

    PostgreSQL: its socket is shut down (a hung peer cannot hold the blocked
    read: it returns at once); SQLite: the connection is interrupted.
    """
    with contextlib.suppress(Exception):
        if dialect == "postgresql":
            dup = socket.socket(fileno=socket.dup(raw.fileno()))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()
        else:
            raw.interrupt()


def adopt(conn: Any) -> Conn:
    """A :class:`Conn` over a connection SQLAlchemy holds (tools, benchmarks).

    The transaction stays SQLAlchemy's: begun and committed by its owner.
    """
    if isinstance(conn, Conn):
        return conn
    raw = conn.connection.driver_connection
    return Conn(raw, conn.dialect.name, [])
