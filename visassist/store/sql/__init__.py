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
from visassist.store.sql.accounts import SqlAccounts
from visassist.store.sql.api_keys import SqlApiKeys
from visassist.store.sql.audit import SqlAudit
from visassist.store.sql.database import Database
from visassist.store.sql.fields import SqlFields
from visassist.store.sql.nodes import SqlNodes
from visassist.store.sql.outbox import SqlOutbox
from visassist.store.sql.sessions import SqlSessions
from visassist.store.sql.staff import SqlStaffViews

__all__ = ["Database", "SqlStore"]


PARTS = (SqlSessions, SqlFields, SqlOutbox, SqlAccounts, SqlApiKeys, SqlAudit, SqlNodes,
         SqlStaffViews)


class SqlStore(SqlSessions, SqlFields, SqlOutbox, SqlAccounts, SqlApiKeys, SqlAudit,
                  SqlNodes, SqlStaffViews):
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
    _sessions: type[SessionStore] = SqlSessions
    _fields: type[FieldStore] = SqlFields
    _outbox: type[OutboxStore] = SqlOutbox
    _accounts: type[AccountStore] = SqlAccounts
    _api_keys: type[ApiKeyStore] = SqlApiKeys
    _audit: type[AuditLog] = SqlAudit
    _nodes: type[NodeStore] = SqlNodes
    _staff: type[StaffViews] = SqlStaffViews
    _store: type[Store] = SqlStore
