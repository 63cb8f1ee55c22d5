"""The agent's own gRPC client: HTTP/2 framed on asyncio, without grpcio.

Why: grpcio's core costs the idle agent ~12 MB of resident memory (issue 13: the agent must
idle under 45 MB) and the ``h2`` library is too slow for Tetragon's event rate. This package
speaks just what the agent needs (unary and server-streaming calls, insecure, over unix
sockets or TCP) and imports nothing but asyncio, the stdlib and ``hpack``. The API keeps
grpc.aio's behaviour the agent relied on; see docs/architecture.md.
"""

from stellaops_runtime.rpc.calls import StreamCall
from stellaops_runtime.rpc.channel import Channel, ChannelOptions, insecure_channel
from stellaops_runtime.rpc.status import RpcError, StatusCode

__all__ = ["Channel", "ChannelOptions", "RpcError", "StatusCode", "StreamCall", "insecure_channel"]
