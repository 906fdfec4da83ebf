"""The SQLite database every aggregate shares: one connection (WAL), writes serialised by a lock, the
schema migrations and the row converters."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite

from visassist.events import Event, EventData, parse_data
from visassist.models import (
    ApiKey,
    Attempt,
    AuditEntry,
    Delivery,
    DueDelivery,
    EventType,
    Outcome,
    Participant,
    Recording,
    Role,
    Session,
    Snapshot,
    SnapshotSource,
    Status,
    User,
    WebhookEndpoint,
    stamp,
    utcnow,
)
from visassist.store.base import ConstraintViolation, DuplicateKey, StoreError
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
    # Staff pages: analytics and the home board read sessions by when they were created or ended; an
    # erased ticket's page says what was erased, by a keyed digest of its id (the sessions' figures
    # stay unlinked from it).
    """
    CREATE INDEX sessions_created ON sessions (created_at);
    CREATE INDEX sessions_ended ON sessions (ended_at);
    CREATE TABLE ticket_erasures (
        ticket_digest TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        counts TEXT NOT NULL
    );
    CREATE INDEX ticket_erasures_digest ON ticket_erasures (ticket_digest);
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


def _domain_error(exc: sqlite3.IntegrityError) -> StoreError:
    # Callers catch domain errors only; the driver's exception stays reachable as __cause__.
    if "UNIQUE constraint failed" in str(exc):  # primary keys too
        return DuplicateKey(str(exc))
    return ConstraintViolation(str(exc))


class Database:
    """One connection; each write is one transaction under the write lock, so a state change and its
    event commit together."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
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
                f"database {self.path} has schema version {version}, newer than this "
                f"visassist knows ({len(MIGRATIONS)}); upgrade visassist"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
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

    async def one(self, sql: str, params: tuple[Any, ...]) -> aiosqlite.Row | None:
        async with self.db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return row

    async def all(self, sql: str, params: tuple[Any, ...]) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


async def insert_event(db: aiosqlite.Connection, session_id: str, data: EventData, actor: str,
                       at: datetime) -> Event:
    """Inside the caller's transaction; webhook-worthy events wait for the outbox subscriber."""
    cursor = await db.execute(
        "INSERT INTO events (session_id, type, at, actor, data, outbox_pending)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, data.type.value, _ts(at), actor, json.dumps(data.public()), int(data.webhook)),
    )
    seq = cursor.lastrowid
    assert seq is not None
    return Event(seq=seq, session_id=session_id, at=at, actor=actor, data=data)


async def insert_audit(db: aiosqlite.Connection, actor: str, action: str, target: str,
                       data: dict[str, Any]) -> None:
    await db.execute("INSERT INTO audit_log (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                     (_ts(utcnow()), actor, action, target, json.dumps(data)))
