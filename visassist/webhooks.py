"""Signed webhooks from a durable outbox.

Every timeline event a ticket system cares about (the event models say which, visassist/events.py)
is turned into a webhook payload by the Outbox, a subscriber of the event bus: one delivery row per
subscribed endpoint. An event stays marked in the store until the Outbox has handed it over, so none is
lost to a crash in between. The Dispatcher below sends them: at least once, in order per session and
endpoint, retried with exponential backoff and jitter, each attempt recorded. Pending rows survive a
restart.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from visassist.adapters import Adapter, AdapterError
from visassist.events import WEBHOOK_TYPES, Event
from visassist.models import DueDelivery, FieldStatus, Session, iso, utcnow
from visassist.schemas import FieldOut, RecordingOut, SnapshotOut, api_folder

if TYPE_CHECKING:
    from visassist.store.base import MediaReads, OutboxSource, OutboxStore

log = logging.getLogger(__name__)

# The webhook types are the events whose model says so (visassist/events.py).
ALL_TYPES = tuple(t.value for t in WEBHOOK_TYPES)
SIGNATURE_HEADER = "Visassist-Signature"
TOLERANCE_SECONDS = 300
# A claimed delivery is held for this long: far past any send's timeout, so while one node sends it no
# other does; if that node dies mid-send, another sends it after the hold.
CLAIM_HOLD = timedelta(minutes=2)


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


@dataclass(frozen=True)
class _Media:
    """A session's snapshots and recordings as a webhook receiver sees them (absolute URLs), read
    only by the events whose body shows them."""

    store: MediaReads
    session_id: str
    base: str

    async def _confirmed(self) -> list[FieldOut]:
        return [FieldOut.of(f) for f in await self.store.fields(self.session_id, FieldStatus.CONFIRMED)]

    async def snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        snapshot = await self.store.snapshot(self.session_id, snapshot_id)
        folder = api_folder(self.session_id, "snapshots", self.base)
        return None if snapshot is None else SnapshotOut.of(
            snapshot, folder, await self._confirmed()).model_dump(mode="json")

    async def snapshots(self) -> list[dict[str, Any]]:
        folder = api_folder(self.session_id, "snapshots", self.base)
        confirmed = await self._confirmed()
        return [SnapshotOut.of(s, folder, confirmed).model_dump(mode="json")
                for s in await self.store.snapshots(self.session_id)]

    async def fields(self) -> list[dict[str, Any]]:
        return [f.model_dump(mode="json") for f in await self._confirmed()]

    async def recordings(self) -> list[dict[str, Any]]:
        folder = api_folder(self.session_id, "recordings", self.base)
        return [RecordingOut.of(r, folder).model_dump(mode="json")
                for r in await self.store.recordings(self.session_id)]


async def payload(event: Event, session: Session, store: MediaReads, base: str) -> dict[str, Any]:
    """The webhook body for one timeline event; what `data` carries is the event model's to say."""
    return {"id": f"evt_{event.seq}", "type": event.type.value, "created_at": iso(event.at),
            "session_id": session.id, "ticket_id": session.ticket_id,
            "record_url": record_url(base, session.ticket_id),
            "data": await event.data.webhook_body(_Media(store, session.id, base))}


def record_url(base: str, ticket_id: str) -> str:
    """The ticket's record as a page for signed-in staff (visassist/records.py)."""
    return f"{base}/tickets/{quote(ticket_id, safe='')}"


class Outbox:
    """Subscribes to recorded events and turns each webhook event into one signed delivery per
    subscribed endpoint. An event is marked in the store until it is handed over, so events recorded
    just before a crash are enqueued at the next start (catch_up)."""

    def __init__(self, store: OutboxSource, base: str) -> None:
        self.store = store
        self.base = base  # absolute links in payloads

    async def __call__(self, event: Event) -> None:
        if not event.data.webhook:
            return
        session = await self.store.get_session(event.session_id)
        if session is None:  # sessions are never deleted (erasure anonymises them)
            log.warning("event %d: no session %s, no webhook", event.seq, event.session_id)
            return
        body = await payload(event, session, self.store, self.base)
        await self.store.enqueue_deliveries(event, event.type.value, encode(body))

    async def catch_up(self) -> int:
        handed, previous = 0, None
        while pending := await self.store.outbox_pending(limit=100):
            if [e.seq for e in pending] == previous:
                break  # none of these could be handed over: do not spin at start-up
            previous = [e.seq for e in pending]
            for event in pending:
                await self(event)
            handed += len(pending)
        return handed


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

    def __init__(self, store: OutboxStore, backoff: Backoff, timeout: float = 10.0,
                 on_attempt: Callable[[str | None], None] | None = None) -> None:
        self.on_attempt = on_attempt  # told each attempt's error (None: delivered), for /metrics
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
        now = utcnow()
        # Held for longer than a send can take (the client's timeout), so no other node sends it too.
        due = await self.store.claim_deliveries(now, 50, now + CLAIM_HOLD)
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _deliver(self, delivery: DueDelivery) -> None:
        body = delivery.payload.encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(delivery.secret, body, int(time.time())),
                   "Visassist-Event-Id": f"evt_{delivery.event_seq}",
                   "Visassist-Event-Type": delivery.type,
                   "Visassist-Delivery": str(delivery.id)}
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        adapter = self.adapters.get(delivery.url.split(":", 1)[0])
        try:
            if adapter is not None:
                status = await adapter.deliver(json.loads(body))
            else:
                async with self.http.post(delivery.url, data=body, headers=headers) as response:
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
        attempts = delivery.attempts + 1
        give_up = error is not None and now - delivery.created_at > timedelta(
            seconds=self.backoff.give_up_after)
        retry_at = now + timedelta(seconds=self.backoff.delay(attempts))
        await self.store.record_attempt(delivery.id, now, status, error, duration_ms,
                                        retry_at=None if error is None else retry_at, give_up=give_up)
        if self.on_attempt is not None:
            self.on_attempt(error)
        if error:
            log.info("webhook %s to %s failed (%s); attempt %d", delivery.id, delivery.url, error,
                     attempts)


def encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)
