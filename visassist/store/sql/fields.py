"""FieldStore: values read off snapshots, the chips the agent confirms, corrects or dismisses."""

from __future__ import annotations

import json
from datetime import datetime

from visassist.events import Event, FieldConfirmed, FieldRejected, FoundField, SnapshotRead
from visassist.models import FieldStatus, SnapshotField
from visassist.store.sql.database import Database, Row, _dt, _ts, insert_event, shielded


def _field(row: Row) -> SnapshotField:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return SnapshotField(
        id=row["id"], session_id=row["session_id"], snapshot_id=row["snapshot_id"], name=row["name"],
        value=row["value"], read_value=row["read_value"], confidence=row["confidence"],
        source=row["source"], box=json.loads(row["box"]), status=FieldStatus(row["status"]),
        created_at=created_at, confirmed_by=row["confirmed_by"], confirmed_at=_dt(row["confirmed_at"]))


class SqlFields:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def add_reading(self, session_id: str, snapshot_id: str, fields: list[SnapshotField],
                          read: SnapshotRead, at: datetime) -> Event | None:
        """The fields found in a snapshot and the snapshot.read event; None if the snapshot is gone
        (erased or purged while it was being read)."""
        async with self.database.transaction() as db:
            if await db.one("SELECT 1 FROM snapshots WHERE session_id = ? AND id = ?",
                            (session_id, snapshot_id)) is None:
                return None
            for f in fields:
                await db.execute(
                    "INSERT INTO snapshot_fields (id, session_id, snapshot_id, name, value, read_value,"
                    " confidence, source, box, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (f.id, session_id, snapshot_id, f.name, f.value, f.read_value, f.confidence, f.source,
                     json.dumps(f.box), f.status.value, _ts(f.created_at)))
            found = [FoundField(id=f.id, name=f.name, value=f.value, confidence=f.confidence) for f in fields]
            return await insert_event(db, session_id, read.model_copy(update={"fields": found}), "system", at)

    async def fields(self, session_id: str, status: FieldStatus | None = None) -> list[SnapshotField]:
        rows = await self.database.all(
            "SELECT * FROM snapshot_fields WHERE session_id = ? ORDER BY created_at, id", (session_id,))
        return [f for f in map(_field, rows) if status is None or f.status is status]

    async def field(self, session_id: str, field_id: str) -> SnapshotField | None:
        row = await self.database.one(
            "SELECT * FROM snapshot_fields WHERE session_id = ? AND id = ?", (session_id, field_id))
        return None if row is None else _field(row)

    @shielded
    async def decide_field(self, session_id: str, field_id: str, value: str | None, actor: str,
                           at: datetime) -> tuple[SnapshotField, Event] | None:
        """Confirm a field (with `value`, the agent's correction or the value read) or, with value
        None, dismiss it; None if there is no such field. Deciding again replaces the decision."""
        async with self.database.transaction() as db:
            row = await db.one("SELECT * FROM snapshot_fields WHERE session_id = ? AND id = ?",
                               (session_id, field_id))
            if row is None:
                return None
            before = _field(row)
            status = FieldStatus.REJECTED if value is None else FieldStatus.CONFIRMED
            kept = before.read_value if value is None else value
            await db.execute(
                "UPDATE snapshot_fields SET value = ?, status = ?, confirmed_by = ?, confirmed_at = ?"
                " WHERE id = ?", (kept, status.value, actor, _ts(at), field_id))
            if value is None:
                data: FieldConfirmed | FieldRejected = FieldRejected(
                    field_id=field_id, snapshot_id=before.snapshot_id, name=before.name)
            else:
                data = FieldConfirmed(field_id=field_id, snapshot_id=before.snapshot_id, name=before.name,
                                      value=value, confidence=before.confidence,
                                      corrected=value != before.read_value)
            event = await insert_event(db, session_id, data, actor, at)
        after = await self.field(session_id, field_id)
        assert after is not None
        return after, event
