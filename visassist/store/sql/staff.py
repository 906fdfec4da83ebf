"""StaffViews: what the staff pages read across sessions (home board, analytics) and the marks left by
erasing a ticket. Plain SQL both SQLite and PostgreSQL run; durations are computed in Python."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from visassist.events import Event
from visassist.models import Rating, Session
from visassist.store.base import Erasure, SessionFacts
from visassist.store.sql.database import Database, _at, _event, _session, _ts, shielded

# The events analytics reads; chat, drawings and quality reports are left in the database.
FACT_TYPES = ("link.opened", "camera.allowed", "camera.failed", "participant.joined", "participant.left",
              "participant.invited", "media.started", "media.stopped", "snapshot.captured",
              "session.ended", "session.expired", "session.revoked")


class SqlStaffViews:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def sessions_ended_between(self, since: datetime, until: datetime) -> list[Session]:
        rows = await self.database.all(
            "SELECT * FROM sessions WHERE ended_at >= ? AND ended_at < ? ORDER BY ended_at DESC",
            (_ts(since), _ts(until)))
        return [_session(r) for r in rows]

    async def session_facts(self, created_from: datetime, created_to: datetime) -> list[SessionFacts]:
        """Every session created in [from, to) with the events analytics needs, its rating and the
        person its agent link is bound to (None for links opened without accounts)."""
        window = (_ts(created_from), _ts(created_to))
        sessions = [_session(r) for r in await self.database.all(
            "SELECT * FROM sessions WHERE created_at >= ? AND created_at < ? ORDER BY created_at, id",
            window)]
        if not sessions:
            return []
        events: dict[str, list[Event]] = defaultdict(list)
        marks = ",".join("?" * len(FACT_TYPES))
        for row in await self.database.all(
                "SELECT e.* FROM events e JOIN sessions s ON s.id = e.session_id"
                f" WHERE s.created_at >= ? AND s.created_at < ? AND e.type IN ({marks}) ORDER BY e.seq",
                (*window, *FACT_TYPES)):
            events[row["session_id"]].append(_event(row))
        ratings = {row["session_id"]: Rating(rating=row["rating"], comment=row["comment"], at=_at(row["at"]))
                   for row in await self.database.all(
                       "SELECT r.* FROM ratings r JOIN sessions s ON s.id = r.session_id"
                       " WHERE s.created_at >= ? AND s.created_at < ?", window)}
        agents = {row["session_id"]: row["name"] for row in await self.database.all(
            "SELECT p.session_id, u.name FROM participants p JOIN sessions s ON s.id = p.session_id"
            " JOIN users u ON u.id = p.user_id"
            " WHERE s.created_at >= ? AND s.created_at < ? AND p.role = 'agent'", window)}
        return [SessionFacts(session=s, events=events[s.id], rating=ratings.get(s.id),
                             agent=agents.get(s.id)) for s in sessions]

    @shielded
    async def erasures(self, ticket_digest: str) -> list[Erasure]:
        rows = await self.database.all(
            "SELECT * FROM ticket_erasures WHERE ticket_digest = ? ORDER BY at", (ticket_digest,))
        return [Erasure(ticket_digest=r["ticket_digest"], at=_at(r["at"]), actor=r["actor"],
                        counts=json.loads(r["counts"])) for r in rows]
