"""The socket under a pgwire connection: opening it, TLS per sslmode, and message framing.

A unix socket (``<dir>/.s.PGSQL.<port>``) or TCP with libpq's keepalive options and
TCP_USER_TIMEOUT. TLS is negotiated with an SSLRequest; the standard library's ``ssl`` is imported
only when the server agreed and a handshake is made (sslmode prefer against a server without TLS
never loads it). verify-ca checks the chain against ``sslrootcert``; verify-full also the host
name; require checks nothing unless a root certificate file exists (then as verify-ca), as libpq.

Every failure to read or write (EOF, a reset, a socket shut down by another thread, a malformed
frame) raises :class:`OperationalError` with sqlstate None.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

from stellaops_runtime.pgwire import messages as m
from stellaops_runtime.pgwire.errors import OperationalError
from stellaops_runtime.pgwire.params import Target

_RECV = 256 * 1024  # one receive's buffer, whatever length a message announces


class Deadline:
    """The time left of connect_timeout (None: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float | None:
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise OperationalError("connection timeout expired")
        return left


class Transport:
    """A connected socket with a read buffer; one thread reads and writes at a time."""

    def __init__(self, sock: socket.socket, address: Any, family: int) -> None:
        self.sock: Any = sock
        self.address = address
        self.family = family
        self._buf = bytearray()
        self._pos = 0
        self.tls = False

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise OperationalError(f"connection lost while sending: {e}") from None

    def _fill(self, need: int) -> None:
        """Read until ``need`` unread bytes are buffered."""
        while len(self._buf) - self._pos < need:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += self._recv(_RECV)

    def read(self) -> tuple[bytes, bytes]:
        """One backend message: (type byte, body)."""
        self._fill(5)
        try:
            kind, length = m.header(bytes(self._buf[self._pos : self._pos + 5]))
        except m.ProtocolViolation as e:
            raise OperationalError(f"protocol violation: {e}") from None
        self._pos += 5
        self._fill(length)
        body = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        return kind, body

    def read_byte(self) -> bytes:
        """One raw byte (the answer to an SSLRequest), buffering nothing after it."""
        return self._recv(1)

    def _recv(self, size: int) -> bytes:
        """At most ``size`` bytes from the socket, at least one; its failures as OperationalError."""
        try:
            chunk = self.sock.recv(size)
        except TimeoutError:
            raise OperationalError("connection timeout expired") from None
        except OSError as e:
            raise OperationalError(f"connection lost: {e}") from None
        if not chunk:
            raise OperationalError("server closed the connection unexpectedly")
        return chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def open_socket(t: Target, deadline: Deadline) -> Transport:
    """A connected socket to the target's server (no TLS yet)."""
    if t.unix:
        path = t.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise OperationalError(f'connection to server on socket "{path}" failed: {e}') from None
        return Transport(sock, path, socket.AF_UNIX)
    host = t.hostaddr or t.host
    errors = []
    try:
        infos = socket.getaddrinfo(host, t.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:  # UnicodeError: a label IDNA cannot encode (empty, too long)
        raise OperationalError(f'could not translate host name "{host}" to address: {e}') from None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(addr)
        except OSError as e:
            sock.close()
            errors.append(f"{addr[0]!r}:{addr[1]!r}: {e}")
            continue
        except OperationalError:
            sock.close()
            raise
        _tcp_options(sock, t)
        return Transport(sock, addr, family)
    raise OperationalError(f'connection to server at "{host}", port {t.port} failed: {"; ".join(errors)}')


def _tcp_options(sock: socket.socket, t: Target) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if t.keepalives:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (
            ("TCP_KEEPIDLE", t.keepalives_idle),
            ("TCP_KEEPINTVL", t.keepalives_interval),
            ("TCP_KEEPCNT", t.keepalives_count),
        ):
            if value and hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
    if t.tcp_user_timeout and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, t.tcp_user_timeout)


def start_tls(tr: Transport, t: Target) -> bool:
    """Ask the server for TLS; True when the handshake was made, False when it said no."""
    tr.send(m.ssl_request())
    answer = tr.read_byte()
    if answer == b"N":
        return False
    if answer != b"S":
        raise OperationalError(f"received invalid response to SSL negotiation: {answer!r}")
    if t.sslmode == "verify-full" and not t.host:  # hostaddr alone: no name to verify
        raise OperationalError("host name must be specified for a verified SSL connection")
    ctx = _context(t)
    server_name = None if _is_ip(t.host) or not t.host else t.host
    try:
        tr.sock = ctx.wrap_socket(tr.sock, server_hostname=server_name)
    except OSError as e:  # ssl.SSLError and ssl.CertificateError are OSErrors
        raise OperationalError(f"SSL connection failed: {e}") from None
    if t.sslmode == "verify-full" and _is_ip(t.host):
        _check_ip(tr.sock, t.host)
    tr.tls = True
    return True


def _context(t: Target) -> Any:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    verify = t.sslmode in ("verify-ca", "verify-full")
    root = t.sslrootcert
    if t.sslmode == "require" and root != "system" and os.path.exists(root):
        verify = True  # libpq: require with a root certificate file behaves as verify-ca
    if root == "system" and t.sslmode in ("require", "verify-ca"):
        # libpq 16: every publicly trusted certificate chains to the system's roots, so only the
        # host name check makes such a chain mean anything
        raise OperationalError(
            f'weak sslmode "{t.sslmode}" may not be used with sslrootcert=system (use "verify-full")'
        )
    if verify:
        try:
            if root == "system":
                ctx.load_default_certs()
            else:
                ctx.load_verify_locations(cafile=root)
        except OSError as e:
            raise OperationalError(f'could not read root certificate file "{root}": {e}') from None
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = t.sslmode == "verify-full" and not _is_ip(t.host)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if os.path.exists(t.sslcert):
        _check_key_file(t.sslkey)
        try:
            ctx.load_cert_chain(t.sslcert, t.sslkey)
        except OSError as e:
            raise OperationalError(f'could not load client certificate "{t.sslcert}": {e}') from None
    return ctx


def _check_key_file(path: str) -> None:
    """libpq's checks of the client key before it is used: it must exist beside the certificate,
    be a regular file, and be readable by no one else (0600 or less; 0640 or less when root owns it,
    whoever reads it, as libpq decides by the owner alone)."""
    import stat

    try:
        st = os.stat(path)
    except OSError:
        raise OperationalError(f'certificate present, but not private key file "{path}"') from None
    if not stat.S_ISREG(st.st_mode):
        raise OperationalError(f'private key file "{path}" is not a regular file')
    if st.st_uid == 0:  # a root-owned key may be read through a group (system-wide certificates)
        loose = st.st_mode & (stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO)
    else:
        loose = st.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    if loose:
        raise OperationalError(
            f'private key file "{path}" has group or world access; file must have permissions u=rw (0600)'
            " or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
        )


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            continue
    return False


def _check_ip(sock: Any, host: str) -> None:
    """verify-full to an IP address, as libpq decides it: an iPAddress entry must name it; a
    certificate with no iPAddress entry at all may name it in its Common Name instead (even beside
    a dNSName: libpq breaks RFC 6125's rule there, and so must we to accept what it accepts)."""
    import ipaddress

    cert = sock.getpeercert() or {}
    want = ipaddress.ip_address(host)
    ips = [v for k, v in cert.get("subjectAltName", ()) if k == "IP Address"]
    if any(ipaddress.ip_address(v.strip()) == want for v in ips):
        return
    cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    if not ips and any(cn.strip().lower() == host.lower() for cn in cns):
        return
    sock.close()
    raise OperationalError(f'server certificate does not match host address "{host}"')
