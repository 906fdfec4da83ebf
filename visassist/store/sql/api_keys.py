"""ApiKeyStore: the keys ticket systems call the API with (kept as digests)."""

from __future__ import annotations

from datetime import datetime

from visassist.models import ApiKey, utcnow
from visassist.store.sql.database import Database, _api_key, _ts, insert_audit, shielded


class SqlApiKeys:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def create_api_key(self, key_id: str, name: str, key_digest: str) -> ApiKey:
        now = utcnow()
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, key_digest, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, key_digest, _ts(now)),
            )
        return ApiKey(id=key_id, name=name, created_at=now, last_used_at=None, revoked_at=None)

    async def api_key_by_digest(self, key_digest: str) -> ApiKey | None:
        row = await self.database.one("SELECT * FROM api_keys WHERE key_digest = ?", (key_digest,))
        return _api_key(row) if row else None

    @shielded
    async def touch_api_key(self, key_id: str, at: datetime) -> None:
        async with self.database.transaction() as db:
            await db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (_ts(at), key_id))

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self.database.all("SELECT * FROM api_keys ORDER BY created_at", ())
        return [_api_key(r) for r in rows]

    @shielded
    async def revoke_api_key(self, key_id: str, actor: str) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_ts(utcnow()), key_id))
            if cursor.rowcount == 1:
                await insert_audit(db, actor, "api_key.revoke", key_id, {})
            return cursor.rowcount == 1
