"""BacklogStore: how far the webhook outbox is behind, for /metrics (visassist/metrics.py)."""

from __future__ import annotations

from visassist.models import WebhookBacklog
from visassist.store.sqlite.database import Database, _dt


class SqliteBacklog:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def webhook_backlog(self) -> WebhookBacklog:
        row = await self.database.one("SELECT COUNT(*) AS pending, MIN(created_at) AS oldest"
                                      " FROM deliveries WHERE status = 'pending'", ())
        failed = await self.database.one("SELECT COUNT(*) AS failed FROM deliveries"
                                         " WHERE status = 'failed'", ())
        assert row is not None and failed is not None
        return WebhookBacklog(pending=int(row["pending"]), oldest_pending_at=_dt(row["oldest"]),
                              failed=int(failed["failed"]))
