"""The rooms' side of the event stream: what a recorded event changes for the people in a live room.

The use cases (visassist/sessions.py) never reach into a room; they record and publish events, and
RoomEvents, subscribed to the bus, applies them to the room on this node, if there is one.
"""

from __future__ import annotations

import asyncio
import logging

from visassist.events import (
    Event,
    FieldConfirmed,
    FieldRejected,
    LeftReason,
    ParticipantInvited,
    SessionEnded,
    SessionExpired,
    SessionRevoked,
    SnapshotAnnotated,
    SnapshotCaptured,
)
from visassist.events import SnapshotRead as Read
from visassist.models import Participant
from visassist.schemas import FieldOut, SnapshotOut
from visassist.sessions import SessionService
from visassist.signalling.protocol import (
    AnnotationsOut,
    Ended,
    FieldDecided,
    Presence,
    SnapshotRead,
    SnapshotStored,
)
from visassist.signalling.room import Connection, Hub, Room

log = logging.getLogger(__name__)


async def depart(sessions: SessionService, room: Room, connection: Connection, reason: LeftReason,
                 *, tell: bool = True) -> None:
    """The one place a participant's leaving is recorded: once per socket, whichever way it ends
    (closed, replaced by the same link elsewhere, or the session is over)."""
    pid = connection.participant.id
    current = room.connection(pid) is connection
    drew = current and any(by == pid for by, _ in room.drawings())
    if not room.depart(connection):
        return
    await sessions.left(room.session_id, connection.participant, reason)
    if tell and current:
        if drew:
            await room.broadcast(AnnotationsOut(by=pid, shapes=[]))
        await room.broadcast(Presence(participants=room.presence()))


class RoomEvents:
    """Subscriber: closes a room when its session ends, shows invited people in presence, and shows
    staff every snapshot stored (whoever took it, whichever way: console, phone photo, API), what was
    read off it and what became of each value read."""

    def __init__(self, hub: Hub, sessions: SessionService) -> None:
        self.hub = hub
        self.sessions = sessions

    async def __call__(self, event: Event) -> None:
        room = self.hub.get(event.session_id)
        if room is None:
            return
        data = event.data
        if isinstance(data, SessionEnded):
            await self._close(room, Ended(status="ended", outcome=data.outcome.value), "ended")
        elif isinstance(data, SessionRevoked):
            await self._close(room, Ended(status="revoked"), "revoked")
        elif isinstance(data, SessionExpired):
            await self._close(room, Ended(status="expired"), "expired")
        elif isinstance(data, ParticipantInvited):
            room.admit(Participant(id=data.participant_id, session_id=event.session_id, role=data.role,
                                   name=data.name or data.role.value, created_at=event.at))
            await room.broadcast(Presence(participants=room.presence()))
        elif isinstance(data, SnapshotCaptured | SnapshotAnnotated):
            snapshot = await self.sessions.store.snapshot(event.session_id, data.snapshot_id)
            if snapshot is None:
                return
            # The one who asked is answered on their request; the others are told here.
            for connection in room.connections():
                if connection.participant.role.staff and connection.participant.id != event.actor:
                    await connection.send(SnapshotStored(
                        request_id=None, snapshot=SnapshotOut.of(snapshot, connection.snapshots_path)))

        elif isinstance(data, Read):
            fields = [f for f in await self.sessions.fields(event.session_id)
                      if f.snapshot_id == data.snapshot_id]
            await self._staff(room, SnapshotRead(snapshot_id=data.snapshot_id, fields=fields,
                                                 error=data.error))
        elif isinstance(data, FieldConfirmed | FieldRejected):
            field = await self.sessions.store.field(event.session_id, data.field_id)
            if field is not None:
                await self._staff(room, FieldDecided(field=FieldOut.of(field)))

    async def _staff(self, room: Room, message: SnapshotRead | FieldDecided) -> None:
        for connection in room.connections():
            if connection.participant.role.staff:
                await connection.send(message)

    async def _close(self, room: Room, message: Ended, reason: LeftReason) -> None:
        if self.hub.detach(room.session_id) is not room:
            return
        connections = room.connections()  # departing takes them out of the room
        await room.broadcast(message)
        for connection in connections:
            await depart(self.sessions, room, connection, reason, tell=False)
        # Each socket closes once `ended` has gone out on it.
        await asyncio.gather(*(connection.close() for connection in connections))
        await room.close()
