"""Alembic revisions of the hot-symbol store, oldest first."""
