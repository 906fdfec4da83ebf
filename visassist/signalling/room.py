"""Live rooms: who is connected to a session right now, and its customer's video."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from av import VideoFrame

from visassist.media.peer import Peer
from visassist.media.relay import FrameSource
from visassist.models import Participant, Role
from visassist.signalling.protocol import MediaState, ParticipantInfo, ServerMessage, encode

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Connection:
    """One open socket of one participant (a participant has at most one at a time)."""

    participant: Participant
    ws: web.WebSocketResponse
    peer: Peer | None = None
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: ServerMessage) -> None:
        if self.ws.closed:
            return
        async with self.send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(encode(message))

    async def replace_peer(self, peer: Peer | None) -> None:
        old, self.peer = self.peer, peer
        if old is not None:
            await old.close()

    async def close(self, code: int = 1000) -> None:
        await self.replace_peer(None)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code)


class Room:
    def __init__(self, session_id: str, members: Iterable[Participant]) -> None:
        self.session_id = session_id
        self.members: dict[str, Participant] = {p.id: p for p in members}
        self.connections: dict[str, Connection] = {}
        self.source = FrameSource(on_change=self._video_changed)
        self.joined_once: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called with the first frame of each customer track (set by the socket handler).
        self.on_video_started: Callable[[VideoFrame], Coroutine[Any, Any, None]] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connected(self, participant_id: str) -> bool:
        return participant_id in self.connections

    def presence(self) -> list[ParticipantInfo]:
        return [
            ParticipantInfo(id=p.id, role=p.role.value, name=p.name, connected=self.connected(p.id))
            for p in self.members.values()
        ]

    def media_state(self) -> MediaState:
        frame = self.source.frame
        if not self.source.live or frame is None:
            return MediaState(state="none")
        return MediaState(state="live", width=frame.width, height=frame.height)

    async def broadcast(self, message: ServerMessage, roles: set[Role] | None = None,
                        exclude: Connection | None = None) -> None:
        targets = [c for c in self.connections.values()
                   if (roles is None or c.participant.role in roles) and c is not exclude]
        await asyncio.gather(*(c.send(message) for c in targets))

    def _video_changed(self, frame: VideoFrame | None) -> None:
        # Called from inside the source's pump, so say what changed rather than asking the source.
        state = (MediaState(state="none") if frame is None
                 else MediaState(state="live", width=frame.width, height=frame.height))
        self.spawn(self.broadcast(state, {Role.AGENT}))
        if frame is not None and self.on_video_started is not None:
            self.spawn(self.on_video_started(frame))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in list(self.connections.values())))
        self.connections.clear()
        await self.source.close()
        for task in list(self._tasks):
            task.cancel()


class Hub:
    """Every live room on this node. Bounded: a node serves at most `limit` live sessions."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.rooms: dict[str, Room] = {}

    def get(self, session_id: str) -> Room | None:
        return self.rooms.get(session_id)

    def full(self) -> bool:
        return len(self.rooms) >= self.limit

    def open(self, session_id: str, members: Iterable[Participant]) -> Room:
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = Room(session_id, members)
        return room

    async def discard_if_empty(self, session_id: str) -> None:
        room = self.rooms.get(session_id)
        if room is not None and not room.connections:
            del self.rooms[session_id]
            await room.close()

    def detach(self, session_id: str) -> Room | None:
        return self.rooms.pop(session_id, None)

    async def close(self) -> None:
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(room.close() for room in rooms))
