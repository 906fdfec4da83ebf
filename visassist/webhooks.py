"""Signed webhooks from a durable outbox.

Every timeline event a ticket system cares about is turned into a webhook payload in the same
transaction that records the event (visassist/store/sqlite.py), one delivery row per subscribed
endpoint. The Dispatcher below sends them: at least once, in order per session and endpoint, retried
with exponential backoff and jitter, each attempt recorded. Pending rows survive a restart.

Signature (Stripe-style): header `Visassist-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the
HMAC key is the endpoint's secret and the message is "<t>.<raw body>". Receivers check it with
`verify()` (or the README's snippet) and refuse timestamps older than five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from visassist.adapters import Adapter, AdapterError
from visassist.models import EventType, iso, utcnow

if TYPE_CHECKING:
    from visassist.store.base import Store

log = logging.getLogger(__name__)

# Timeline events that become webhooks, by the webhook's type name.
WEBHOOK_TYPES: dict[EventType, str] = {
    EventType.SESSION_CREATED: "session.created",
    EventType.PARTICIPANT_JOINED: "participant.joined",
    EventType.PARTICIPANT_LEFT: "participant.left",
    EventType.SNAPSHOT_CAPTURED: "snapshot.captured",
    EventType.SESSION_ENDED: "session.ended",
    EventType.SESSION_RATED: "session.rated",
}
ALL_TYPES = tuple(WEBHOOK_TYPES.values())
SIGNATURE_HEADER = "Visassist-Signature"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when `header` signs `body` with `secret` and is recent (replays are refused)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def snapshot_urls(base: str, session_id: str, snapshot_id: str) -> dict[str, str]:
    path = f"{base}/api/v1/sessions/{session_id}/snapshots/{snapshot_id}"
    return {"raw_url": f"{path}/raw.png", "annotated_url": f"{path}/annotated.png"}


def payload(seq: int, type: str, at: Any, session: dict[str, Any], data: dict[str, Any],
            snapshots: list[dict[str, Any]], base: str,
            recordings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The webhook body for one timeline event. `snapshots` and `recordings` are the session's rows."""
    body: dict[str, Any] = {}
    if type == "session.created":
        body = {"tier": session["tier"], "expires_at": iso(session["expires_at"])}
    elif type in ("participant.joined", "participant.left"):
        body = {k: data[k] for k in ("participant_id", "role", "name", "rejoin", "reason") if k in data}
    elif type == "snapshot.captured":
        snap = next(s for s in snapshots if s["id"] == data["snapshot_id"])
        body = {"snapshot": _snapshot(snap, session["id"], base)}
    elif type == "session.ended":
        body = {"outcome": data["outcome"], "notes": data["notes"],
                "duration_seconds": data["duration_seconds"],
                "snapshots": [_snapshot(s, session["id"], base) for s in snapshots],
                "recordings": [recording_view(r, base) for r in recordings or []]}
    elif type == "session.rated":
        body = {"rating": data["rating"], "comment": data.get("comment", "")}
    return {"id": f"evt_{seq}", "type": type, "created_at": iso(at), "session_id": session["id"],
            "ticket_id": session["ticket_id"], "data": body}


def recording_view(row: dict[str, Any], base: str) -> dict[str, Any]:
    """A recording as the API and webhooks show it, with the URL to download it (Range supported)."""
    return {"id": row["id"], "started_at": iso(row["started_at"]),
            "duration_seconds": row["duration_seconds"], "size_bytes": row["size_bytes"],
            "width": row["width"], "height": row["height"], "content_type": "video/webm",
            "url": f"{base}/api/v1/sessions/{row['session_id']}/recordings/{row['id']}"}


def _snapshot(row: dict[str, Any], session_id: str, base: str) -> dict[str, Any]:
    return {"id": row["id"], "source": row["source"], "taken_at": iso(row["taken_at"]),
            "width": row["width"], "height": row["height"],
            **snapshot_urls(base, session_id, row["id"])}


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: first retry after `base`, doubling up to `cap`."""

    base: float = 5.0
    cap: float = 600.0
    give_up_after: float = 3 * 24 * 3600.0  # a delivery still failing after this is marked failed

    def delay(self, attempts: int) -> float:
        raw = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return float(raw * random.uniform(0.5, 1.0))  # full-ish jitter: receivers coming back see a spread


class Dispatcher:
    """Sends due deliveries; wakes at once when an event is recorded, else polls every second."""

    def __init__(self, store: Store, backoff: Backoff, timeout: float = 10.0) -> None:
        self.adapters: dict[str, Adapter] = {}  # by URL scheme: help desks spoken to in their own API
        self.store = store
        self.backoff = backoff
        self.timeout = timeout
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                               headers={"User-Agent": "visassist-webhooks"})
        return self._http

    def start(self) -> None:
        self.store.on_enqueue = self.wake.set
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:
                log.exception("webhook dispatch failed")
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)
                self.wake.clear()

    async def deliver_due(self) -> int:
        due = await self.store.due_deliveries(utcnow(), limit=50)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _deliver(self, delivery: dict[str, Any]) -> None:
        body = delivery["payload"].encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(delivery["secret"], body, int(time.time())),
                   "Visassist-Event-Id": f"evt_{delivery['event_seq']}",
                   "Visassist-Event-Type": delivery["type"],
                   "Visassist-Delivery": str(delivery["id"])}
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        adapter = self.adapters.get(delivery["url"].split(":", 1)[0])
        try:
            if adapter is not None:
                status = await adapter.deliver(json.loads(body))
            else:
                async with self.http.post(delivery["url"], data=body, headers=headers) as response:
                    status = response.status
                    await response.read()
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
        except AdapterError as exc:
            status, error = exc.status, str(exc)[:300]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        duration_ms = int((time.monotonic() - started) * 1000)
        now = utcnow()
        attempts = delivery["attempts"] + 1
        give_up = error is not None and now - delivery["created_at"] > timedelta(
            seconds=self.backoff.give_up_after)
        retry_at = now + timedelta(seconds=self.backoff.delay(attempts))
        await self.store.record_attempt(delivery["id"], now, status, error, duration_ms,
                                        retry_at=None if error is None else retry_at, give_up=give_up)
        if error:
            log.info("webhook %s to %s failed (%s); attempt %d", delivery["id"], delivery["url"], error,
                     attempts)


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)
