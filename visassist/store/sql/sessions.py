"""SessionStore: sessions, participants, the timeline, snapshots, recordings, ratings and idempotency keys."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

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
from visassist.models import EventType, Outcome, Participant, Rating, Recording, Session, Snapshot
from visassist.store.base import DuplicateKey, IdempotencyConflict
from visassist.store.sql.database import (
    Database,
    Transaction,
    _at,
    _event,
    _insert_participant,
    _participant,
    _recording,
    _session,
    _snapshot,
    _ts,
    insert_event,
    shielded,
)


class SqlSessions:
    def __init__(self, database: Database) -> None:
        self.database = database

    @shielded
    async def create_session(
        self, session: Session, participants: list[tuple[Participant, str]], actor: str,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Event:
        async with self.database.transaction() as db:
            if idempotency is not None:
                # (api key id, Idempotency-Key, request digest): a concurrent twin fails here, whole.
                try:
                    await db.execute(
                        "INSERT INTO idempotency_keys (api_key_id, key, request_digest, session_id,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (*idempotency, session.id, _ts(session.created_at)))
                except DuplicateKey as exc:
                    raise IdempotencyConflict(str(exc)) from exc
            await db.execute(
                "INSERT INTO sessions (id, ticket_id, tier, customer, status, created_at, expires_at,"
                " audio, record, node_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.ticket_id, session.tier, json.dumps(session.customer),
                 session.status.value, _ts(session.created_at), _ts(session.expires_at),
                 int(session.audio), int(session.record), session.node_id),
            )
            for participant, token_digest in participants:
                await _insert_participant(db, participant, token_digest)
            return await insert_event(db, session.id, SessionCreated.of(session), actor,
                                            session.created_at)

    async def idempotent_session(self, api_key_id: str, key: str,
                                 since: datetime) -> tuple[str, str] | None:
        """(request digest, session id) of an earlier create with this key, if recent enough."""
        row = await self.database.one(
            "SELECT request_digest, session_id FROM idempotency_keys WHERE api_key_id = ? AND key = ?"
            " AND created_at >= ?", (api_key_id, key, _ts(since)))
        return None if row is None else (row["request_digest"], row["session_id"])

    @shielded
    async def prune_idempotency_keys(self, before: datetime) -> int:
        async with self.database.transaction() as db:
            cursor = await db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (_ts(before),))
            return cursor.rowcount

    @shielded
    async def add_participant(self, participant: Participant, token_digest: str, actor: str,
                              limit: int) -> Event | None:
        """Add an invited participant; None when the session already has `limit` participants."""
        async with self.database.transaction() as db:
            row = await self.database.one("SELECT COUNT(*) AS n FROM participants WHERE session_id = ?",
                                          (participant.session_id,))
            if row is not None and row["n"] >= limit:
                return None
            await _insert_participant(db, participant, token_digest)
            return await insert_event(
                db, participant.session_id,
                ParticipantInvited(participant_id=participant.id, role=participant.role,
                                   name=participant.name),
                actor, participant.created_at)

    async def get_session(self, session_id: str) -> Session | None:
        row = await self.database.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return _session(row) if row else None

    async def sessions_for_ticket(self, ticket_id: str) -> list[Session]:
        rows = await self.database.all(
            "SELECT * FROM sessions WHERE ticket_id = ? ORDER BY created_at", (ticket_id,))
        return [_session(r) for r in rows]

    async def open_sessions(self) -> list[Session]:
        rows = await self.database.all("SELECT * FROM sessions WHERE status IN ('waiting', 'live')", ())
        return [_session(r) for r in rows]

    async def participant_by_token(self, token_digest: str) -> Participant | None:
        row = await self.database.one("SELECT * FROM participants WHERE token_digest = ?", (token_digest,))
        return _participant(row) if row else None

    async def participants(self, session_id: str) -> list[Participant]:
        rows = await self.database.all(
            "SELECT * FROM participants WHERE session_id = ? ORDER BY created_at", (session_id,))
        return [_participant(r) for r in rows]

    @shielded
    async def mark_live(self, session_id: str, at: datetime) -> bool:
        async with self.database.transaction() as db:
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
        async with self.database.transaction() as db:
            # A session that never went live still has a duration of zero, not none.
            cursor = await db.execute(
                "UPDATE sessions SET status = 'ended', ended_at = ?, outcome = ?, notes = ?,"
                " ended_by = ?, started_at = COALESCE(started_at, ?)"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at > ?",
                (_ts(at), outcome.value, notes, actor, _ts(at), session_id, _ts(at)),
            )
            if cursor.rowcount != 1:
                return None
            row = await self.database.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
            assert row is not None
            session = _session(row)
            event = await insert_event(
                db, session_id, SessionEnded(connected=connected, outcome=outcome, notes=notes,
                                             duration_seconds=session.duration_seconds),
                actor, at)
            return session, event

    @shielded
    async def expire_session(self, session_id: str, at: datetime) -> Event | None:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'expired', ended_at = ?"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at <= ?",
                (_ts(at), session_id, _ts(at)),
            )
            if cursor.rowcount != 1:
                return None
            return await insert_event(db, session_id, SessionExpired(), "system", at)

    @shielded
    async def revoke_session(self, session_id: str, actor: str, at: datetime) -> Event | None:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE sessions SET status = 'revoked', ended_at = ?"
                " WHERE id = ? AND status IN ('waiting', 'live') AND expires_at > ?",
                (_ts(at), session_id, _ts(at)))
            if cursor.rowcount != 1:
                return None
            return await insert_event(db, session_id, SessionRevoked(), actor, at)

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
        rows = await self.database.all(
            f"SELECT * FROM sessions {where} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit))
        return [_session(r) for r in rows]

    @shielded
    async def append_event(self, session_id: str, data: EventData, actor: str, at: datetime) -> Event:
        async with self.database.transaction() as db:
            return await insert_event(db, session_id, data, actor, at)

    async def events(self, session_id: str) -> list[Event]:
        rows = await self.database.all("SELECT * FROM events WHERE session_id = ? ORDER BY seq",
                                       (session_id,))
        return [_event(r) for r in rows]

    async def last_event_seq(self, session_id: str) -> int:
        row = await self.database.one("SELECT MAX(seq) AS seq FROM events WHERE session_id = ?",
                                      (session_id,))
        return int(row["seq"] or 0) if row is not None else 0

    @shielded
    async def add_snapshot(self, snapshot: Snapshot) -> Event:
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO snapshots (id, session_id, ticket_id, taken_at, taken_by, source, width,"
                " height, annotations, raw_key, annotated_key, faces_blurred)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (snapshot.id, snapshot.session_id, snapshot.ticket_id, _ts(snapshot.taken_at),
                 snapshot.taken_by, snapshot.source.value, snapshot.width, snapshot.height,
                 json.dumps(snapshot.annotations), snapshot.raw_key, snapshot.annotated_key,
                 snapshot.faces_blurred),
            )
            return await insert_event(
                db, snapshot.session_id,
                SnapshotCaptured(snapshot_id=snapshot.id, source=snapshot.source, width=snapshot.width,
                                 height=snapshot.height, shapes=len(snapshot.annotations),
                                 faces_blurred=snapshot.faces_blurred),
                snapshot.taken_by, snapshot.taken_at)

    @shielded
    async def annotate_snapshot(self, session_id: str, snapshot_id: str,
                                annotations: list[dict[str, Any]], annotated_key: str, actor: str,
                                at: datetime) -> Event | None:
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "UPDATE snapshots SET annotations = ?, annotated_key = ? WHERE session_id = ? AND id = ?",
                (json.dumps(annotations), annotated_key, session_id, snapshot_id))
            if cursor.rowcount != 1:
                return None
            return await insert_event(
                db, session_id, SnapshotAnnotated(snapshot_id=snapshot_id, shapes=len(annotations)),
                actor, at)

    async def snapshots(self, session_id: str) -> list[Snapshot]:
        rows = await self.database.all(
            "SELECT * FROM snapshots WHERE session_id = ? ORDER BY taken_at, id", (session_id,))
        return [_snapshot(r) for r in rows]

    async def snapshot(self, session_id: str, snapshot_id: str) -> Snapshot | None:
        row = await self.database.one(
            "SELECT * FROM snapshots WHERE session_id = ? AND id = ?", (session_id, snapshot_id))
        return _snapshot(row) if row else None

    @shielded
    async def add_recording(self, recording: Recording) -> Event:
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO recordings (id, session_id, ticket_id, started_at, ended_at, duration_seconds,"
                " size_bytes, width, height, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (recording.id, recording.session_id, recording.ticket_id, _ts(recording.started_at),
                 _ts(recording.ended_at), recording.duration_seconds, recording.size_bytes,
                 recording.width, recording.height, recording.key))
            stored = RecordingStored(recording_id=recording.id, duration_seconds=recording.duration_seconds,
                                     size_bytes=recording.size_bytes)
            return await insert_event(db, recording.session_id, stored, "system", recording.ended_at)

    async def recordings(self, session_id: str) -> list[Recording]:
        rows = await self.database.all(
            "SELECT * FROM recordings WHERE session_id = ? ORDER BY started_at, id", (session_id,))
        return [_recording(r) for r in rows]

    async def recording(self, session_id: str, recording_id: str) -> Recording | None:
        row = await self.database.one("SELECT * FROM recordings WHERE session_id = ? AND id = ?",
                                      (session_id, recording_id))
        return _recording(row) if row else None

    @shielded
    async def rate(self, session_id: str, rating: int, comment: str, actor: str,
                   at: datetime) -> Event | None:
        """Store the customer's rating once; None when the session was already rated."""
        async with self.database.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO ratings (session_id, rating, comment, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (session_id) DO NOTHING",
                (session_id, rating, comment, _ts(at)))
            if cursor.rowcount != 1:
                return None
            return await insert_event(db, session_id, SessionRated(rating=rating, comment=comment),
                                            actor, at)

    async def rating(self, session_id: str) -> Rating | None:
        row = await self.database.one("SELECT * FROM ratings WHERE session_id = ?", (session_id,))
        if row is None:
            return None
        return Rating(rating=row["rating"], comment=row["comment"], at=_at(row["at"]))

    async def _scrub_events(self, db: Transaction, session_ids: list[str],
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
        for row in await self.database.all(sql, tuple(params)):
            data = parse_data(EventType(row["type"]), json.loads(row["data"]))
            if any(getattr(data, name) is not None for name in data.personal):
                clean = data.erase().public()
                await db.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(clean), row["seq"]))
                scrubbed += 1
        return scrubbed

    @shielded
    async def erase_ticket(self, ticket_id: str, actor: str, at: datetime,
                           mark: str | None = None) -> tuple[dict[str, int], list[str], list[Event]]:
        """Erase a ticket's personal data and media; keep anonymous figures (tier, times, outcome).
        With `mark` (a keyed digest of the ticket id), leave the mark that says what went, in the same
        transaction: an erased ticket always says so.

        Returns the counts, the session ids whose blobs the caller removes (after the commit, so a
        row never points at a deleted image) and the events recorded."""
        async with self.database.transaction() as db:
            rows = await self.database.all("SELECT id FROM sessions WHERE ticket_id = ?", (ticket_id,))
            ids = [r["id"] for r in rows]
            if not ids:
                return {}, [], []
            marks = ",".join("?" * len(ids))
            snapshots = await self.database.one(
                f"SELECT COUNT(*) AS n FROM snapshots WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"DELETE FROM snapshots WHERE session_id IN ({marks})", tuple(ids))
            recordings = await self.database.one(
                f"SELECT COUNT(*) AS n FROM recordings WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"DELETE FROM recordings WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(
                f"UPDATE participants SET name = role WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"UPDATE ratings SET comment = '' WHERE session_id IN ({marks})", tuple(ids))
            await db.execute(f"UPDATE deliveries SET payload = ? WHERE session_id IN ({marks})",
                             ('{"erased":true}', *ids))
            chats = await self._scrub_events(db, ids, ("chat.message",))
            await self._scrub_events(db, ids)
            anonymous = f"erased-{secrets.token_hex(6)}"
            await db.execute(
                f"UPDATE sessions SET ticket_id = ?, customer = '{{}}', notes = NULL"
                f" WHERE id IN ({marks})", (anonymous, *ids))
            events = [await insert_event(db, session_id, TicketErased(), actor, at)
                      for session_id in ids]
            counts = {"sessions": len(ids), "snapshots": int(snapshots["n"]) if snapshots else 0,
                      "recordings": int(recordings["n"]) if recordings else 0, "chat_messages": chats}
            if mark is not None:
                await db.execute("INSERT INTO ticket_erasures (ticket_digest, at, actor, counts)"
                                 " VALUES (?, ?, ?, ?)", (mark, _ts(at), actor, json.dumps(counts)))
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
        async with self.database.transaction() as db:
            if media_before is not None:
                rows = await self.database.all(
                    "SELECT s.session_id, s.id FROM snapshots s JOIN sessions x ON x.id = s.session_id"
                    " WHERE x.ended_at IS NOT NULL AND x.ended_at < ?", (_ts(media_before),))
                for row in rows:
                    await db.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
                    removed.append((row["session_id"], f"sessions/{row['session_id']}/snapshots/{row['id']}"))
                recorded = await self.database.all(
                    "SELECT r.session_id, r.id, r.key FROM recordings r"
                    " JOIN sessions x ON x.id = r.session_id"
                    " WHERE x.ended_at IS NOT NULL AND x.ended_at < ?", (_ts(media_before),))
                for row in recorded:
                    await db.execute("DELETE FROM recordings WHERE id = ?", (row["id"],))
                    removed.append((row["session_id"], row["key"].rsplit("/", 1)[0]))
                for session_id in sorted({r["session_id"] for r in [*rows, *recorded]}):
                    count = sum(1 for r in rows if r["session_id"] == session_id)
                    videos = sum(1 for r in recorded if r["session_id"] == session_id)
                    events.append(await insert_event(
                        db, session_id, RetentionPurged(snapshots=count, recordings=videos), "system", at))
            if chat_before is not None:
                ids = [r["session_id"] for r in await self.database.all(
                    "SELECT DISTINCT session_id FROM events WHERE type = 'chat.message' AND at < ?",
                    (_ts(chat_before),))]
                if ids:
                    chats = await self._scrub_events(db, ids, ("chat.message",), chat_before)
        recordings = sum(1 for _, key in removed if "/recordings/" in key)
        return {"snapshots": len(removed) - recordings, "recordings": recordings,
                "chat_messages": chats}, removed, events
