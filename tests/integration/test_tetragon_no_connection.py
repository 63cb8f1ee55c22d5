"""Nobody listens at ``tetragon.address``: the message docs/operations.md ("Troubleshooting") quotes.

The real gRPC source against a loopback port nobody holds: each attempt waits
``tetragon.connectionTimeout`` for the channel, is counted as a connection
failure and retried, and its warning names the address and that timeout in
seconds as the source prints it (``within 5.0s`` for the default).
"""

from __future__ import annotations

import asyncio
import logging

from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h
from tests.ports import free_port


def test_the_default_timeout_is_printed_as_the_docs_quote_it() -> None:
    assert TetragonConfig().timeout_seconds == 5.0 and f"{TetragonConfig().timeout_seconds}s" == "5.0s"


async def test_an_address_nobody_listens_on_is_retried_and_named_with_the_timeout(caplog) -> None:
    address = f"127.0.0.1:{free_port()}"
    cfg = TetragonConfig(address=address, connectionTimeout=0.1, reconnectInitialSeconds=0.05)
    source = TetragonGrpcSource(cfg, queue=EventQueue(10))
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.sources.tetragon_grpc")
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.connect_failures >= 2, what="two failed attempts")
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    assert source.stats.connects == 0 and not source.stats.connected
    assert source.stats.last_error == f"no connection to {address} within 0.1s"
    assert f"tetragon stream error ({address}): no connection to {address} within 0.1s" in caplog.text
