"""Which server pgwire connects to and how: libpq's keywords, environment and defaults.

``connect(**kw)`` takes the keywords store/dbconn.py gives psycopg. A keyword left out takes its
``PG*`` environment variable, then libpq's built-in default (the Debian socket directory, the OS
user, dbname = user, sslmode prefer); the password, when none is given, comes from the password
file (``passfile``, ``PGPASSFILE``, ``~/.pgpass``) under libpq's rules: ignored unless a regular
file with no group or other permissions. :func:`unsupported` names the first setting pgwire does
not speak, so the caller opens that connection with psycopg instead.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SOCKET_DIR = "/var/run/postgresql"
DEFAULT_PORT = 5432
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# keyword -> its environment variable (None: none that pgwire reads)
KEYWORDS: dict[str, str | None] = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "client_encoding": "PGCLIENTENCODING",
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
    "tcp_user_timeout": None,  # libpq reads no variable for it (PQconndefaults)
}

# Environment variables that change how libpq connects and that pgwire does not follow.
_UNSUPPORTED_ENV = {
    "PGSERVICE": "a service file entry",
    "PGSERVICEFILE": "a service file",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGLOADBALANCEHOSTS": "load_balance_hosts",
    "PGSSLCRL": "a certificate revocation list",
    "PGSSLCRLDIR": "a certificate revocation list",
    "PGREQUIREPEER": "requirepeer",
    "PGKRBSRVNAME": "Kerberos",
    "PGGSSLIB": "GSSAPI",
    "PGSSLNEGOTIATION": "sslnegotiation",
    "PGCHANNELBINDING": "channel_binding",
    "PGGSSENCMODE": "gssencmode",
    "PGREQUIREAUTH": "require_auth",
    "PGSSLCERTMODE": "sslcertmode",
    "PGSSLMINPROTOCOLVERSION": "ssl_min_protocol_version",
    "PGSSLMAXPROTOCOLVERSION": "ssl_max_protocol_version",
    "PGSSLSNI": "sslsni",
    "PGSSLCOMPRESSION": "sslcompression",
    "PGMINPROTOCOLVERSION": "min_protocol_version",
    "PGMAXPROTOCOLVERSION": "max_protocol_version",
    "PGGSSDELEGATION": "gssdelegation",
    # Not keywords: libpq sends these session defaults in its startup packet, and finds the service
    # file in PGSYSCONFDIR. pgwire's session keeps the server's (DateStyle ISO: API.md).
    "PGDATESTYLE": "the session's DateStyle",
    "PGTZ": "the session's TimeZone",
    "PGGEQO": "the session's geqo",
    "PGSYSCONFDIR": "a service file's directory",
}
# Keywords pgwire accepts only at these values (what libpq does by default, or the same thing).
_ONLY = {
    "gssencmode": ("disable", "prefer"),
    "channel_binding": ("disable", "prefer"),
    "sslnegotiation": ("postgres",),
    "target_session_attrs": ("any",),
    "load_balance_hosts": ("disable",),
    "sslcompression": ("0",),
    "sslsni": ("1",),
}
_ONLY_ENV = {
    "PGGSSENCMODE": "gssencmode",
    "PGCHANNELBINDING": "channel_binding",
    "PGSSLNEGOTIATION": "sslnegotiation",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGLOADBALANCEHOSTS": "load_balance_hosts",
    "PGSSLSNI": "sslsni",
    "PGSSLCOMPRESSION": "sslcompression",
}


def unsupported(kw: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """None when pgwire speaks this configuration, else a short reason naming what it does not."""
    for key, value in kw.items():
        if value is None:
            continue
        text = str(value)
        if key in _ONLY:
            if text not in _ONLY[key]:
                return f"{key}={text}"
            continue
        if key not in KEYWORDS:
            return f"connection keyword {key!r}"
        if key in ("host", "hostaddr", "port") and "," in text:
            return f"a {key} list ({key}={text})"
        if key == "sslmode" and text not in SSLMODES:
            return f"sslmode={text}"
        if key == "client_encoding" and text.upper().replace("-", "") not in ("UTF8", "UNICODE"):
            return f"client_encoding={text}"
    for name, what in _UNSUPPORTED_ENV.items():
        value = environ.get(name)
        if not value:
            continue
        only = _ONLY_ENV.get(name)
        if only is not None and only not in kw and value in _ONLY[only]:
            continue
        if only is not None and only in kw:
            continue  # the keyword given wins over the variable (checked above)
        return f"{name} ({what})"
    for key in ("host", "hostaddr", "port"):
        value = environ.get(KEYWORDS[key] or "")
        if key not in kw and value and "," in value:
            return f"a {key} list ({KEYWORDS[key]}={value})"
    mode = kw.get("sslmode") or environ.get("PGSSLMODE")
    if mode and str(mode) not in SSLMODES:
        return f"sslmode={mode}"
    enc = kw.get("client_encoding") or environ.get("PGCLIENTENCODING")
    if enc and str(enc).upper().replace("-", "") not in ("UTF8", "UNICODE"):
        return f"client_encoding={enc}"
    gss = str(kw.get("gssencmode") or environ.get("PGGSSENCMODE") or "prefer")
    if gss == "prefer" and _kerberos_cache(environ):
        return "a Kerberos credential cache (gssencmode=prefer: libpq would try GSS encryption first)"
    return None


def _kerberos_cache(environ: Mapping[str, str]) -> bool:
    """A Kerberos credential cache libpq would find (KRB5CCNAME, or the default file cache)."""
    if environ.get("KRB5CCNAME"):
        return True
    return os.path.exists(f"/tmp/krb5cc_{os.geteuid()}")


@dataclass
class Target:
    """One connection's settings, every default resolved."""

    host: str  # a name, an IP or a unix socket directory
    hostaddr: str
    port: int
    dbname: str
    user: str
    password: str | None = field(repr=False)  # never in a log line or an assertion's text
    sslmode: str
    sslrootcert: str
    sslcert: str
    sslkey: str
    connect_timeout: float | None
    application_name: str
    options: str
    keepalives: bool
    keepalives_idle: int | None
    keepalives_interval: int | None
    keepalives_count: int | None
    tcp_user_timeout: int | None

    @property
    def unix(self) -> bool:
        return not self.hostaddr and self.host.startswith("/")

    @property
    def socket_path(self) -> str:
        return f"{self.host}/.s.PGSQL.{self.port}"


def resolve(kw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Target:
    """The settings libpq would use for these keywords and this environment."""
    env = os.environ if environ is None else environ

    def get(key: str) -> str:
        value = kw.get(key)
        if value is None or value == "":
            name = KEYWORDS.get(key)
            value = env.get(name, "") if name else ""
        return str(value)

    from stellaops_runtime.pgwire.errors import OperationalError

    host = get("host")
    hostaddr = get("hostaddr")
    if not host and not hostaddr:
        host = DEFAULT_SOCKET_DIR
    port_text = get("port") or str(DEFAULT_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise OperationalError(f"invalid port number: {port_text!r}") from None
    if not 0 < port < 65536:
        raise OperationalError(f"invalid port number: {port_text!r}")
    user = get("user") or _os_user()
    dbname = get("dbname") or user
    sslmode = get("sslmode") or "prefer"
    if sslmode not in SSLMODES:
        raise OperationalError(f"invalid sslmode value: {sslmode!r}")
    home = os.path.expanduser("~")
    pgdir = os.path.join(home, ".postgresql")
    password: str | None = get("password") or None
    if password is None:
        passfile = get("passfile") or os.path.join(home, ".pgpass")
        password = pgpass_lookup(passfile, host or hostaddr, port, dbname, user)
    timeout_text = get("connect_timeout")
    connect_timeout: float | None = None
    if timeout_text:
        try:
            t = int(timeout_text)
        except ValueError:
            raise OperationalError(f"invalid connect_timeout value: {timeout_text!r}") from None
        connect_timeout = None if t <= 0 else float(max(t, 2))  # libpq: at least 2 s; 0: none
    return Target(
        host=host,
        hostaddr=hostaddr,
        port=port,
        dbname=dbname,
        user=user,
        password=password,
        sslmode=sslmode,
        sslrootcert=get("sslrootcert") or os.path.join(pgdir, "root.crt"),
        sslcert=get("sslcert") or os.path.join(pgdir, "postgresql.crt"),
        sslkey=get("sslkey") or os.path.join(pgdir, "postgresql.key"),
        connect_timeout=connect_timeout,
        application_name=get("application_name"),
        options=get("options"),
        keepalives=get("keepalives") != "0",
        keepalives_idle=_int_or_none(get("keepalives_idle")),
        keepalives_interval=_int_or_none(get("keepalives_interval")),
        keepalives_count=_int_or_none(get("keepalives_count")),
        tcp_user_timeout=_int_or_none(get("tcp_user_timeout")),
    )


def _int_or_none(text: str) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _os_user() -> str:
    """The effective user's name, as libpq takes it."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def pgpass_lookup(path: str, host: str, port: int, dbname: str, user: str) -> str | None:
    """The password for this connection from a libpq password file, or None.

    As libpq: the file is read only when it is a regular file without group or other
    permissions; a host that is the default socket directory (or none) matches ``localhost``;
    ``*`` matches anything; ``\\`` escapes ``:`` and itself; the first matching line wins.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    if not host or host == DEFAULT_SOCKET_DIR:
        host = "localhost"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = (host, str(port), dbname, user)
    for line in lines:
        if not line or line.startswith("#"):
            continue
        fields = _pgpass_fields(line)
        if len(fields) < 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], want, strict=True)):
            return fields[4] or None
    return None


def _pgpass_fields(line: str) -> list[str]:
    fields: list[str] = []
    cur: list[str] = []
    it = iter(line)
    for c in it:
        if c == "\\":
            nxt = next(it, "")
            cur.append(nxt)
        elif c == ":" and len(fields) < 4:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    fields.append("".join(cur))
    return fields
