"""The SQL store, on SQLite (the embedded default) or PostgreSQL: one module per aggregate over one
shared database."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from visassist.store.base import (
    AccountStore,
    ApiKeyStore,
    AuditLog,
    FieldStore,
    NodeStore,
    OutboxStore,
    SessionStore,
    StaffViews,
    Store,
)
from visassist.store.sqlite.accounts import SqliteAccounts
from visassist.store.sqlite.api_keys import SqliteApiKeys
from visassist.store.sqlite.audit import SqliteAudit
from visassist.store.sqlite.database import Database
from visassist.store.sqlite.fields import SqliteFields
from visassist.store.sqlite.nodes import SqliteNodes
from visassist.store.sqlite.outbox import SqliteOutbox
from visassist.store.sqlite.sessions import SqliteSessions
from visassist.store.sqlite.staff import SqliteStaffViews

__all__ = ["Database", "SqliteStore"]


PARTS = (SqliteSessions, SqliteFields, SqliteOutbox, SqliteAccounts, SqliteApiKeys, SqliteAudit, SqliteNodes,
         SqliteStaffViews)


class SqliteStore(SqliteSessions, SqliteFields, SqliteOutbox, SqliteAccounts, SqliteApiKeys, SqliteAudit,
                  SqliteNodes, SqliteStaffViews):
    """Every aggregate over one database (one connection, one write lock), so a write that spans two
    (a user created and its audit entry) is still one transaction."""

    def __init__(self, url: str) -> None:
        database = Database(url)
        for part in PARTS:
            part.__init__(self, database)

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()

    async def prune(self, idempotency_before: datetime, login_failures_before: datetime) -> dict[str, int]:
        return {"idempotency_keys": await self.prune_idempotency_keys(idempotency_before),
                "login_failures": await self.prune_login_failures(login_failures_before)}


if TYPE_CHECKING:  # each part stands alone for its interface (mypy checks these assignments)
    _sessions: type[SessionStore] = SqliteSessions
    _fields: type[FieldStore] = SqliteFields
    _outbox: type[OutboxStore] = SqliteOutbox
    _accounts: type[AccountStore] = SqliteAccounts
    _api_keys: type[ApiKeyStore] = SqliteApiKeys
    _audit: type[AuditLog] = SqliteAudit
    _nodes: type[NodeStore] = SqliteNodes
    _staff: type[StaffViews] = SqliteStaffViews
    _store: type[Store] = SqliteStore
