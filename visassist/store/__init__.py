"""Storage behind a small interface; SQLite is the embedded default."""

from visassist.store.base import ConstraintViolation, DuplicateKey, IdempotencyConflict, Store, StoreError
from visassist.store.sqlite import SqliteStore

__all__ = ["ConstraintViolation", "DuplicateKey", "IdempotencyConflict", "SqliteStore", "Store", "StoreError"]
