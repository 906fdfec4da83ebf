"""Storage behind a small interface; SQLite is the embedded default."""

from visassist.store.base import Store
from visassist.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
