"""The schema and the data across versions and databases: Alembic migrates SQLite databases from
before it, `visassist db upgrade` migrates PostgreSQL, and `visassist db copy` moves a deployment from
SQLite to PostgreSQL without losing a row."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from tests.postgres import Cluster
from tests.test_store_contract import T0, _chat, _create, _recording, _snapshot
from tests.utils import free_port
from visassist.cli import main
from visassist.events import SessionCreated
from visassist.models import Outcome
from visassist.store import DuplicateKey, SqlStore
from visassist.store.migrate import head, tables_of
from visassist.store.sql import Database
from visassist.store.sql.legacy import MIGRATIONS as LEGACY
from visassist.tokens import load_or_create_key


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def test_a_database_from_before_alembic_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    for number, script in enumerate(LEGACY[:3], start=1):  # a deployment two versions behind
        old.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    old.execute("INSERT INTO sessions (id, ticket_id, tier, customer, status, created_at, expires_at)"
                " VALUES ('ses_old', 'ZD-7', 2, '{}', 'ended', '2025-01-01T00:00:00.000000+00:00',"
                " '2025-01-01T01:00:00.000000+00:00')")
    old.execute("INSERT INTO users (id, email, name, role, password_hash, created_at) VALUES"
                " ('usr_old', 'Old@Example.com', 'Old', 'admin', 'h', '2025-01-01T00:00:00.000000+00:00')")
    old.commit()
    old.close()

    store = SqlStore(sqlite_url(path))
    await store.open()
    try:
        session = await store.get_session("ses_old")
        assert session is not None and session.ticket_id == "ZD-7" and not session.record, \
            "a column added by a later step reads with its default"
        user = await store.user_by_email("old@example.com")
        assert user is not None and user.id == "usr_old"
        with pytest.raises(DuplicateKey):
            await store.create_user("usr_2", "OLD@example.com", "Twin", "agent", "h", "cli")
    finally:
        await store.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT version_num FROM alembic_version").fetchone() == (head(),)
    assert check.execute("PRAGMA user_version").fetchone() == (len(LEGACY),)
    check.close()


def test_db_upgrade_migrates_postgresql_once(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert capsys.readouterr().out.strip() == f"schema empty -> {head()}"
    assert main(["db", "upgrade", "--database-url", postgres_url]) == 0
    assert capsys.readouterr().out.strip() == f"schema {head()}: up to date"


async def _fill(url: str) -> None:
    """A deployment's worth of every kind of row, through the store."""
    store = SqlStore(url)
    await store.open()
    try:
        await store.create_webhook("whk_1", "https://hooks.example.com/a", "secret", ["session.ended"])
        await store.create_api_key("key_1", "zendesk", "digest-key-1")
        await store.create_user("usr_1", "ana@example.com", "Ana", "admin", "hash", "cli")
        await store.login_failure(["ip:127.0.0.1"], T0)
        for i in range(30):
            session, people = await _create(store, f"ZD-{i}", T0 + timedelta(minutes=i))
            await store.append_event(session.id, _chat(people[0], f"hello {i}"), people[0].id, T0)
            await store.add_snapshot(_snapshot(session, T0 + timedelta(minutes=i, seconds=5)))
            if i % 3 == 0:
                await store.add_recording(_recording(session, T0 + timedelta(minutes=i)))
            ended = await store.end_session(session.id, Outcome.RESOLVED, "fixed", "agent", T0 +
                                            timedelta(minutes=i, seconds=30), [p.id for p in people])
            assert ended is not None
            await store.rate(session.id, 5, "great", people[0].id, T0 + timedelta(minutes=i, seconds=40))
            await store.enqueue_deliveries(ended[1], "session.ended", json.dumps({"n": i}))
        for due in await store.due_deliveries(T0 + timedelta(hours=2), 5):
            await store.record_attempt(due.id, T0, 500, "HTTP 500", 12, retry_at=T0, give_up=False)
    finally:
        await store.close()


async def _rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    database = Database(url)
    await database.open(migrate=False)
    try:
        async with database.engine.connect() as conn:
            metadata = await conn.run_sync(tables_of)
            return {t.name: [tuple(r) for r in (await conn.execute(
                select(t).order_by(*t.primary_key.columns or t.columns))).all()]
                for t in metadata.sorted_tables if t.name not in ("alembic_version", "nodes")}
    finally:
        await database.close()


async def test_db_copy_moves_every_row_to_postgresql_and_refuses_a_full_target(
        tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = sqlite_url(tmp_path / "visassist.sqlite3")
    await _fill(source)
    assert await asyncio.to_thread(main, ["db", "copy", "--from", source, "--to", postgres_url]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    before, after = await _rows(source), await _rows(postgres_url)
    assert after == before, "every row of every table, the same values"
    assert printed["events"] == str(len(before["events"])) and len(before["events"]) >= 120
    assert int(printed["delivery_attempts"]) == 5

    # The copy goes on where SQLite stopped: new ids come after the copied ones.
    store = SqlStore(postgres_url)
    await store.open()
    try:
        session, _ = await _create(store, "ZD-NEW")
        events = await store.events(session.id)
        assert isinstance(events[0].data, SessionCreated)
        assert events[0].seq > max(row[0] for row in before["events"])
    finally:
        await store.close()

    assert await asyncio.to_thread(main, ["db", "copy", "--from", source, "--to", postgres_url]) == 2
    assert "not empty" in capsys.readouterr().err
    assert len((await _rows(postgres_url))["sessions"]) == len(before["sessions"]) + 1, "nothing changed"


def test_a_database_not_in_utf8_is_refused_plainly(postgres: Cluster,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE ascii ENCODING 'SQL_ASCII' TEMPLATE template0")
    assert main(["db", "upgrade", "--database-url", postgres.url("ascii")]) == 2
    assert "encoding is SQL_ASCII; visassist needs UTF8" in capsys.readouterr().err


def test_nodes_starting_together_agree_on_the_link_key(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "link.key"
    start = threading.Barrier(8)

    def load() -> bytes:
        start.wait()
        return load_or_create_key(path)

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load(), range(8)))
    assert len(set(keys)) == 1 and path.read_bytes() == keys[0]
    assert [p.name for p in path.parent.iterdir()] == ["link.key"], "no draft left behind"


def test_an_unreachable_database_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    assert main(["db", "upgrade", "--database-url", f"postgresql://visassist@127.0.0.1:{closed}/x"]) == 2
    assert "cannot use the database" in capsys.readouterr().err
