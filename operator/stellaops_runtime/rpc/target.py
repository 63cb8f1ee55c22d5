"""Where a channel's target string says to connect, read as grpc reads it.

The agent's addresses come from its config and from containerd's (percent-encoded by
lifecycle/containerd_client.target_of, since grpc percent-decodes a unix path); the own client
must dial the same socket grpc did for the same string, so the forms and the decoding follow
gRPC's naming doc: ``unix:///abs``, ``unix:/abs``, ``unix:rel``, ``unix-abstract:name``,
``host:port``, ``[v6]:port``, ``dns:///host:port``, ``ipv4:a.b.c.d:port``, ``ipv6:[v6]:port``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

DEFAULT_PORT = 443


@dataclass(frozen=True)
class Address:
    """A unix socket path (``unix`` set; abstract names start with NUL) or a host and port."""

    unix: str | None = None
    host: str = ""
    port: int = 0
    authority: str = "localhost"


def _unix_path(raw: str) -> str:
    # the target is a URI to grpc: a '?' or '#' ends the path, %XX escapes are decoded
    for end in "?#":
        raw = raw.split(end, 1)[0]
    return unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def _host_port(text: str, target: str) -> Address:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad target {target!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad target {target!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"bad target {target!r}: no host")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad target {target!r}: port {port_text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad target {target!r}: port {port}")
    return Address(host=host, port=port, authority=text)


def parse_target(target: str) -> Address:
    """The address a target names; ValueError for one grpc would not dial either."""
    if target.startswith("unix-abstract:"):
        return Address(unix="\0" + _unix_path(target[len("unix-abstract:") :]))
    if target.startswith("unix:"):
        rest = target[len("unix:") :]
        if rest.startswith("//"):
            # unix://authority/path: grpc accepts only an empty authority
            if not rest.startswith("///"):
                raise ValueError(f"bad target {target!r}: unix:// needs an absolute path (unix:///path)")
            rest = rest[2:]
        if not rest:
            raise ValueError(f"bad target {target!r}: empty path")
        return Address(unix=_unix_path(rest))
    if target.startswith("dns:"):
        rest = target[len("dns:") :]
        if rest.startswith("//"):
            slash = rest.find("/", 2)
            if slash < 0:
                raise ValueError(f"bad target {target!r}")
            rest = rest[slash + 1 :]
        return _host_port(rest, target)
    if target.startswith("ipv4:") or target.startswith("ipv6:"):
        return _host_port(target[5:], target)
    return _host_port(target, target)
