"""A private, throw-away PostgreSQL cluster for the test session.

The hot-symbol store is tested against a real PostgreSQL server (DESIGN.md,
"Real parts"), never a fake. This module starts one: ``initdb`` into a
temporary directory (in memory, ``/dev/shm``, when there is room: see
:func:`memory_dir`), ``pg_ctl start`` on a free loopback port with durability
switched off (fsync, synchronous_commit, full_page_writes: tests do not need
crash safety and start-up stays around 2 s), and ``pg_ctl stop`` + removal at
the end (by tests/pg_watch.py's watcher when this process dies before its
teardown). Outage tests call :meth:`PgServer.stop` and :meth:`PgServer.start`
to take the same cluster down and up again on the same port.

The server binaries come from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``); ``scripts/setup.sh`` installs it.
When they are missing the fixture fails with that hint instead of skipping,
so a CI machine without PostgreSQL cannot pass silently.

initdb refuses to run as root, so when the tests run as root the cluster is
created and run as the ``postgres`` OS user (``runuser -u postgres``) in a
directory chowned to it.

Most store tests want a database at the newest schema and do not test how
it got there: :meth:`PgServer.migrated_database` gives them ``CREATE DATABASE
x TEMPLATE <template>``, a copy of one database migrated once per server
(milliseconds, where running every Alembic revision costs a test ~0.1 s in
process and an agent subprocess ~0.4 s more to import Alembic). The
template's name holds a hash of the migration files of the
``stellaops_runtime`` actually imported (so a new or edited migration is
never silently missing: another hash, another template, built on first use)
and the server's UTC date (migration 0007 creates the day partitions around
"today"). It is built under a private name and renamed into place, so two
processes sharing one server (``STELLA_TEST_PG_URL``) never see a half-built
one; it is marked ``IS_TEMPLATE`` and closed to connections. Tests of the
migrations themselves (order, upgrades from old revisions, an agent that
migrates at start) use :meth:`PgServer.fresh_database`: an empty database.

Set ``STELLA_TEST_PG_URL`` (e.g. ``postgresql+psycopg://postgres@db:5432/stella``)
to use an existing server instead; the user must be allowed to CREATE
DATABASE, and :meth:`stop`/:meth:`start` are then unavailable (outage tests
fail with a message saying so).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.pg_watch import start as start_watcher
from tests.ports import free_port

PG_URL_ENV = "STELLA_TEST_PG_URL"
SETUP_HINT = "PostgreSQL server binaries not found: run scripts/setup.sh"
DATABASE = "stella"
# The cluster goes in memory only with this much room left: it holds ~100-200 MB at a time (its
# template, the WAL, the databases of the tests running now: each is dropped after its test).
SHM_FREE_BYTES = 2 << 30


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, newest version first."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    for d in candidates:
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def libpq_dsn(url: str) -> str:
    """Turn an SQLAlchemy URL into a libpq URI psycopg accepts."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


class PgServer:
    """One PostgreSQL cluster: ``url`` points at database ``stella`` on it."""

    def __init__(self, *, bindir: Path | None = None, external_url: str | None = None) -> None:
        self._external = external_url
        self._bindir = bindir
        self._tmp: Path | None = None
        self._user: str | None = None
        self.port = 0
        self.url = external_url or ""
        self._n = 0
        self.running = False
        self._templates: set[str] = set()
        self._watcher: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------

    def setup(self) -> None:
        """Create and start the cluster (or check the external server)."""
        if self._external:
            self._create_database(DATABASE)
            self.running = True
            return
        if self._bindir is None:
            raise RuntimeError(SETUP_HINT)
        self._tmp = Path(tempfile.mkdtemp(prefix="stella-pg-", dir=memory_dir()))
        self._user = "postgres" if os.geteuid() == 0 else None
        (self._tmp / "data").mkdir()
        (self._tmp / "sock").mkdir()
        if self._user:
            pw = pwd.getpwnam(self._user)
            for p in (self._tmp, self._tmp / "data", self._tmp / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
            str(self._tmp / "data"),
        )
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"
        # Stops the cluster and removes it if this process dies before teardown (tests/pg_watch.py).
        stop = self._command("pg_ctl", "-w", "-D", str(self._tmp / "data"), "-m", "immediate", "stop")
        self._watcher = start_watcher(os.getpid(), str(self._tmp), stop)
        self.start()
        self._create_database(DATABASE)

    def start(self) -> None:
        self._require_local("start")
        assert self._tmp is not None
        opts = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self._tmp / 'sock'}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                # Each CREATE DATABASE of the template writes its ~8 MB to the WAL: recycle it soon,
                # it would fill up to the 1 GB default in memory (memory_dir()).
                "-c max_wal_size=96MB",
                "-c min_wal_size=32MB",
            ]
        )
        self._run(
            "pg_ctl",
            "-w",
            "-t",
            "30",
            "-D",
            str(self._tmp / "data"),
            "-l",
            str(self._tmp / "server.log"),
            "-o",
            opts,
            "start",
        )
        self.running = True

    def stop(self) -> None:
        self._require_local("stop")
        assert self._tmp is not None
        self._run("pg_ctl", "-w", "-D", str(self._tmp / "data"), "-m", "fast", "stop")
        self.running = False

    def teardown(self) -> None:
        if self._external or self._tmp is None:
            return
        if self._watcher is not None:
            self._watcher.kill()  # the cluster is ours to stop now
            self._watcher.wait()
            self._watcher = None
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- databases -----------------------------------------------------------

    def fresh_database(self) -> str:
        """CREATE DATABASE test_<n> and return its SQLAlchemy URL."""
        self._n += 1
        name = f"test_{os.getpid()}_{self._n}"
        self._create_database(name)
        return with_database(self.url, name)

    def migrated_database(self) -> str:
        """A fresh database already at the newest schema (a copy of the template); its SQLAlchemy URL."""
        template = self._template()
        self._n += 1
        name = f"test_{os.getpid()}_{self._n}"
        self._create_database(name, template=template)
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        """DROP a test's database (its sessions ended first): its ~8 MB of files are freed at once,
        not left for the end of the session (seconds of deleting in every worker's last test)."""
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')

    def _template(self) -> str:
        """The migrated template's name, building it first when this server has none for these migrations."""
        with self._admin() as conn:
            row = conn.execute("SELECT CAST(now() AT TIME ZONE 'UTC' AS date)").fetchone()
            assert row is not None
            name = template_name(row[0])
            if name in self._templates:
                return name
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                self._templates.add(name)
                return name
        building = f"build_{os.getpid()}_{secrets.token_hex(4)}"  # unique to this build, whoever else builds
        self._create_database(building)
        migrate_to_head(with_database(self.url, building))
        with self._admin() as conn:
            try:
                conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            except psycopg.errors.DuplicateDatabase:  # another process sharing the server was first
                conn.execute(f'DROP DATABASE "{building}"')
            else:
                conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        self._templates.add(name)
        return name

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            libpq_dsn(with_database(self.url, "postgres")), autocommit=True, connect_timeout=10
        )

    def _create_database(self, name: str, *, template: str | None = None) -> None:
        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))

    # -- helpers -------------------------------------------------------------

    def _require_local(self, what: str) -> None:
        if self._external:
            raise RuntimeError(f"cannot {what} the external PostgreSQL server given by {PG_URL_ENV}")

    def _command(self, tool: str, *args: str) -> list[str]:
        assert self._bindir is not None
        cmd = [str(self._bindir / tool), *args]
        return ["runuser", "-u", self._user, "--", *cmd] if self._user else cmd

    def _run(self, tool: str, *args: str) -> None:
        cmd = self._command(tool, *args)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)
        if proc.returncode != 0:
            log = ""
            if self._tmp and (self._tmp / "server.log").exists():
                log = (self._tmp / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )


def memory_dir() -> str | None:
    """``/dev/shm`` when it is a memory file system with room for a cluster, else None (the default
    temporary directory). Every test's database is a copy of the template (~8 MB written, and as
    much to the WAL); on disk that cost ~0.13 s a database on a busy machine, in memory ~0.07 s."""
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
    except OSError:
        return None
    if not os.access(shm, os.W_OK) or st.f_bavail * st.f_frsize < SHM_FREE_BYTES:
        return None
    with open("/proc/mounts") as f:
        if not any(line.split()[1:3] == [shm, "tmpfs"] for line in f):
            return None
    return shm


def migrations_digest() -> str:
    """A hash of the migration files the imported ``stellaops_runtime`` runs, and of their schema name."""
    from stellaops_runtime.store import schema
    from stellaops_runtime.store.engine import MIGRATIONS_DIR

    h = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.rglob("*.py")):
        h.update(str(path.relative_to(MIGRATIONS_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(schema.SCHEMA.encode())
    return h.hexdigest()[:20]


def template_name(today: dt.date) -> str:
    return f"migrated_{migrations_digest()}_{today:%Y%m%d}"


def migrate_to_head(url: str) -> None:
    """``alembic upgrade head`` on the database at ``url``, as an agent's start-up runs it."""
    from stellaops_runtime.store.engine import create_store_engine, migrate

    engine = create_store_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()  # no connection may stay open on a database about to become a template


def make_server() -> PgServer:
    """A server from ``STELLA_TEST_PG_URL`` or a private cluster; not yet set up."""
    external = os.environ.get(PG_URL_ENV)
    if external:
        return PgServer(external_url=external)
    return PgServer(bindir=find_bindir())
