"""The DB-API 2.0 exceptions pgwire raises, and which one a server's SQLSTATE becomes.

The agent's store layer catches psycopg's exception classes by their DB-API names
(store/errors.py); pgwire's connections must raise the same kinds for the same
server errors, so the table below follows psycopg's own (``psycopg.errors``
``_base_exc_map``, psycopg 3.3): the SQLSTATE's two-character class first, then
its first character, else :class:`DatabaseError`.
"""

from __future__ import annotations


class Error(Exception):
    """Base of every pgwire error. ``sqlstate`` is None for client-side and connection errors."""

    def __init__(
        self, message: str = "", *, sqlstate: str | None = None, fields: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.pgerror = message
        self.fields: dict[str, str] = fields or {}


class InterfaceError(Error):
    """The client was used wrongly (e.g. a closed cursor)."""


class DatabaseError(Error):
    """An error reported by, or about, the database."""


class DataError(DatabaseError):
    """A value could not be sent or stored (SQLSTATE class 22, a NUL in text, an int too big)."""


class OperationalError(DatabaseError):
    """The connection failed or the server could not do the work (class 08, 53, 57, 40...)."""


class IntegrityError(DatabaseError):
    """A constraint was violated (class 23)."""


class InternalError(DatabaseError):
    """Transaction or internal state errors (classes 24, 25, 2B, 2D, X)."""


class ProgrammingError(DatabaseError):
    """The statement is wrong (class 42 and friends, a bad placeholder)."""


class NotSupportedError(DatabaseError):
    """A feature the server does not support (class 0A)."""


class UnsupportedAuthentication(OperationalError):
    """The server asked for an authentication method pgwire does not speak (GSSAPI, SSPI,
    SCRAM-SHA-256-PLUS only): the caller may fall back to psycopg."""


_BY_CLASS: dict[str, type[DatabaseError]] = {
    "08": OperationalError,
    "0A": NotSupportedError,
    "10": ProgrammingError,
    "20": ProgrammingError,
    "21": ProgrammingError,
    "22": DataError,
    "23": IntegrityError,
    "24": InternalError,
    "25": InternalError,
    "26": ProgrammingError,
    "27": OperationalError,
    "28": OperationalError,
    "2B": InternalError,
    "2D": InternalError,
    "2F": OperationalError,
    "34": ProgrammingError,
    "38": OperationalError,
    "39": OperationalError,
    "3B": OperationalError,
    "3D": ProgrammingError,
    "3F": ProgrammingError,
    "40": OperationalError,
    "42": ProgrammingError,
    "44": ProgrammingError,
    "53": OperationalError,
    "54": OperationalError,
    "55": OperationalError,
    "57": OperationalError,
    "58": OperationalError,
    "F": OperationalError,
    "H": OperationalError,
    "P": ProgrammingError,
    "X": InternalError,
}


def class_for(sqlstate: str) -> type[DatabaseError]:
    """The exception class psycopg raises for this SQLSTATE."""
    return _BY_CLASS.get(sqlstate[:2]) or _BY_CLASS.get(sqlstate[:1]) or DatabaseError


def from_fields(fields: dict[str, str]) -> DatabaseError:
    """The exception for an ErrorResponse's fields (``S``everity, ``C``ode, ``M``essage...)."""
    code = fields.get("C", "")
    message = fields.get("M", "")
    text = f"{message}\nDETAIL:  {fields['D']}" if "D" in fields else message
    return class_for(code)(text, sqlstate=code or None, fields=fields)
