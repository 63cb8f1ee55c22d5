"""The agent's gRPC channels, for any address its config takes: one no client can dial fails as unreachable.

The agent's config takes any ``unix://...`` and any ``HOST:PORT`` (contracts/config.py), some of which
no gRPC client can dial: ``unix://run/x.sock`` names an authority, not a path; ``[::1:54321`` never
closes its bracket. grpc.aio made such a channel and failed each call on it, which every caller
handles as an address nobody listens on (the stream retried and counted, Tetragon reported
unreachable, the runtime's observer reconnecting); the agent's own client
(:func:`stellaops_runtime.rpc.insecure_channel`) raises ValueError at once instead, outside those
handlers. :func:`dial` turns that into the call failure the callers expect: ``RpcError``
UNAVAILABLE with the reason (tests/integration/test_tetragon_undialable_address.py).
"""

from __future__ import annotations

from stellaops_runtime.rpc import Channel, ChannelOptions, RpcError, StatusCode, insecure_channel


def dial(target: str, options: ChannelOptions | None = None) -> Channel:
    """A channel to ``target``; :class:`RpcError` UNAVAILABLE when no client can dial it."""
    try:
        return insecure_channel(target, options if options is not None else ChannelOptions())
    except ValueError as e:
        raise RpcError(StatusCode.UNAVAILABLE, str(e)) from None
