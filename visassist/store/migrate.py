"""The schema, migrated with Alembic on both databases (visassist/store/migrations), and a whole
database copied to another (SQLite to PostgreSQL, say) without losing a row.

SQLite databases made before Alembic (PRAGMA user_version 1 to 5) are first brought to version 5 by
their old steps (visassist/store/sql/legacy.py), then stamped with the baseline they equal.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, exc, func, insert, inspect, select, text
from sqlalchemy.engine import Connection

from visassist.store.sql.database import Database
from visassist.store.sql.legacy import MIGRATIONS as LEGACY

BASELINE = "0001"
LOCK = 0x76697361  # PostgreSQL advisory lock held while one node migrates ("visa")
# Not copied: where nodes are is the running cluster's, not the record's.
NOT_COPIED = frozenset({"alembic_version", "nodes"})


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def tables_of(connection: Connection) -> MetaData:
    """The tables as the database has them (columns and keys; a copy needs no more)."""
    metadata = MetaData()
    with warnings.catch_warnings():
        # SQLAlchemy cannot reflect SQLite's expression indexes (lower(email)), and says so.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", exc.SAWarning)
        metadata.reflect(connection)
    return metadata


def _legacy_sqlite(connection: Connection) -> None:
    """A database from before Alembic: finish its old steps, then say it is at the baseline."""
    if connection.dialect.name != "sqlite" or "alembic_version" in inspect(connection).get_table_names():
        return
    version = connection.exec_driver_sql("PRAGMA user_version").scalar_one()
    if version == 0:
        return
    if version > len(LEGACY):
        raise RuntimeError(f"database schema version {version} is newer than this visassist knows")
    for script in LEGACY[version:]:
        for statement in script.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
    connection.exec_driver_sql(f"PRAGMA user_version = {len(LEGACY)}")
    command.stamp(config(connection), BASELINE)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Nodes starting together: one migrates, the others wait and find nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOCK})
    _legacy_sqlite(connection)
    command.upgrade(config(connection), "head")


async def upgrade(database: Database) -> tuple[str | None, str]:
    """Migrate to the newest schema; returns (revision before, revision now)."""
    async with database.engine.connect() as conn:
        before = await conn.run_sync(current)
        await conn.run_sync(_upgrade)
        await conn.commit()
    return before, head()


async def copy(source: Database, target: Database,
               progress: Callable[[str, int], None] = lambda table, rows: None) -> dict[str, int]:
    """Copy every row of `source` into `target` (migrated to the same schema, and empty), table by
    table in foreign-key order, in one transaction; returns the rows copied per table."""
    async with source.engine.connect() as src:
        if await src.run_sync(current) != head():
            raise ValueError("the source database is not at this visassist's schema: run `visassist db"
                             " upgrade` on it first")
        metadata = await src.run_sync(tables_of)
        tables = [t for t in metadata.sorted_tables if t.name not in NOT_COPIED]
        counts: dict[str, int] = {}
        async with target.engine.begin() as dst:
            for table in tables:
                if (await dst.execute(select(func.count()).select_from(table))).scalar_one():
                    raise ValueError(f"the target database is not empty (table {table.name} has rows)")
            for table in tables:
                counts[table.name] = 0
                result = await src.stream(select(table))
                async for batch in result.partitions(1000):
                    await dst.execute(insert(table), [dict(row._mapping) for row in batch])
                    counts[table.name] += len(batch)
                    progress(table.name, counts[table.name])
            if target.dialect == "postgresql":
                await dst.run_sync(lambda sync: _advance_sequences(sync, tables))
            for table in tables:  # read back what was written, before it commits
                copied = (await dst.execute(select(func.count()).select_from(table))).scalar_one()
                if copied != counts[table.name]:
                    raise RuntimeError(f"{table.name}: {counts[table.name]} rows read, {copied} stored")
    return counts


def _advance_sequences(connection: Connection, tables: list[Table]) -> None:
    """Rows copied with their ids leave PostgreSQL's sequences at 1: move each past its column's max."""
    for table in tables:
        for column in table.primary_key.columns:
            sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                          {"t": table.name, "c": column.name}).scalar_one()
            if sequence is not None:
                connection.execute(text(f"SELECT setval(:s, COALESCE((SELECT MAX({column.name}) FROM"
                                        f" {table.name}), 0) + 1, false)"), {"s": sequence})
