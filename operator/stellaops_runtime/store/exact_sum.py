"""``exact_sum(column)``: the sum of a bigint column, exact on SQLite as on PostgreSQL.

Each stored count fits int8, but an answer sums many of them (every window of an image,
every function of a file), and such a sum may pass 2^63 - 1. PostgreSQL's ``sum(bigint)``
gives ``numeric``, exact. SQLite's ``sum()`` of integers raises "integer overflow", so the
CLI failed where PostgreSQL answered. On SQLite the column is summed in two halves, the high
and the low 32 bits, whose sums fit int8 for up to 2^31 rows; the result is read back as the
text ``"<high sum>,<low sum>"`` and put together here as one Python int (arbitrary size).
``x = (x >> 32) * 2^32 + (x & 0xFFFFFFFF)`` holds for negative ``x`` too (SQLite's ``>>`` keeps
the sign). Tests: tests/integration/test_store_sum_overflow.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

_LOW = 0xFFFFFFFF


def combine(value: Any) -> int | None:
    """The sum as the database gave it (``"high,low"`` on SQLite, numeric elsewhere) as an int."""
    if value is None:
        return None
    if isinstance(value, str):
        high, _, low = value.partition(",")
        return int(high) * (_LOW + 1) + int(low or 0)
    if isinstance(value, float | Decimal) and value != int(value):
        raise ValueError(f"a sum of counts is not whole: {value!r}")
    return int(value)


class _ExactSumType(sa.types.TypeDecorator[int]):
    """Reads the sum back through :func:`combine`."""

    impl = sa.types.String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> int | None:
        return combine(value)


class exact_sum(FunctionElement[int]):
    """``sum(column)``, exact past int8 on every backend (read as a Python int)."""

    type = _ExactSumType()
    inherit_cache = True
    name = "exact_sum"


@compiles(exact_sum)
def _sum(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "sqlite")
def _sum_sqlite(element: exact_sum, compiler: SQLCompiler, **kw: Any) -> str:
    x = compiler.process(element.clauses, **kw)
    return f"(sum(({x}) >> 32) || ',' || sum(({x}) & {_LOW}))"
