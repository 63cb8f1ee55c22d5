"""gRPC status codes and the error a call fails with, without grpcio.

The agent's own gRPC client (:mod:`stellaops_runtime.rpc`) reports a failed call as
:class:`RpcError` carrying one of gRPC's :class:`StatusCode` values, the way grpc.aio's
``AioRpcError`` did: the agent's loops branch on the code and count lost events on the
details text, so the codes keep gRPC's names and numbers and the details are never None.
Also here: reading a server's ``grpc-status``/``grpc-message`` trailers and mapping a
non-200 HTTP status as gRPC's HTTP/2 protocol spec says.
"""

from __future__ import annotations

import enum
from urllib.parse import quote, unquote


class StatusCode(enum.Enum):
    """gRPC's status codes, same names and numbers as grpc.StatusCode's."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


_BY_NUMBER = {c.value: c for c in StatusCode}


class RpcError(Exception):
    """A call that ended with a status other than OK."""

    def __init__(self, code: StatusCode, details: str = "") -> None:
        super().__init__(code, details)
        self._code = code
        self._details = details or ""

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return f"<RpcError {self._code.name}: {self._details}>"

    __repr__ = __str__


# gRPC's doc/http-grpc-status-mapping.md: a reply without grpc-status is read by its HTTP status.
_HTTP_TO_CODE = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}


def code_of_http_status(http_status: int) -> StatusCode:
    """The gRPC code of a reply whose HTTP status was not 200."""
    return _HTTP_TO_CODE.get(http_status, StatusCode.UNKNOWN)


def code_of_number(number: str) -> StatusCode:
    """The code a ``grpc-status`` value names; a value gRPC does not define is UNKNOWN."""
    try:
        return _BY_NUMBER.get(int(number), StatusCode.UNKNOWN)
    except ValueError:
        return StatusCode.UNKNOWN


def decode_message(value: str) -> str:
    """A ``grpc-message`` as sent (percent-encoded UTF-8) back to its text."""
    if "%" not in value:
        return value
    return unquote(value, encoding="utf-8", errors="replace")


def encode_message(text: str) -> str:
    """Text as a ``grpc-message`` value: anything outside printable ASCII, and '%', percent-encoded."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~", encoding="utf-8")
