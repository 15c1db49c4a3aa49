"""The embedded SQLite store: a plain, documented schema (schema.sql) and its migrations."""

from galprof.store.db import Store, open_store  # noqa: F401
