"""SQLite store (WAL, one connection, writes serialised by a lock). State change and event commit together."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite

from visassist.events import (
    Event,
    EventData,
    ParticipantInvited,
    RecordingStored,
    RetentionPurged,
    SessionCreated,
    SessionEnded,
    SessionExpired,
    SessionRated,
    SessionRevoked,
    SnapshotAnnotated,
    SnapshotCaptured,
    TicketErased,
    parse_data,
)
from visassist.models import (
    ApiKey,
    Attempt,
    AuditEntry,
    Delivery,
    DueDelivery,
    EventType,
    Outcome,
    Participant,
    Rating,
    Recording,
    Role,
    Session,
    Snapshot,
    SnapshotSource,
    Status,
    User,
    WebhookEndpoint,
    WebSession,
    stamp,
    utcnow,
)
from visassist.store.base import ConstraintViolation, DuplicateKey, IdempotencyConflict
from visassist.tasks import finish

# Each entry moves the schema one version on; PRAGMA user_version records where a database is.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        tier INTEGER NOT NULL,
        customer TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        outcome TEXT,
        notes TEXT,
        ended_by TEXT
    );
    CREATE INDEX sessions_ticket ON sessions (ticket_id, created_at);
    CREATE INDEX sessions_open ON sessions (status) WHERE status IN ('waiting', 'live');
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        token_digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE INDEX participants_session ON participants (session_id);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_session ON events (session_id, seq);
    CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        ticket_id TEXT NOT NULL,
        taken_at TEXT NOT NULL,
        taken_by TEXT NOT NULL,
        source TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        annotations TEXT NOT NULL,
        raw_key TEXT NOT NULL,
        annotated_key TEXT NOT NULL
    );
    CREATE INDEX snapshots_session ON snapshots (session_id, taken_at);
    """,
    """
    ALTER TABLE sessions ADD COLUMN audio INTEGER NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
        event_seq INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE INDEX deliveries_order ON deliveries (endpoint_id, session_id, id);
    CREATE TABLE delivery_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
        at TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL
    );
    CREATE INDEX attempts_delivery ON delivery_attempts (delivery_id, id);
    CREATE TABLE idempotency_keys (
        api_key_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        session_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (api_key_id, key)
    );
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE web_sessions (
        digest TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id),
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        data TEXT NOT NULL
    );
    ALTER TABLE participants ADD COLUMN user_id TEXT;
    CREATE TABLE ratings (
        session_id TEXT PRIMARY KEY REFERENCES sessions (id),
        rating INTEGER NOT NULL,
        comment TEXT NOT NULL,
        at TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE sessions ADD COLUMN record INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id),
        ticket_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        duration_seconds REAL NOT NULL,
        size_bytes INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        key TEXT NOT NULL
    );
    CREATE INDEX recordings_session ON recordings (session_id, started_at);
    """,
    # The webhook outbox subscribes to events: an event waits here until its deliveries are enqueued,
    # so a crash between the two is caught up at start.
    """
    ALTER TABLE events ADD COLUMN outbox_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX events_outbox ON events (seq) WHERE outbox_pending = 1;
    """,
]


P = ParamSpec("P")
R = TypeVar("R")


def shielded(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A write runs to its end even if its caller is cancelled (a socket closing mid-write).

    Cancelling a write half-way would leave the connection inside an open transaction, and every
    later write would fail; a cancelled caller simply stops waiting for the result.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await finish(method(*args, **kwargs))

    return wrapper


def _ts(moment: datetime | None) -> str | None:
    # Fixed-width UTC text, so SQL string comparison is time comparison.
    return None if moment is None else stamp(moment)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _session(row: aiosqlite.Row) -> Session:
    created_at = _dt(row["created_at"])
    expires_at = _dt(row["expires_at"])
    assert created_at is not None and expires_at is not None
    return Session(
        id=row["id"], ticket_id=row["ticket_id"], tier=row["tier"],
        customer=json.loads(row["customer"]), status=Status(row["status"]),
        created_at=created_at, expires_at=expires_at,
        started_at=_dt(row["started_at"]), ended_at=_dt(row["ended_at"]),
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        notes=row["notes"], ended_by=row["ended_by"], audio=bool(row["audio"]),
        record=bool(row["record"]),
    )


def _recording(row: aiosqlite.Row) -> Recording:
    started_at, ended_at = _dt(row["started_at"]), _dt(row["ended_at"])
    assert started_at is not None and ended_at is not None
    return Recording(id=row["id"], session_id=row["session_id"], ticket_id=row["ticket_id"],
                     started_at=started_at, ended_at=ended_at, duration_seconds=row["duration_seconds"],
                     size_bytes=row["size_bytes"], width=row["width"], height=row["height"],
                     key=row["key"])


def _event(row: aiosqlite.Row) -> Event:
    at = _dt(row["at"])
    assert at is not None
    return Event(seq=row["seq"], session_id=row["session_id"], at=at, actor=row["actor"],
                 data=parse_data(EventType(row["type"]), json.loads(row["data"])))


def _snapshot(row: aiosqlite.Row) -> Snapshot:
    taken_at = _dt(row["taken_at"])
    assert taken_at is not None
    return Snapshot(
        id=row["id"], session_id=row["session_id"], ticket_id=row["ticket_id"], taken_at=taken_at,
        taken_by=row["taken_by"], source=SnapshotSource(row["source"]), width=row["width"],
        height=row["height"], annotations=json.loads(row["annotations"]),
        raw_key=row["raw_key"], annotated_key=row["annotated_key"],
    )


def _participant(row: aiosqlite.Row) -> Participant:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return Participant(id=row["id"], session_id=row["session_id"], role=Role(row["role"]),
                       name=row["name"], created_at=created_at, user_id=row["user_id"])


def _api_key(row: aiosqlite.Row) -> ApiKey:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return ApiKey(id=row["id"], name=row["name"], created_at=created_at,
                  last_used_at=_dt(row["last_used_at"]), revoked_at=_dt(row["revoked_at"]))


def _user(row: aiosqlite.Row) -> User:
    return User(id=row["id"], email=row["email"], name=row["name"], role=row["role"],
                password_hash=row["password_hash"], created_at=_at(row["created_at"]),
                disabled_at=_dt(row["disabled_at"]))


def _webhook(row: aiosqlite.Row) -> WebhookEndpoint:
    return WebhookEndpoint(id=row["id"], url=row["url"], events=json.loads(row["events"]),
                           created_at=_at(row["created_at"]), disabled_at=_dt(row["disabled_at"]))


def _due(row: aiosqlite.Row) -> DueDelivery:
    return DueDelivery(id=row["id"], endpoint_id=row["endpoint_id"], event_seq=row["event_seq"],
                       session_id=row["session_id"], type=row["type"], payload=row["payload"],
                       attempts=row["attempts"], created_at=_at(row["created_at"]), url=row["url"],
                       secret=row["secret"])


def _attempt(row: aiosqlite.Row) -> Attempt:
    return Attempt(at=_at(row["at"]), status_code=row["status_code"], error=row["error"],
                   duration_ms=row["duration_ms"])


def _delivery(row: aiosqlite.Row, attempts: list[Attempt]) -> Delivery:
    return Delivery(id=row["id"], endpoint_id=row["endpoint_id"], event_seq=row["event_seq"],
                    session_id=row["session_id"], type=row["type"], status=row["status"], attempts=attempts,
                    last_error=row["last_error"], created_at=_at(row["created_at"]),
                    delivered_at=_dt(row["delivered_at"]), next_attempt_at=_at(row["next_attempt_at"]))


def _audit_entry(row: aiosqlite.Row) -> AuditEntry:
    return AuditEntry(id=row["id"], at=_at(row["at"]), actor=row["actor"], action=row["action"],
                      target=row["target"], data=json.loads(row["data"]))


async def _insert_participant(db: aiosqlite.Connection, participant: Participant,
                              token_digest: str) -> None:
    await db.execute(
        "INSERT INTO participants (id, session_id, role, name, token_digest, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (participant.id, participant.session_id, participant.role.value, participant.name,
         token_digest, _ts(participant.created_at)))


def _domain_error(exc: sqlite3.IntegrityError) -> Exception:
    if isinstance(exc, DuplicateKey | ConstraintViolation):
        return exc
    if "UNIQUE constraint failed" in str(exc):
        return DuplicateKey(str(exc))
    return ConstraintViolation(str(exc))


class SqliteStore:
    def __init__(self, path: Path, public_base: str = "http://127.0.0.1:8080") -> None:
        self._path = path
        self.public_base = public_base  # absolute links in webhook payloads
        self.on_enqueue: Callable[[], None] | None = None  # the webhook dispatcher's wake-up
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._db.execute("PRAGMA foreign_keys = ON")
        await self._db.execute("PRAGMA busy_timeout = 5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database {self._path} has schema version {version}, newer than this "
                f"visassist knows ({len(MIGRATIONS)}); upgrade visassist"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException as exc:
                await self.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise _domain_error(exc) from exc
                raise
            await self.db.execute("COMMIT")

    async def _one(self, sql: str, params: tuple[Any, ...]) -> aiosqlite.Row | None:
        async with self.db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return row

    async def _all(self, sql: str, params: tuple[Any, ...]) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _insert_event(self, db: aiosqlite.Connection, session_id: str, data: EventData,
                            actor: str, at: datetime) -> Event:
        cursor = await db.execute(
            "INSERT INTO events (session_id, type, at, actor, data, outbox_pending)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, data.type.value, _ts(at), actor, json.dumps(data.public()), int(data.webhook)),
        )
        seq = cursor.lastrowid
        assert seq is not None
        return Event(seq=seq, session_id=session_id, at=at, actor=actor, data=data)

    # The outbox: filled by the webhook subscriber (visassist/webhooks.py) after each event

    @shielded
    async def enqueue_deliveries(self, event: Event, type: str, payload: str) -> int:
        """One delivery per endpoint subscribed to `type`, and the event marked as handed over."""
        async with self._transaction() as db:
            endpoints = [row["id"] for row in await self._all(
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
        rows = await self._all(
            "SELECT * FROM events WHERE outbox_pending = 1 ORDER BY seq LIMIT ?", (limit,))
        return [_event(r) for r in rows]

    # API keys

    @shielded
    async def create_api_key(self, key_id: str, name: str, key_digest: str) -> ApiKey:
        now = utcnow()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (id, name, key_digest, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, key_digest, _ts(now)),
            )
        return ApiKey(id=key_id, name=name, created_at=now, last_used_at=None, revoked_at=None)

    async def api_key_by_digest(self, key_digest: str) -> ApiKey | None:
        row = await self._one("SELECT * FROM api_keys WHERE key_digest = ?", (key_digest,))
        return _api_key(row) if row else None

    @shielded
    async def touch_api_key(self, key_id: str, at: datetime) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (_ts(at), key_id))

    async def list_api_keys(self) -> list[ApiKey]:
        return [_api_key(r) for r in await self._all("SELECT * FROM api_keys ORDER BY created_at", ())]

    # Sessions and participants

    @shielded
    async def create_session(
        self, session: Session, participants: list[tuple[Participant, str]], actor: str,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Event:
        async with self._transaction() as db:
            if idempotency is not None:
                # (api key id, Idempotency-Key, request digest): a concurrent twin fails here, whole.
                try:
                    await db.execute(
                        "INSERT INTO idempotency_keys (api_key_id, key, request_digest, session_id,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (*idempotency, session.id, _ts(session.created_at)))
                except sqlite3.IntegrityError as exc:
                    raise IdempotencyConflict(str(exc)) from exc
            await db.execute(
                "INSERT INTO sessions (id, ticket_id, tier, customer, status, created_at, expires_at,"
                " audio, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.ticket_id, session.tier, json.dumps(session.customer),
                 session.status.value, _ts(session.created_at), _ts(session.expires_at),
                 int(session.audio), int(session.record)),
            )
            for participant, token_digest in participants:
                await _insert_participant(db, participant, token_digest)
            return await self._insert_event(db, session.id, SessionCreated.of(session), actor,
                                            session.created_at)

    @shielded
    async def add_participant(self, participant: Participant, token_digest: str, actor: str,
                              limit: int) -> Event | None:
        """Add an invited participant; None when the session already has `limit` participants."""
        async with self._transaction() as db:
            row = await self._one("SELECT COUNT(*) AS n FROM participants WHERE session_id = ?",
                                  (participant.session_id,))
            if row is not None and row["n"] >= limit:
                return None
            await _insert_participant(db, participant, token_digest)
            return await self._insert_event(
                db, participant.session_id,
                ParticipantInvited(participant_id=participant.id, role=participant.role,
                                   name=participant.name),
                actor, participant.created_at)

    async def get_session(self, session_id: str) -> Session | None:
        row = await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return _session(row) if row else None

    async def sessions_for_ticket(self, ticket_id: str) -> list[Session]:
        rows = await self._all(
            "SELECT * FROM sessions WHERE ticket_id = ? ORDER BY created_at", (ticket_id,))
        return [_session(r) for r in rows]

    async def open_sessions(self) -> list[Session]:
        rows = await self._all("SELECT * FROM sessions WHERE status IN ('waiting', 'live')", ())
        return [_session(r) for r in rows]

    async def participant_by_token(self, token_digest: str) -> Participant | None:
        row = await self._one("SELECT * FROM participants WHERE token_digest = ?", (token_digest,))
        return _participant(row) if row else None

    async def participants(self, session_id: str) -> list[Participant]:
        rows = await self._all(
            "SELECT * FROM participants WHERE session_id = ? ORDER BY created_at", (session_id,))
        return [_participant(r) for r in rows]

    @shielded
    async def mark_live(self, session_id: str, at: datetime) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'live', started_at = ? WHERE id = ? AND status = 'waiting'",
                (_ts(at), session_id),
            )
            return cursor.rowcount == 1

    @shielded
    async def end_session(
        self, session_id: str, outcome: Outcome, notes: str, actor: str, at: datetime,
        connected: list[str],
    ) -> tuple[Session, Event] | None:
        async with self._transaction() as db:
            # A session that never went live still has a duration of zero, not none.
            cursor = await db.execute(
                "UPDATE sessions SET status = 'ended', ended_at = ?, outcome = ?, notes = ?,"
                " ended_by = ?, started_at = COALESCE(started_at, ?)"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at > ?",
                (_ts(at), outcome.value, notes, actor, _ts(at), session_id, _ts(at)),
            )
            if cursor.rowcount != 1:
                return None
            row = await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
            assert row is not None
            session = _session(row)
            event = await self._insert_event(
                db, session_id, SessionEnded(connected=connected, outcome=outcome, notes=notes,
                                             duration_seconds=session.duration_seconds),
                actor, at)
            return session, event

    @shielded
    async def expire_session(self, session_id: str, at: datetime) -> Event | None:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'expired', ended_at = ?"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at <= ?",
                (_ts(at), session_id, _ts(at)),
            )
            if cursor.rowcount != 1:
                return None
            return await self._insert_event(db, session_id, SessionExpired(), "system", at)

    # Timeline

    @shielded
    async def append_event(self, session_id: str, data: EventData, actor: str, at: datetime) -> Event:
        async with self._transaction() as db:
            return await self._insert_event(db, session_id, data, actor, at)

    async def events(self, session_id: str) -> list[Event]:
        rows = await self._all("SELECT * FROM events WHERE session_id = ? ORDER BY seq", (session_id,))
        return [_event(r) for r in rows]

    # Snapshots

    @shielded
    async def add_snapshot(self, snapshot: Snapshot) -> Event:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO snapshots (id, session_id, ticket_id, taken_at, taken_by, source, width,"
                " height, annotations, raw_key, annotated_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (snapshot.id, snapshot.session_id, snapshot.ticket_id, _ts(snapshot.taken_at),
                 snapshot.taken_by, snapshot.source.value, snapshot.width, snapshot.height,
                 json.dumps(snapshot.annotations), snapshot.raw_key, snapshot.annotated_key),
            )
            return await self._insert_event(
                db, snapshot.session_id,
                SnapshotCaptured(snapshot_id=snapshot.id, source=snapshot.source, width=snapshot.width,
                                 height=snapshot.height, shapes=len(snapshot.annotations)),
                snapshot.taken_by, snapshot.taken_at)

    @shielded
    async def annotate_snapshot(self, session_id: str, snapshot_id: str,
                                annotations: list[dict[str, Any]], annotated_key: str, actor: str,
                                at: datetime) -> Event | None:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE snapshots SET annotations = ?, annotated_key = ? WHERE session_id = ? AND id = ?",
                (json.dumps(annotations), annotated_key, session_id, snapshot_id))
            if cursor.rowcount != 1:
                return None
            return await self._insert_event(
                db, session_id, SnapshotAnnotated(snapshot_id=snapshot_id, shapes=len(annotations)),
                actor, at)

    @shielded
    async def add_recording(self, recording: Recording) -> Event:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO recordings (id, session_id, ticket_id, started_at, ended_at, duration_seconds,"
                " size_bytes, width, height, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (recording.id, recording.session_id, recording.ticket_id, _ts(recording.started_at),
                 _ts(recording.ended_at), recording.duration_seconds, recording.size_bytes,
                 recording.width, recording.height, recording.key))
            stored = RecordingStored(recording_id=recording.id, duration_seconds=recording.duration_seconds,
                                     size_bytes=recording.size_bytes)
            return await self._insert_event(db, recording.session_id, stored, "system", recording.ended_at)

    async def recordings(self, session_id: str) -> list[Recording]:
        rows = await self._all(
            "SELECT * FROM recordings WHERE session_id = ? ORDER BY started_at, id", (session_id,))
        return [_recording(r) for r in rows]

    async def recording(self, session_id: str, recording_id: str) -> Recording | None:
        row = await self._one("SELECT * FROM recordings WHERE session_id = ? AND id = ?",
                              (session_id, recording_id))
        return _recording(row) if row else None

    async def snapshots(self, session_id: str) -> list[Snapshot]:
        rows = await self._all(
            "SELECT * FROM snapshots WHERE session_id = ? ORDER BY taken_at, id", (session_id,))
        return [_snapshot(r) for r in rows]

    async def snapshot(self, session_id: str, snapshot_id: str) -> Snapshot | None:
        row = await self._one(
            "SELECT * FROM snapshots WHERE session_id = ? AND id = ?", (session_id, snapshot_id))
        return _snapshot(row) if row else None

    # Webhooks

    @shielded
    async def create_webhook(self, endpoint_id: str, url: str, secret: str, events: list[str]) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO webhook_endpoints (id, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?)",
                (endpoint_id, url, secret, json.dumps(events), _ts(utcnow())))

    async def webhooks(self) -> list[WebhookEndpoint]:
        rows = await self._all("SELECT * FROM webhook_endpoints ORDER BY created_at", ())
        return [_webhook(r) for r in rows]

    @shielded
    async def disable_webhook(self, endpoint_id: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE webhook_endpoints SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL",
                (_ts(utcnow()), endpoint_id))
            # Nothing more goes out to it; what was pending is kept, marked, for the record.
            await db.execute("UPDATE deliveries SET status = 'cancelled' WHERE endpoint_id = ?"
                             " AND status = 'pending'", (endpoint_id,))
            return cursor.rowcount == 1

    async def due_deliveries(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Pending deliveries whose time has come, each the oldest pending one of its session for its
        endpoint (so a session's webhooks arrive in order)."""
        rows = await self._all(
            "SELECT d.*, w.url, w.secret FROM deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND NOT EXISTS ("
            "   SELECT 1 FROM deliveries e WHERE e.endpoint_id = d.endpoint_id"
            "   AND e.session_id = d.session_id AND e.status = 'pending' AND e.id < d.id)"
            " ORDER BY d.id LIMIT ?", (_ts(now), limit))
        return [_due(r) for r in rows]

    @shielded
    async def record_attempt(self, delivery_id: int, at: datetime, status: int | None, error: str | None,
                             duration_ms: int, *, retry_at: datetime | None, give_up: bool) -> None:
        async with self._transaction() as db:
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
        rows = await self._all(f"SELECT * FROM deliveries {where} ORDER BY id DESC LIMIT ?",
                               (*params, limit))
        attempts: dict[int, list[Attempt]] = {r["id"]: [] for r in rows}
        if rows:  # every attempt of the page in one query
            marks = ",".join("?" * len(rows))
            for a in await self._all(
                    "SELECT delivery_id, at, status_code, error, duration_ms FROM delivery_attempts"
                    f" WHERE delivery_id IN ({marks}) ORDER BY id", tuple(attempts)):
                attempts[a["delivery_id"]].append(_attempt(a))
        return [_delivery(r, attempts[r["id"]]) for r in rows]

    @shielded
    async def redeliver(self, delivery_id: int) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ?"
                " AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL)",
                (_ts(utcnow()), delivery_id))
        if cursor.rowcount == 1 and self.on_enqueue is not None:
            self.on_enqueue()
        return cursor.rowcount == 1

    # Customer satisfaction

    @shielded
    async def rate(self, session_id: str, rating: int, comment: str, actor: str,
                   at: datetime) -> Event | None:
        """Store the customer's rating once; None when the session was already rated."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO ratings (session_id, rating, comment, at) VALUES (?, ?, ?, ?)",
                (session_id, rating, comment, _ts(at)))
            if cursor.rowcount != 1:
                return None
            return await self._insert_event(db, session_id, SessionRated(rating=rating, comment=comment),
                                            actor, at)

    async def rating(self, session_id: str) -> Rating | None:
        row = await self._one("SELECT * FROM ratings WHERE session_id = ?", (session_id,))
        if row is None:
            return None
        return Rating(rating=row["rating"], comment=row["comment"], at=_at(row["at"]))

    # Idempotency

    async def idempotent_session(self, api_key_id: str, key: str,
                                 since: datetime) -> tuple[str, str] | None:
        """(request digest, session id) of an earlier create with this key, if recent enough."""
        row = await self._one(
            "SELECT request_digest, session_id FROM idempotency_keys WHERE api_key_id = ? AND key = ?"
            " AND created_at >= ?", (api_key_id, key, _ts(since)))
        return None if row is None else (row["request_digest"], row["session_id"])

    # Listing

    async def list_sessions(self, *, ticket_id: str | None, status: str | None,
                            created_after: datetime | None, created_before: datetime | None,
                            before: tuple[str, str] | None, limit: int, now: datetime) -> list[Session]:
        """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
        clauses: list[str] = []
        params: list[Any] = []
        if ticket_id is not None:
            clauses.append("ticket_id = ?")
            params.append(ticket_id)
        if status in ("waiting", "live"):  # expiry is read off the clock
            clauses.append("status = ? AND expires_at > ?")
            params += [status, _ts(now)]
        elif status == "expired":
            clauses.append("(status = 'expired' OR (status IN ('waiting', 'live') AND expires_at <= ?))")
            params.append(_ts(now))
        elif status is not None:
            clauses.append("status = ?")
            params.append(status)
        if created_after is not None:
            clauses.append("created_at >= ?")
            params.append(_ts(created_after))
        if created_before is not None:
            clauses.append("created_at < ?")
            params.append(_ts(created_before))
        if before is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [before[0], before[0], before[1]]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._all(f"SELECT * FROM sessions {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                               (*params, limit))
        return [_session(r) for r in rows]

    async def last_event_seq(self, session_id: str) -> int:
        row = await self._one("SELECT MAX(seq) AS seq FROM events WHERE session_id = ?", (session_id,))
        return int(row["seq"] or 0) if row is not None else 0

    @shielded
    async def revoke_session(self, session_id: str, actor: str, at: datetime) -> Event | None:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'revoked', ended_at = ?"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at > ?",
                (_ts(at), session_id, _ts(at)))
            if cursor.rowcount != 1:
                return None
            return await self._insert_event(db, session_id, SessionRevoked(), actor, at)

    # Retention and erasure

    async def _scrub_events(self, db: aiosqlite.Connection, session_ids: list[str],
                            types: tuple[str, ...] | None = None, before: datetime | None = None) -> int:
        """Drop personal fields from events' data (the event itself, its type and time, stay); each
        event model says which of its fields are personal."""
        marks = ",".join("?" * len(session_ids))
        sql = f"SELECT seq, type, data FROM events WHERE session_id IN ({marks})"
        params: list[Any] = list(session_ids)
        if types is not None:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        if before is not None:
            sql += " AND at < ?"
            params.append(_ts(before))
        scrubbed = 0
        for row in await self._all(sql, tuple(params)):
            data = parse_data(EventType(row["type"]), json.loads(row["data"]))
            if any(getattr(data, name) is not None for name in data.personal):
                clean = data.erase().public()
                await db.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(clean), row["seq"]))
                scrubbed += 1
        return scrubbed

    @shielded
    async def erase_ticket(self, ticket_id: str, actor: str,
                           at: datetime) -> tuple[dict[str, int], list[str], list[Event]]:
        """Erase a ticket's personal data and media; keep anonymous figures (tier, times, outcome).

        Returns the counts, the session ids whose blobs the caller removes (after the commit, so a
        row never points at a deleted image) and the events recorded."""
        async with self._transaction() as db:
            rows = await self._all("SELECT id FROM sessions WHERE ticket_id = ?", (ticket_id,))
            ids = [r["id"] for r in rows]
            if not ids:
                return {}, [], []
            marks = ",".join("?" * len(ids))
            snapshots = await self._one(f"SELECT COUNT(*) AS n FROM snapshots WHERE session_id IN ({marks})",
                                        tuple(ids))
            await db.execute(f"DELETE FROM snapshots WHERE session_id IN ({marks})", tuple(ids))
            recordings = await self._one(
                f"SELECT COUNT(*) AS n FROM recordings WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"DELETE FROM recordings WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(
                f"UPDATE participants SET name = role WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"UPDATE ratings SET comment = '' WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"UPDATE deliveries SET payload = '{{\"erased\":true}}'"
                             f" WHERE session_id IN ({marks})", tuple(ids))
            chats = await self._scrub_events(db, ids, ("chat.message",))
            await self._scrub_events(db, ids)
            anonymous = f"erased-{secrets.token_hex(6)}"
            await db.execute(
                f"UPDATE sessions SET ticket_id = ?, customer = '{{}}', notes = NULL"
                f" WHERE id IN ({marks})", (anonymous, *ids))
            events = [await self._insert_event(db, session_id, TicketErased(), actor, at)
                      for session_id in ids]
            counts = {"sessions": len(ids), "snapshots": int(snapshots["n"]) if snapshots else 0,
                      "recordings": int(recordings["n"]) if recordings else 0, "chat_messages": chats}
            return counts, ids, events

    @shielded
    async def purge(self, media_before: datetime | None, chat_before: datetime | None,
                    at: datetime) -> tuple[dict[str, int], list[tuple[str, str]], list[Event]]:
        """Retention: remove snapshots of sessions that ended before `media_before`, and chat text
        older than `chat_before`. Returns counts, the (session id, blob prefix) pairs to delete and the
        events recorded."""
        removed: list[tuple[str, str]] = []
        events: list[Event] = []
        chats = 0
        async with self._transaction() as db:
            if media_before is not None:
                rows = await self._all(
                    "SELECT s.session_id, s.id FROM snapshots s JOIN sessions x ON x.id = s.session_id"
                    " WHERE x.ended_at IS NOT NULL AND x.ended_at < ?", (_ts(media_before),))
                for row in rows:
                    await db.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
                    removed.append((row["session_id"], f"sessions/{row['session_id']}/snapshots/{row['id']}"))
                recorded = await self._all(
                    "SELECT r.session_id, r.id, r.key FROM recordings r"
                    " JOIN sessions x ON x.id = r.session_id"
                    " WHERE x.ended_at IS NOT NULL AND x.ended_at < ?", (_ts(media_before),))
                for row in recorded:
                    await db.execute("DELETE FROM recordings WHERE id = ?", (row["id"],))
                    removed.append((row["session_id"], row["key"].rsplit("/", 1)[0]))
                for session_id in sorted({r["session_id"] for r in [*rows, *recorded]}):
                    count = sum(1 for r in rows if r["session_id"] == session_id)
                    videos = sum(1 for r in recorded if r["session_id"] == session_id)
                    events.append(await self._insert_event(
                        db, session_id, RetentionPurged(snapshots=count, recordings=videos), "system", at))
            if chat_before is not None:
                ids = [r["session_id"] for r in await self._all(
                    "SELECT DISTINCT session_id FROM events WHERE type = 'chat.message' AND at < ?",
                    (_ts(chat_before),))]
                if ids:
                    chats = await self._scrub_events(db, ids, ("chat.message",), chat_before)
        recordings = sum(1 for _, key in removed if "/recordings/" in key)
        return {"snapshots": len(removed) - recordings, "recordings": recordings,
                "chat_messages": chats}, removed, events

    @shielded
    async def ensure_internal_webhook(self, endpoint_id: str, url: str, events: list[str],
                                      enabled: bool) -> None:
        """An adapter's endpoint: present and active while the adapter is configured, else disabled."""
        async with self._transaction() as db:
            if enabled:
                await db.execute(
                    "INSERT INTO webhook_endpoints (id, url, secret, events, created_at)"
                    " VALUES (?, ?, '', ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
                    " events = excluded.events, disabled_at = NULL",
                    (endpoint_id, url, json.dumps(events), _ts(utcnow())))
            else:
                await db.execute("UPDATE webhook_endpoints SET disabled_at = ? WHERE id = ?"
                                 " AND disabled_at IS NULL", (_ts(utcnow()), endpoint_id))

    # Accounts (people who sign in to the console and the admin page)

    @shielded
    async def create_user(self, user_id: str, email: str, name: str, role: str, password_hash: str,
                          actor: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO users (id, email, name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, email, name, role, password_hash, _ts(utcnow())))
            await self._audit(db, actor, "user.create", user_id, {"email": email, "role": role})

    async def user_by_email(self, email: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE email = ?", (email,))
        return None if row is None else _user(row)

    async def users(self) -> list[User]:
        return [_user(r) for r in await self._all("SELECT * FROM users ORDER BY created_at", ())]

    async def has_users(self) -> bool:
        return await self._one("SELECT 1 FROM users LIMIT 1", ()) is not None

    @shielded
    async def set_user_disabled(self, user_id: str, disabled: bool, actor: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE users SET disabled_at = ? WHERE id = ?",
                                      (_ts(utcnow()) if disabled else None, user_id))
            if disabled:
                await db.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
            await self._audit(db, actor, "user.disable" if disabled else "user.enable", user_id, {})
            return cursor.rowcount == 1

    @shielded
    async def rehash_password(self, user_id: str, password_hash: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    @shielded
    async def create_web_session(self, token_digest: str, user_id: str, csrf: str,
                                 expires_at: datetime) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (_ts(utcnow()),))
            await db.execute(
                "INSERT INTO web_sessions (digest, user_id, csrf, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (token_digest, user_id, csrf, _ts(utcnow()), _ts(expires_at)))

    async def web_session(self, token_digest: str, now: datetime) -> WebSession | None:
        row = await self._one(
            "SELECT w.csrf, w.expires_at AS session_expires_at, u.* FROM web_sessions w"
            " JOIN users u ON u.id = w.user_id"
            " WHERE w.digest = ? AND w.expires_at > ? AND u.disabled_at IS NULL", (token_digest, _ts(now)))
        if row is None:
            return None
        return WebSession(user=_user(row), csrf=row["csrf"], expires_at=_at(row["session_expires_at"]))

    @shielded
    async def end_web_session(self, token_digest: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM web_sessions WHERE digest = ?", (token_digest,))

    @shielded
    async def login_failure(self, keys: list[str], at: datetime) -> None:
        async with self._transaction() as db:
            for key in keys:
                await db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", (key, _ts(at)))

    async def login_failures(self, key: str, since: datetime) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM login_failures WHERE key = ? AND at > ?",
                              (key, _ts(since)))
        return int(row["n"]) if row else 0

    @shielded
    async def bind_participant(self, participant_id: str, user_id: str) -> str:
        """Bind a staff link to the first person who signs in with it; returns the bound user id."""
        async with self._transaction() as db:
            await db.execute("UPDATE participants SET user_id = ? WHERE id = ? AND user_id IS NULL",
                             (user_id, participant_id))
            row = await self._one("SELECT user_id FROM participants WHERE id = ?", (participant_id,))
            assert row is not None
            return str(row["user_id"])

    # Audit log of admin actions

    async def _audit(self, db: aiosqlite.Connection, actor: str, action: str, target: str,
                     data: dict[str, Any]) -> None:
        await db.execute("INSERT INTO audit_log (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                         (_ts(utcnow()), actor, action, target, json.dumps(data)))

    @shielded
    async def audit(self, actor: str, action: str, target: str, data: dict[str, Any]) -> None:
        async with self._transaction() as db:
            await self._audit(db, actor, action, target, data)

    async def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        rows = await self._all("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return [_audit_entry(r) for r in rows]

    @shielded
    async def revoke_api_key(self, key_id: str, actor: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_ts(utcnow()), key_id))
            if cursor.rowcount == 1:
                await self._audit(db, actor, "api_key.revoke", key_id, {})
            return cursor.rowcount == 1
