"""Opening a pgwire session: the startup packet, authentication, and the server's first reports.

The startup packet carries user, database, application_name and options as libpq sends them,
plus client_encoding UTF8 and DateStyle ISO (the text formats values.py parses), both parameters
a pooler such as PgBouncer tracks; IntervalStyle stays the server's default (postgres), which
PgBouncer before 1.20 would refuse as a startup parameter, and an interval in another style is a
DataError. Authentication: trust, cleartext, MD5, SCRAM-SHA-256; GSSAPI, SSPI, Kerberos
or a SASL offer of only SCRAM-SHA-256-PLUS raise :class:`UnsupportedAuthentication`. A SCRAM
exchange must end with the server's verified signature before AuthenticationOk is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.pgwire import messages as m
from stellaops_runtime.pgwire.errors import OperationalError, UnsupportedAuthentication, from_fields
from stellaops_runtime.pgwire.params import Target
from stellaops_runtime.pgwire.transport import Deadline, Transport

AUTH_OK, AUTH_KRB5, AUTH_CLEARTEXT, AUTH_MD5 = 0, 2, 3, 5
AUTH_GSS, AUTH_GSS_CONTINUE, AUTH_SSPI = 7, 8, 9
AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 10, 11, 12


@dataclass
class Session:
    """What the server told us while the session opened."""

    pid: int = 0
    key: bytes = b""
    parameters: dict[str, str] = field(default_factory=dict)
    status: bytes = b"I"


def startup_params(t: Target) -> dict[str, str]:
    params = {"user": t.user, "database": t.dbname}
    if t.application_name:
        params["application_name"] = t.application_name
    if t.options:
        params["options"] = t.options
    params["client_encoding"] = "UTF8"
    params["DateStyle"] = "ISO"
    return params


def handshake(tr: Transport, t: Target, deadline: Deadline) -> Session:
    """Send the startup packet, authenticate, and read up to the first ReadyForQuery."""
    try:
        packet = m.startup(startup_params(t))
    except ValueError as e:
        raise OperationalError(f"invalid connection parameter: {e}") from None
    tr.settimeout(deadline.left())
    tr.send(packet)
    try:
        return _exchange(tr, t, deadline)
    except m.ProtocolViolation as e:  # a malformed reply: a connection error, as libpq reports it
        raise OperationalError(f"protocol violation during startup: {e}") from None


def _exchange(tr: Transport, t: Target, deadline: Deadline) -> Session:
    session = Session()
    scram: Any = None  # auth.Scram once a SCRAM exchange began
    while True:
        tr.settimeout(deadline.left())
        kind, body = tr.read()
        if kind == b"R":
            code, data = m.auth_request(body)
            if code == AUTH_OK:
                if scram is not None and not scram.verified:
                    raise OperationalError(
                        "SCRAM: the server ended authentication without proving the password"
                    )
                continue
            scram = _authenticate(tr, t, code, data, scram)
        elif kind == b"E":
            # As psycopg: a refused connection is an OperationalError whatever the SQLSTATE (3D000,
            # a missing database, would otherwise be a ProgrammingError the caller does not retry).
            err = from_fields(m.fields(body))
            raise OperationalError(str(err), sqlstate=err.sqlstate, fields=err.fields)
        elif kind == b"S":
            name, value = m.parameter_status(body)
            session.parameters[name] = value
        elif kind == b"K":
            session.pid, session.key = m.backend_key(body)
        elif kind == b"Z":
            session.status = body[:1] or b"I"
            return session
        elif kind in (b"N", b"v"):  # a notice; NegotiateProtocolVersion (we ask for nothing optional)
            continue
        else:
            raise OperationalError(f"protocol violation: unexpected message {kind!r} during startup")


def _authenticate(tr: Transport, t: Target, code: int, data: bytes, scram: Any) -> Any:
    from stellaops_runtime.pgwire.auth import MECHANISM, Scram, md5_password  # hashlib: when asked

    if code == AUTH_CLEARTEXT:
        tr.send(m.password(_password(t).encode() + b"\0"))
        return scram
    if code == AUTH_MD5:
        if len(data) != 4:
            raise OperationalError("protocol violation: bad MD5 salt")
        tr.send(m.password(md5_password(t.user, _password(t), data)))
        return scram
    if code == AUTH_SASL:
        mechanisms = [x.decode("utf-8", "replace") for x in data.split(b"\0") if x]
        if MECHANISM not in mechanisms:
            raise UnsupportedAuthentication(f"SASL mechanisms {mechanisms} not supported (only {MECHANISM})")
        scram = Scram(_password(t))
        tr.send(m.sasl_initial(MECHANISM, scram.first()))
        return scram
    if code == AUTH_SASL_CONTINUE:
        if scram is None:
            raise OperationalError("protocol violation: SASL continue without SASL")
        tr.send(m.password(scram.final(data)))
        return scram
    if code == AUTH_SASL_FINAL:
        if scram is None:
            raise OperationalError("protocol violation: SASL final without SASL")
        scram.check(data)
        return scram
    names = {AUTH_KRB5: "Kerberos V5", AUTH_GSS: "GSSAPI", AUTH_GSS_CONTINUE: "GSSAPI", AUTH_SSPI: "SSPI"}
    raise UnsupportedAuthentication(f"authentication method {names.get(code, code)} not supported")


def _password(t: Target) -> str:
    if t.password is None:
        raise OperationalError("fe_sendauth: no password supplied")
    return t.password
