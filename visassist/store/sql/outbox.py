"""OutboxStore: webhook endpoints and the delivery outbox the webhook subscriber fills."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from visassist.events import Event
from visassist.models import Attempt, Delivery, DueDelivery, WebhookBacklog, WebhookEndpoint, utcnow
from visassist.store.sql.database import (
    Database,
    Transaction,
    _attempt,
    _delivery,
    _dt,
    _due,
    _event,
    _ts,
    _webhook,
    shielded,
)


async def _due_ids(db: Database | Transaction, now: datetime, limit: int, lock: str = "") -> list[int]:
    """The ids of the pending deliveries whose time has come, each the oldest pending one of its
    session for its endpoint, oldest first."""
    rows = await db.all(
        "SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND NOT EXISTS ("
        "   SELECT 1 FROM deliveries e WHERE e.endpoint_id = d.endpoint_id"
        "   AND e.session_id = d.session_id AND e.status = 'pending' AND e.id < d.id)"
        f" ORDER BY d.id LIMIT ?{lock}", (_ts(now), limit))
    return [r["id"] for r in rows]


async def _sendable(db: Database | Transaction, ids: list[int]) -> list[DueDelivery]:
    """Those deliveries with what sending them needs (their endpoint's URL and secret)."""
    if not ids:
        return []
    rows = await db.all(
        "SELECT d.*, w.url, w.secret FROM deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        f" WHERE d.id IN ({_marks(ids)}) ORDER BY d.id", tuple(ids))
    return [_due(r) for r in rows]


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


class SqlOutbox:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.on_enqueue: Callable[[], None] | None = None  # the webhook dispatcher's wake-up

    @shielded
    async def enqueue_deliveries(self, event: Event, type: str, payload: str) -> int:
        """One delivery per endpoint subscribed to `type`, and the event marked as handed over."""
        async with self.database.transaction() as db:
            endpoints = [row["id"] for row in await self.database.all(
                "SELECT id, events FROM webhook_endpoints WHERE disabled_at IS NULL", ())
                if type in json.loads(row["events"])]
            for endpoint in endpoints:
                await db.execute(
                    "INSERT INTO deliveries (endpoint_id, event_seq, session_id, type, payload,"
                    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (endpoint, event.seq, event.session_id, type, payload, _ts(event.at), _ts(event.at)))
            await db.execute("UPDATE events SET outbox_pending = 0 WHERE seq = ?", (event.seq,))
        if endpoints and self.on_enqueue is not None:
            self.on_enqueue()
        return len(endpoints)

    async def outbox_pending(self, limit: int) -> list[Event]:
        """Events recorded but not yet handed to the outbox (the process stopped in between)."""
        rows = await self.database.all(
            "SELECT * FROM events WHERE outbox_pending = 1 ORDER BY seq LIMIT ?", (limit,))
        return [_event(r) for r in rows]

    @shielded
    async def create_webhook(self, endpoint_id: str, url: str, secret: str, events: list[str]) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO webhook_endpoints (id, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?)",
                (endpoint_id, url, secret, json.dumps(events), _ts(utcnow())))

    async def webhooks(self) -> list[WebhookEndpoint]:
        rows = await self.database.all("SELECT * FROM webhook_endpoints ORDER BY created_at", ())
        return [_webhook(r) for r in rows]

    @shielded
    async def disable_webhook(self, endpoint_id: str) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE webhook_endpoints SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL",
                (_ts(utcnow()), endpoint_id))
            # Nothing more goes out to it; what was pending is kept, marked, for the record.
            await db.execute("UPDATE deliveries SET status = 'cancelled' WHERE endpoint_id = ?"
                             " AND status = 'pending'", (endpoint_id,))
            return cursor.rowcount == 1

    @shielded
    async def ensure_internal_webhook(self, endpoint_id: str, url: str, events: list[str],
                                      enabled: bool) -> None:
        """An adapter's endpoint: present and active while the adapter is configured, else disabled."""
        async with self.database.transaction() as db:
            if enabled:
                await db.execute(
                    "INSERT INTO webhook_endpoints (id, url, secret, events, created_at)"
                    " VALUES (?, ?, '', ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                    " events = excluded.events, disabled_at = NULL",
                    (endpoint_id, url, json.dumps(events), _ts(utcnow())))
            else:
                await db.execute("UPDATE webhook_endpoints SET disabled_at = ? WHERE id = ?"
                                 " AND disabled_at IS NULL", (_ts(utcnow()), endpoint_id))

    async def due_deliveries(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Pending deliveries whose time has come, each the oldest pending one of its session for its
        endpoint (so a session's webhooks arrive in order)."""
        return await _sendable(self.database, await _due_ids(self.database, now, limit))

    @shielded
    async def claim_deliveries(self, now: datetime, limit: int, until: datetime) -> list[DueDelivery]:
        """The due deliveries (as due_deliveries) for this node to send, each held until `until`: no
        other node's claim returns them meanwhile, and record_attempt sets their next time. A node
        that dies while sending leaves them to be sent again once the hold is over.

        On PostgreSQL the rows are locked and others' locked rows skipped, so nodes claiming at once
        neither wait for each other nor take the same delivery."""
        lock = " FOR UPDATE OF d SKIP LOCKED" if self.database.dialect == "postgresql" else ""
        async with self.database.transaction(serializable=False) as db:
            ids = await _due_ids(db, now, limit, lock)
            if ids:
                await db.execute(f"UPDATE deliveries SET next_attempt_at = ? WHERE id IN ({_marks(ids)})",
                                 (_ts(until), *ids))
            return await _sendable(db, ids)

    @shielded
    async def record_attempt(self, delivery_id: int, at: datetime, status: int | None, error: str | None,
                             duration_ms: int, *, retry_at: datetime | None, give_up: bool) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, duration_ms)"
                " VALUES (?, ?, ?, ?, ?)", (delivery_id, _ts(at), status, error, duration_ms))
            if error is None:
                await db.execute(
                    "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = ?,"
                    " last_error = NULL WHERE id = ?", (_ts(at), delivery_id))
            else:
                await db.execute(
                    "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,"
                    " next_attempt_at = ? WHERE id = ?",
                    ("failed" if give_up else "pending", error, _ts(retry_at or at), delivery_id))

    async def deliveries(self, endpoint_id: str | None = None, status: str | None = None,
                         limit: int = 100) -> list[Delivery]:
        clauses, params = [], []
        if endpoint_id is not None:
            clauses.append("endpoint_id = ?")
            params.append(endpoint_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.database.all(f"SELECT * FROM deliveries {where} ORDER BY id DESC LIMIT ?",
                                       (*params, limit))
        attempts: dict[int, list[Attempt]] = {r["id"]: [] for r in rows}
        if rows:  # every attempt of the page in one query
            marks = ",".join("?" * len(rows))
            for a in await self.database.all(
                    "SELECT delivery_id, at, status_code, error, duration_ms FROM delivery_attempts"
                    f" WHERE delivery_id IN ({marks}) ORDER BY id", tuple(attempts)):
                attempts[a["delivery_id"]].append(_attempt(a))
        return [_delivery(r, attempts[r["id"]]) for r in rows]

    @shielded
    async def redeliver(self, delivery_id: int) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ?"
                " AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL)",
                (_ts(utcnow()), delivery_id))
        if cursor.rowcount == 1 and self.on_enqueue is not None:
            self.on_enqueue()
        return cursor.rowcount == 1

    async def webhook_backlog(self) -> WebhookBacklog:
        row = await self.database.one("SELECT COUNT(*) AS pending, MIN(created_at) AS oldest"
                                      " FROM deliveries WHERE status = 'pending'", ())
        failed = await self.database.one("SELECT COUNT(*) AS failed FROM deliveries"
                                         " WHERE status = 'failed'", ())
        assert row is not None and failed is not None
        return WebhookBacklog(pending=int(row["pending"]), oldest_pending_at=_dt(row["oldest"]),
                              failed=int(failed["failed"]))
