"""Storage behind a small interface: SQLite is the embedded default, PostgreSQL for several nodes."""

from visassist.store.base import ConstraintViolation, DuplicateKey, IdempotencyConflict, Store, StoreError
from visassist.store.sql import SqlStore

__all__ = ["ConstraintViolation", "DuplicateKey", "IdempotencyConflict", "SqlStore", "Store", "StoreError"]
