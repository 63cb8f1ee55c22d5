"""The hot-symbol store: where windowed hot-symbol counts end up, and how they are read.

``open_store(url)`` opens PostgreSQL (production) or SQLite (embedded
default) and runs the migrations; :class:`HotSymbolStore` adds deltas;
:class:`PendingWrites` buffers them while the store is down; the query
functions in :mod:`stellaops_runtime.store.queries` answer "was it observed?".

The names below are loaded on first use (PEP 562), so a command that only
reads the store (``query``, ``evidence``) does not import the writer, the
flush ledger and the PostgreSQL dialect it never uses.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "HotSymbolStore": "stellaops_runtime.store.writer",
    "PendingWrites": "stellaops_runtime.store.pending",
    "StoreError": "stellaops_runtime.store.engine",
    "StoreNotInitialized": "stellaops_runtime.store.engine",
    "StoreUnavailable": "stellaops_runtime.store.engine",
    "create_store_engine": "stellaops_runtime.store.engine",
    "migrate": "stellaops_runtime.store.engine",
    "normalize_url": "stellaops_runtime.store.engine",
    "open_store": "stellaops_runtime.store.engine",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
