"""The SQL database every aggregate shares, SQLite (the embedded default) or PostgreSQL, through
SQLAlchemy: statements, transactions, the schema (Alembic, visassist/store/migrations) and the row
converters.

Statements are plain SQL that both databases run, written with `?` placeholders (never a `?` or a `:`
inside a literal: pass values as parameters). Times are fixed-width UTC text on both, so comparing
strings compares times and a database copies to the other as it is.

Writes are transactions that behave as if run one after another: on SQLite one writer at a time (a
lock, BEGIN IMMEDIATE); on PostgreSQL SERIALIZABLE isolation, a write that loses a race to another node
being run again from the start (`shielded` does this), so no aggregate needs row locks of its own.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import psycopg
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection, CursorResult, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

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

Row = RowMapping
Dialect = Literal["sqlite", "postgresql"]
P = ParamSpec("P")
R = TypeVar("R")

RETRIES = 8  # a serialization failure on PostgreSQL: how many times a write starts again


def engine_url(url: str) -> str:
    """The SQLAlchemy URL with the asyncio driver for a database URL an operator gives."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://...")


class SerializationFailure(StoreError):
    """PostgreSQL gave up a transaction that raced another (SQLSTATE 40001 or 40P01); run it again."""


def shielded(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A write runs to its end even if its caller is cancelled (a socket closing mid-write), and starts
    again when PostgreSQL gave it up for racing another write.

    Cancelling a write half-way would leave its connection inside an open transaction; a cancelled
    caller simply stops waiting for the result.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in itertools.count(1):
            try:
                return await finish(method(*args, **kwargs))
            except SerializationFailure:
                if attempt >= RETRIES:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))
        raise AssertionError("unreachable")

    return wrapper


@functools.lru_cache(maxsize=2048)
def _statement(sql: str) -> TextClause:
    numbers = itertools.count()
    return text(re.sub(r"\?", lambda _: f":p{next(numbers)}", sql))


def _bind(params: Sequence[Any]) -> dict[str, Any]:
    return {f"p{number}": value for number, value in enumerate(params)}


def _sqlstate(error: exc.DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def _domain_error(error: exc.IntegrityError) -> StoreError:
    # Callers catch domain errors only; the driver's exception stays reachable as __cause__.
    if _sqlstate(error) == "23505" or "UNIQUE constraint failed" in str(error.orig):
        return DuplicateKey(str(error.orig))
    return ConstraintViolation(str(error.orig))


async def _run(conn: AsyncConnection, sql: str, params: Sequence[Any]) -> CursorResult[Any]:
    try:
        return await conn.execute(_statement(sql), _bind(params))
    except exc.IntegrityError as error:
        raise _domain_error(error) from error
    except exc.DBAPIError as error:
        if _sqlstate(error) in ("40001", "40P01"):
            raise SerializationFailure(str(error.orig)) from error
        raise


class Transaction:
    """The statements of one transaction, on its connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> CursorResult[Any]:
        return await _run(self.conn, sql, params)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return (await self.execute(sql, params)).mappings().first()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list((await self.execute(sql, params)).mappings().all())


# The transaction the running task is inside, so a read made during a write sees what it wrote.
_current: ContextVar[Transaction | None] = ContextVar("visassist_transaction", default=None)


class Database:
    """A connection pool. Each write is one transaction, so a state change and its event commit
    together; reads outside a write use a connection of their own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect: Dialect = "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgresql"
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()  # SQLite has one writer at a time

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    async def open(self, *, migrate: bool = True) -> None:
        if self.dialect == "sqlite":
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Reads run in the driver's autocommit (no BEGIN, so nothing to roll back on return to the
            # pool): each hop to aiosqlite's thread is a few tenths of a millisecond.
            engine = create_async_engine(engine_url(self.url), pool_reset_on_return=None)
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        else:
            engine = create_async_engine(engine_url(self.url), pool_size=10, max_overflow=10,
                                         pool_pre_ping=True)
        self._engine = engine
        if self.dialect == "postgresql":
            await self._check_encoding()
        if migrate:
            from visassist.store.migrate import upgrade

            await upgrade(self)

    async def _check_encoding(self) -> None:
        # On a SQL_ASCII database the driver hands back bytes and SQLAlchemy fails on its first
        # connection with a TypeError; ask before it connects, and say so plainly.
        conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            encoding = conn.info.parameter_status("server_encoding") or "unknown"
        if encoding.upper() not in ("UTF8", "UTF-8"):
            raise ValueError(f"the database's encoding is {encoding}; visassist needs UTF8 "
                               "(createdb -E UTF8 -T template0 ...)")

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def transaction(self, *, serializable: bool = True) -> AsyncIterator[Transaction]:
        """One write. On PostgreSQL it is SERIALIZABLE unless asked otherwise (the outbox claims rows
        with SKIP LOCKED, which wants READ COMMITTED)."""
        if self.dialect == "sqlite":
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(visassist_immediate=True)
                async with self._inside(conn) as tx:
                    yield tx
            return
        async with self.engine.connect() as conn:
            if serializable:
                await conn.execution_options(isolation_level="SERIALIZABLE")
            async with self._inside(conn) as tx:
                yield tx

    @asynccontextmanager
    async def _inside(self, conn: AsyncConnection) -> AsyncIterator[Transaction]:
        tx = Transaction(conn)
        token = _current.set(tx)
        try:
            async with conn.begin():
                yield tx
        except exc.DBAPIError as error:  # at COMMIT
            if _sqlstate(error) in ("40001", "40P01"):
                raise SerializationFailure(str(error.orig)) from error
            raise
        finally:
            _current.reset(token)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[Transaction]:
        """The running task's write, if it is inside one (it sees what it wrote); else a connection of
        its own."""
        current = _current.get()
        if current is not None:
            yield current
            return
        async with self.engine.connect() as conn:
            yield Transaction(conn)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._reading() as reader:
            return await reader.one(sql, params)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._reading() as reader:
            return await reader.all(sql, params)


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # The driver's own transaction handling is off: SQLAlchemy's begin event says BEGIN, below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON", "busy_timeout = 5000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write takes the database's write lock at once, so it never fails half-way for want of it.
    # A read is one statement at a time in autocommit: no transaction to open or close.
    if conn.get_execution_options().get("visassist_immediate", False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _ts(moment: datetime | None) -> str | None:
    # Fixed-width UTC text, so SQL string comparison is time comparison.
    return None if moment is None else stamp(moment)


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _session(row: Row) -> Session:
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
        record=bool(row["record"]), node_id=row["node_id"],
    )


def _recording(row: Row) -> Recording:
    started_at, ended_at = _dt(row["started_at"]), _dt(row["ended_at"])
    assert started_at is not None and ended_at is not None
    return Recording(id=row["id"], session_id=row["session_id"], ticket_id=row["ticket_id"],
                     started_at=started_at, ended_at=ended_at, duration_seconds=row["duration_seconds"],
                     size_bytes=row["size_bytes"], width=row["width"], height=row["height"],
                     key=row["key"])


def _event(row: Row) -> Event:
    at = _dt(row["at"])
    assert at is not None
    return Event(seq=row["seq"], session_id=row["session_id"], at=at, actor=row["actor"],
                 data=parse_data(EventType(row["type"]), json.loads(row["data"])))


def _snapshot(row: Row) -> Snapshot:
    taken_at = _dt(row["taken_at"])
    assert taken_at is not None
    return Snapshot(
        id=row["id"], session_id=row["session_id"], ticket_id=row["ticket_id"], taken_at=taken_at,
        taken_by=row["taken_by"], source=SnapshotSource(row["source"]), width=row["width"],
        height=row["height"], annotations=json.loads(row["annotations"]),
        raw_key=row["raw_key"], annotated_key=row["annotated_key"], faces_blurred=row["faces_blurred"],
    )


def _participant(row: Row) -> Participant:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return Participant(id=row["id"], session_id=row["session_id"], role=Role(row["role"]),
                       name=row["name"], created_at=created_at, user_id=row["user_id"])


def _api_key(row: Row) -> ApiKey:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return ApiKey(id=row["id"], name=row["name"], created_at=created_at,
                  last_used_at=_dt(row["last_used_at"]), revoked_at=_dt(row["revoked_at"]))


def _user(row: Row) -> User:
    return User(id=row["id"], email=row["email"], name=row["name"], role=row["role"],
                password_hash=row["password_hash"], created_at=_at(row["created_at"]),
                disabled_at=_dt(row["disabled_at"]))


def _webhook(row: Row) -> WebhookEndpoint:
    return WebhookEndpoint(id=row["id"], url=row["url"], events=json.loads(row["events"]),
                           created_at=_at(row["created_at"]), disabled_at=_dt(row["disabled_at"]))


def _due(row: Row) -> DueDelivery:
    return DueDelivery(id=row["id"], endpoint_id=row["endpoint_id"], event_seq=row["event_seq"],
                       session_id=row["session_id"], type=row["type"], payload=row["payload"],
                       attempts=row["attempts"], created_at=_at(row["created_at"]), url=row["url"],
                       secret=row["secret"])


def _attempt(row: Row) -> Attempt:
    return Attempt(at=_at(row["at"]), status_code=row["status_code"], error=row["error"],
                   duration_ms=row["duration_ms"])


def _delivery(row: Row, attempts: list[Attempt]) -> Delivery:
    return Delivery(id=row["id"], endpoint_id=row["endpoint_id"], event_seq=row["event_seq"],
                    session_id=row["session_id"], type=row["type"], status=row["status"], attempts=attempts,
                    last_error=row["last_error"], created_at=_at(row["created_at"]),
                    delivered_at=_dt(row["delivered_at"]), next_attempt_at=_at(row["next_attempt_at"]))


def _audit_entry(row: Row) -> AuditEntry:
    return AuditEntry(id=row["id"], at=_at(row["at"]), actor=row["actor"], action=row["action"],
                      target=row["target"], data=json.loads(row["data"]))


async def _insert_participant(db: Transaction, participant: Participant,
                              token_digest: str) -> None:
    await db.execute(
        "INSERT INTO participants (id, session_id, role, name, token_digest, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (participant.id, participant.session_id, participant.role.value, participant.name,
         token_digest, _ts(participant.created_at)))


async def insert_event(db: Transaction, session_id: str, data: EventData, actor: str,
                       at: datetime) -> Event:
    """Inside the caller's transaction; webhook-worthy events wait for the outbox subscriber."""
    result = await db.execute(
        "INSERT INTO events (session_id, type, at, actor, data, outbox_pending)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        (session_id, data.type.value, _ts(at), actor, json.dumps(data.public()), int(data.webhook)),
    )
    seq = int(result.scalar_one())
    return Event(seq=seq, session_id=session_id, at=at, actor=actor, data=data)


async def insert_audit(db: Transaction, actor: str, action: str, target: str,
                       data: dict[str, Any]) -> None:
    await db.execute("INSERT INTO audit_log (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                     (_ts(utcnow()), actor, action, target, json.dumps(data)))
