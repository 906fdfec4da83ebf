"""AuditLog: who did what on the admin side."""

from __future__ import annotations

from typing import Any

from visassist.models import AuditEntry
from visassist.store.sql.database import Database, _audit_entry, insert_audit, shielded


class SqlAudit:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def audit(self, actor: str, action: str, target: str, data: dict[str, Any]) -> None:
        async with self.database.transaction() as db:
            await insert_audit(db, actor, action, target, data)

    async def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        rows = await self.database.all("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [_audit_entry(r) for r in rows]
