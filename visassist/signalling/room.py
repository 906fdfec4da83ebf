"""Live rooms: who is connected to a session right now, and the media flowing through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from visassist.capacity import FileBudget
from visassist.media.audio import Voice
from visassist.media.feed import FeedTrack, Size, VideoFeed
from visassist.media.peer import Peer
from visassist.media.recorder import Recorded, Recorder
from visassist.models import STAFF, Participant, Role, VideoSource
from visassist.signalling.protocol import MediaState, ParticipantInfo, ServerMessage, encode

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Connection:
    """One open socket of one participant (a participant has at most one at a time)."""

    participant: Participant
    ws: web.WebSocketResponse
    peer: Peer | None = None
    viewer: FeedTrack | None = None  # staff: the customer's video as this viewer watches it
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
        self.feeds: dict[VideoSource, VideoFeed] = {
            kind: VideoFeed(kind.value, on_change=self._announcer(kind)) for kind in VideoSource
        }
        self.voices: dict[str, Voice] = {}
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
        self.recorder: Recorder | None = None
        # Called with a finished recording (set by whoever started it).
        self.on_recorded: Callable[[Recorded], Coroutine[Any, Any, None]] | None = None
        # Called with the source and its picture size whenever a source starts, changes size or stops
        # (set by the handler).
        self.on_video: Callable[[VideoSource, Size | None], Coroutine[Any, Any, None]] | None = None

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
        feed = self.feeds[kind]
        return _media_state(kind, feed.size if feed.live else None)

    def voice(self, participant_id: str) -> Voice:
        if participant_id not in self.voices:
            self.voices[participant_id] = Voice()
        return self.voices[participant_id]

    def heard_by(self, listener_id: str) -> list[Voice]:
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

    def _announcer(self, kind: VideoSource) -> Callable[[Size | None], None]:
        def changed(size: Size | None) -> None:
            # Called from inside the feed's pump, so say what changed rather than asking the feed.
            # The customer sees the staff's shared screen; staff see everything.
            self.spawn(self.broadcast(_media_state(kind, size),
                                      None if kind is VideoSource.STAFF_SCREEN else STAFF))
            if self.on_video is not None:
                self.spawn(self.on_video(kind, size))
        return changed

    def start_recording(self, path: Path) -> None:
        """Record what the lead watches (the camera until they choose) and every voice."""
        lead = self.connections.get(self.lead or "")
        kind = lead.watching if lead is not None else VideoSource.CAMERA
        self.recorder = Recorder(path, self.feeds[kind], lambda: self.heard_by(""))

    def watched_by_lead(self, connection: Connection) -> None:
        """The lead chose another source: the recording follows what they see."""
        if self.recorder is not None and connection.participant.id == self.lead:
            self.recorder.watch(self.feeds[connection.watching])

    async def stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        done = await recorder.stop()
        if done is not None and self.on_recorded is not None:
            await self.on_recorded(done)

    async def close(self) -> None:
        await self.stop_recording()
        await asyncio.gather(*(c.close() for c in list(self.connections.values())))
        self.connections.clear()
        for feed in self.feeds.values():
            await feed.close()
        for voice in self.voices.values():
            voice.detach()
        for task in list(self._tasks):
            task.cancel()


def _media_state(kind: VideoSource, size: Size | None) -> MediaState:
    if size is None:
        return MediaState(source=kind.value, state="none")
    return MediaState(source=kind.value, state="live", width=size[0], height=size[1])


class Hub:
    """Every live room on this node. Bounded: at most `limit` live sessions, and only while the
    process has open files to spare for another (a node that is full says so instead of degrading
    the sessions it carries). A room is reserved before anything is awaited, so concurrent joins
    cannot overshoot the limit."""

    def __init__(self, limit: int, files: FileBudget | None = None) -> None:
        self.limit = limit
        self.rooms: dict[str, Room] = {}
        self._files = files
        self._reserved: set[str] = set()

    def get(self, session_id: str) -> Room | None:
        return self.rooms.get(session_id)

    def full(self) -> bool:
        if len(self.rooms) + len(self._reserved) >= self.limit:
            return True
        return self._files is not None and not self._files.room_for_session()

    def reserve(self, session_id: str) -> bool:
        """Hold a place for `session_id`'s room; False when the node is full."""
        if session_id in self.rooms or session_id in self._reserved:
            return True
        if self.full():
            return False
        self._reserved.add(session_id)
        return True

    def release(self, session_id: str) -> None:
        """Give up a reservation that did not become a room."""
        self._reserved.discard(session_id)

    def open(self, session_id: str, members: Iterable[Participant]) -> Room:
        self._reserved.discard(session_id)
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
