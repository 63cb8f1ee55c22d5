"""The hot-symbol store: where windowed hot-symbol counts end up, and how they are read.

``open_store(url)`` opens PostgreSQL (production) or SQLite (embedded
default) and runs the migrations; :class:`HotSymbolStore` adds deltas;
:class:`PendingWrites` buffers them while the store is down; the query
functions in :mod:`stellaops_runtime.store.queries` answer "was it observed?".
"""

from stellaops_runtime.store.engine import (
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
    create_store_engine,
    migrate,
    normalize_url,
    open_store,
)
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.writer import HotSymbolStore

__all__ = [
    "HotSymbolStore",
    "PendingWrites",
    "StoreError",
    "StoreNotInitialized",
    "StoreUnavailable",
    "create_store_engine",
    "migrate",
    "normalize_url",
    "open_store",
]
