"""Alembic migrations of the hot-symbol store, run from code by ``store.engine.migrate``."""
