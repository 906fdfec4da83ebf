"""Live rooms: who is connected to a session right now, and the media flowing through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from av import VideoFrame

from visassist.media.audio import AudioInput
from visassist.media.peer import Peer
from visassist.media.relay import FrameSource, ViewerTrack
from visassist.models import STAFF, Participant, Role, VideoSource
from visassist.signalling.protocol import MediaState, ParticipantInfo, ServerMessage, encode

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Connection:
    """One open socket of one participant (a participant has at most one at a time)."""

    participant: Participant
    ws: web.WebSocketResponse
    peer: Peer | None = None
    viewer: ViewerTrack | None = None  # staff: the customer's video as this viewer watches it
    watching: VideoSource = VideoSource.CAMERA
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
        self.sources: dict[VideoSource, FrameSource] = {
            kind: FrameSource(kind.value, on_change=self._announcer(kind)) for kind in VideoSource
        }
        self.voices: dict[str, AudioInput] = {}
        self.unmuted: set[str] = set()
        self.lead: str | None = next((p.id for p in self.members.values() if p.role is Role.AGENT), None)
        self.annotations: dict[str, list[dict[str, Any]]] = {}
        self.frozen: VideoSource | None = None  # the source whose picture is held
        self.frozen_by: str | None = None
        self.sender_of: dict[VideoSource, str] = {}
        self.camera_state: dict[str, Any] | None = None
        self.quality: tuple[dict[str, Any], list[str]] | None = None
        self.joined_once: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Called with the source and its first frame whenever a source starts (set by the handler).
        self.on_video: Callable[[VideoSource, VideoFrame | None], Coroutine[Any, Any, None]] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connected(self, participant_id: str) -> bool:
        return participant_id in self.connections

    def customer(self) -> Connection | None:
        return next((c for c in self.connections.values() if c.participant.role is Role.CUSTOMER), None)

    def presence(self) -> list[ParticipantInfo]:
        return [
            ParticipantInfo(id=p.id, role=p.role.value, name=p.name, connected=self.connected(p.id),
                            muted=p.id not in self.unmuted, lead=p.id == self.lead)
            for p in self.members.values()
        ]

    def media_state(self, kind: VideoSource) -> MediaState:
        source = self.sources[kind]
        return _media_state(kind, source.frame if source.live else None)

    def voice(self, participant_id: str) -> AudioInput:
        if participant_id not in self.voices:
            self.voices[participant_id] = AudioInput()
        return self.voices[participant_id]

    def heard_by(self, listener_id: str) -> list[AudioInput]:
        """The voices one listener hears: everyone else's who is unmuted (supervisors never speak)."""
        return [voice for pid, voice in self.voices.items()
                if pid != listener_id and pid in self.unmuted and pid in self.connections
                and self.connections[pid].participant.role is not Role.SUPERVISOR]

    async def broadcast(self, message: ServerMessage, roles: Iterable[Role] | None = None,
                        exclude: Connection | None = None) -> None:
        wanted = None if roles is None else set(roles)
        targets = [c for c in self.connections.values()
                   if (wanted is None or c.participant.role in wanted) and c is not exclude]
        await asyncio.gather(*(c.send(message) for c in targets))

    def _announcer(self, kind: VideoSource) -> Callable[[VideoFrame | None], None]:
        def changed(frame: VideoFrame | None) -> None:
            # Called from inside the source's pump, so say what changed rather than asking the source.
            # The customer sees the staff's shared screen; staff see everything.
            self.spawn(self.broadcast(_media_state(kind, frame),
                                      None if kind is VideoSource.STAFF_SCREEN else STAFF))
            if self.on_video is not None:
                self.spawn(self.on_video(kind, frame))
        return changed

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in list(self.connections.values())))
        self.connections.clear()
        for source in self.sources.values():
            await source.close()
        for voice in self.voices.values():
            voice.detach()
        for task in list(self._tasks):
            task.cancel()


def _media_state(kind: VideoSource, frame: VideoFrame | None) -> MediaState:
    if frame is None:
        return MediaState(source=kind.value, state="none")
    return MediaState(source=kind.value, state="live", width=frame.width, height=frame.height)


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
