"""Live rooms: who is connected to a session right now, and the media flowing through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from visassist.capacity import FileBudget
from visassist.media.audio import Voice
from visassist.media.feed import FeedTrack, Size, VideoFeed
from visassist.media.peer import Peer
from visassist.media.recorder import Recorded, Recorder
from visassist.models import STAFF, Participant, Role, VideoSource
from visassist.signalling.protocol import (
    Ended,
    Error,
    Frozen,
    MediaState,
    ParticipantInfo,
    Restarting,
    ServerMessage,
    Welcome,
    encode,
)

log = logging.getLogger(__name__)

# Seconds without a frame before a live source counts as stalled. A camera sends 15-30 frames a
# second; a shared screen that does not change sends about one (Chrome repeats the last frame).
STALL_AFTER = {VideoSource.CAMERA: 1.0, VideoSource.SCREEN: 3.0, VideoSource.STAFF_SCREEN: 3.0}


# What one socket may have waiting to be sent. A participant whose page stops reading (a frozen tab, a
# network path gone dead with its TCP window full) is disconnected rather than allowed to stall the
# room: every handler that tells the room something would otherwise wait on that one socket.
SEND_QUEUE_MESSAGES = 256
SEND_QUEUE_CHARS = 4 * 1024 * 1024  # characters of JSON, close enough to bytes
SEND_TIMEOUT = 5.0  # seconds one message may take to be handed to the socket
CLOSE_TIMEOUT = 2.0  # seconds a closing socket has to take its last messages and the close


@dataclass(eq=False)
class Connection:
    """One open socket of one participant (a participant has at most one at a time).

    Messages go out in order through a bounded queue, written by one task per socket; `send` never
    waits for the network."""

    participant: Participant
    ws: web.WebSocketResponse
    # The request's transport, to abort the socket (aiohttp offers no abort on a WebSocketResponse).
    transport: asyncio.Transport | None = None
    peer: Peer | None = None
    viewer: FeedTrack | None = None  # staff: the customer's video as this viewer watches it
    watching: VideoSource = VideoSource.CAMERA
    departed: bool = False  # its leaving has been told and recorded
    snapshots_path: str = ""  # where this participant's page fetches snapshot images
    dropped: bool = False  # aborted for not taking its messages
    # None in the queue: everything before it is sent, now close.
    _outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue, init=False, repr=False)
    _queued_chars: int = field(default=0, init=False, repr=False)
    _writer: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _closer: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    # Until its welcome is sent, what the room tells a new socket (presence as others join) waits:
    # the welcome comes first. Last words (ended, restarting, an error) do not wait.
    _held: list[ServerMessage] | None = field(default_factory=list, init=False, repr=False)

    async def send(self, message: ServerMessage) -> None:
        """Queue `message` for this socket and return at once (async only so that callers read the
        same as before the queue). A socket that has too much waiting is dropped."""
        if self._held is not None and not isinstance(message, Ended | Restarting | Error):
            if not isinstance(message, Welcome):
                self._held.append(message)
                return
            held, self._held = self._held, None
            await self.send(message)
            for later in held:
                await self.send(later)
            return
        if (self._closer is not None or self.dropped or self.ws.closed
                or (self._writer is not None and self._writer.done())):
            return
        text = encode(message)
        if (self._outbox.qsize() >= SEND_QUEUE_MESSAGES
                or self._queued_chars + len(text) > SEND_QUEUE_CHARS):
            self.drop(f"{self._outbox.qsize()} messages ({self._queued_chars} characters) unsent")
            return
        self._queued_chars += len(text)
        self._outbox.put_nowait(text)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.participant.id}")

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await self.ws.send_str(text)
            except TimeoutError:
                self.drop(f"a message took over {SEND_TIMEOUT:g} s to send")
                return
            except (ConnectionError, RuntimeError):
                return  # the socket is gone; its handler sees that and leaves
            self._queued_chars -= len(text)

    def drop(self, why: str) -> None:
        """Disconnect a participant who does not take their messages: reset the connection. Not a
        close: a close frame would queue behind the data they are not reading, and the transport's
        close() waits for its buffer to empty. abort() drops asyncio's buffer, but the kernel would
        still hold its own (megabytes) and go on offering it to the dead reader; lingering 0 makes the
        socket's close a reset (RST) that frees both. The handler's read then ends and the
        participant leaves the room the usual way (and may come back)."""
        if self.dropped:
            return
        self.dropped = True
        log.warning("dropping %s %s: %s", self.participant.role.value, self.participant.id, why)
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()

    async def replace_peer(self, peer: Peer | None) -> None:
        old, self.peer = self.peer, peer
        if old is not None:
            await old.close()

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        """Close after the messages already queued (the last ones often say why: ended, replaced,
        restarting). Later calls wait for the first; a caller cancelled meanwhile does not stop it."""
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._close(code, message))
        await asyncio.shield(self._closer)

    async def _close(self, code: int, message: bytes) -> None:
        await self.replace_peer(None)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if self._writer is not None and not self._writer.done():
                    self._outbox.put_nowait(None)
                    await self._writer
                if not self.dropped:
                    await self.ws.close(code=code, message=message)
        except TimeoutError:
            self.drop(f"it did not take its last messages within {CLOSE_TIMEOUT:g} s")
        except (ConnectionError, RuntimeError):
            pass


class Room:
    """One live session on this node: who is connected, the media flowing through it and the state
    everyone shares (lead, held picture, drawings). Its rules live in its methods; callers read it
    through properties and change it only through them."""

    def __init__(self, session_id: str, members: Iterable[Participant], lead: str | None = None,
                 joined_before: Iterable[str] = (),
                 on_video: Callable[[VideoSource, str, Size | None], Coroutine[Any, Any, None]] | None = None
                 ) -> None:
        self.session_id = session_id
        self._members: dict[str, Participant] = {p.id: p for p in members}
        self._connections: dict[str, Connection] = {}
        self.feeds: dict[VideoSource, VideoFeed] = {
            kind: VideoFeed(kind.value, on_change=self._announcer(kind), on_stall=self._stall_announcer(kind),
                            stall_after=STALL_AFTER[kind]) for kind in VideoSource
        }
        self._voices: dict[str, Voice] = {}
        self._unmuted: set[str] = set()
        self._lead = lead if lead is not None else next(
            (p.id for p in self._members.values() if p.role is Role.AGENT), None)
        self._drawings: dict[str, list[dict[str, Any]]] = {}
        self._frozen: VideoSource | None = None  # the source whose picture is held
        self._frozen_by: str | None = None
        self._sender_of: dict[VideoSource, str] = {}
        self._camera_state: dict[str, Any] | None = None
        self._quality: tuple[dict[str, Any], list[str]] | None = None
        self._joined_once: set[str] = set(joined_before)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recorder: Recorder | None = None
        self._on_recorded: Callable[[Recorded], Coroutine[Any, Any, None]] | None = None
        # Told the source, its sender and its picture size whenever a source starts, changes size or
        # stops (the timeline's media events).
        self._on_video = on_video

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Reading

    @property
    def lead(self) -> str | None:
        return self._lead

    @property
    def frozen(self) -> VideoSource | None:
        return self._frozen

    @property
    def frozen_by(self) -> str | None:
        return self._frozen_by

    @property
    def camera_state(self) -> dict[str, Any] | None:
        return self._camera_state

    @property
    def quality(self) -> tuple[dict[str, Any], list[str]] | None:
        return self._quality

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    def member(self, participant_id: str) -> Participant | None:
        return self._members.get(participant_id)

    def connected(self, participant_id: str) -> bool:
        return participant_id in self._connections

    def connection(self, participant_id: str) -> Connection | None:
        return self._connections.get(participant_id)

    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    def customer(self) -> Connection | None:
        return next((c for c in self._connections.values() if c.participant.role is Role.CUSTOMER), None)

    def drawings(self) -> list[tuple[str, list[dict[str, Any]]]]:
        return [(by, shapes) for by, shapes in self._drawings.items() if shapes]

    def held_picture(self) -> VideoFrame | None:
        return None if self._frozen is None else self.feeds[self._frozen].held

    def presence(self) -> list[ParticipantInfo]:
        return [
            ParticipantInfo(id=p.id, role=p.role.value, name=p.name, connected=self.connected(p.id),
                            muted=p.id not in self._unmuted, lead=p.id == self._lead)
            for p in self._members.values()
        ]

    def media_state(self, kind: VideoSource) -> MediaState:
        feed = self.feeds[kind]
        return _media_state(kind, feed.size if feed.live else None, feed.stalled)

    def heard_by(self, listener_id: str) -> list[Voice]:
        """The voices one listener hears: everyone else's who is unmuted (supervisors never speak)."""
        return [voice for pid, voice in self._voices.items()
                if pid != listener_id and pid in self._unmuted and pid in self._connections
                and self._connections[pid].participant.role is not Role.SUPERVISOR]

    # People

    def admit(self, participant: Participant) -> None:
        """A participant of the session (invited while the room is open, or joining)."""
        self._members.setdefault(participant.id, participant)

    def join(self, connection: Connection) -> tuple[bool, Connection | None]:
        """Register a participant's socket; returns whether they had been in this room before, and the
        same link's older socket that this one replaces (the newest wins). Synchronous on purpose: the
        room is never seen empty (and discarded) while someone joins."""
        participant = connection.participant
        self.admit(participant)
        previous = self._connections.get(participant.id)
        self._connections[participant.id] = connection
        rejoin = participant.id in self._joined_once
        self._joined_once.add(participant.id)
        return rejoin, previous

    def depart(self, connection: Connection) -> bool:
        """A socket is gone (closed, replaced, or the session is over). True the first time only, so the
        participant's leaving is told and recorded once; their voice and drawings go with the socket
        that is current."""
        if connection.departed:
            return False
        connection.departed = True
        pid = connection.participant.id
        if self._connections.get(pid) is connection:
            del self._connections[pid]
            self._unmuted.discard(pid)
            if pid in self._voices:
                self._voices.pop(pid).detach()
            self._drawings.pop(pid, None)
        return True

    def hand_over(self, to: str) -> str | None:
        """Make `to` the lead; returns the previous lead. The recording follows what the lead sees."""
        previous, self._lead = self._lead, to
        connection = self._connections.get(to)
        if connection is not None:
            self._follow(connection)
        return previous

    def set_muted(self, participant_id: str, muted: bool) -> bool:
        """True when this changed anything."""
        if muted == (participant_id not in self._unmuted):
            return False
        if muted:
            self._unmuted.discard(participant_id)
        else:
            self._unmuted.add(participant_id)
        return True

    def draw(self, participant_id: str, shapes: list[dict[str, Any]]) -> None:
        self._drawings[participant_id] = shapes

    # Media

    def voice(self, participant_id: str) -> Voice:
        if participant_id not in self._voices:
            self._voices[participant_id] = Voice()
        return self._voices[participant_id]

    def attach_video(self, kind: VideoSource, sender: str, track: MediaStreamTrack,
                     request_keyframe: Callable[[], None]) -> None:
        self._sender_of[kind] = sender
        self.feeds[kind].attach(track, request_keyframe)

    def watch(self, connection: Connection, kind: VideoSource) -> None:
        """A staff member chooses which source they see."""
        connection.watching = kind
        if connection.viewer is not None:
            connection.viewer.watch(self.feeds[kind])
        if connection.participant.id == self._lead:
            self._follow(connection)

    def report_camera(self, state: dict[str, Any]) -> None:
        self._camera_state = state

    def report_quality(self, report: dict[str, Any], poor: list[str]) -> None:
        self._quality = (report, poor)

    async def freeze(self, kind: VideoSource, by: str) -> bool | None:
        """Hold the picture of `kind`. True when held now, False when a picture was already held,
        None when there is no picture yet."""
        if self._frozen is not None:
            return False
        if await self.feeds[kind].freeze() is None:
            return None
        if self._frozen is not None:  # someone else froze while we waited for the picture
            return False
        self._frozen, self._frozen_by = kind, by
        return True

    def unfreeze(self) -> VideoSource | None:
        """Let the held picture go; returns its source (None when nothing was held)."""
        kind, self._frozen, self._frozen_by = self._frozen, None, None
        if kind is not None:
            self.feeds[kind].unfreeze()
        return kind

    async def broadcast(self, message: ServerMessage, roles: Iterable[Role] | None = None,
                        exclude: Connection | None = None) -> None:
        wanted = None if roles is None else set(roles)
        targets = [c for c in self._connections.values()
                   if (wanted is None or c.participant.role in wanted) and c is not exclude]
        await asyncio.gather(*(c.send(message) for c in targets))

    def _announcer(self, kind: VideoSource) -> Callable[[Size | None], None]:
        def changed(size: Size | None) -> None:
            # Called from inside the feed's pump, so say what changed rather than asking the feed.
            # The customer sees the staff's shared screen; staff see everything.
            self.spawn(self._source_changed(kind, size))
        return changed

    def _stall_announcer(self, kind: VideoSource) -> Callable[[bool], None]:
        def stalled(_: bool) -> None:
            # Everyone is told, the sender too: its page says the picture is not getting through.
            self.spawn(self.broadcast(self.media_state(kind)))
        return stalled

    async def _source_changed(self, kind: VideoSource, size: Size | None) -> None:
        if size is None and self._frozen is kind:
            # The held frame goes with its source: a reconnecting customer comes back live.
            self.unfreeze()
            await self.broadcast(Frozen(frozen=False, source=kind.value))
        await self.broadcast(_media_state(kind, size), None if kind is VideoSource.STAFF_SCREEN else STAFF)
        if self._on_video is not None:
            await self._on_video(kind, self._sender_of.get(kind, "system"), size)

    # Recording

    def start_recording(self, path: Path, on_recorded: Callable[[Recorded], Coroutine[Any, Any, None]]
                        ) -> None:
        """Record what the lead watches (the camera until they choose) and every voice."""
        lead = self._connections.get(self._lead or "")
        kind = lead.watching if lead is not None else VideoSource.CAMERA
        self._recorder = Recorder(path, self.feeds[kind], lambda: self.heard_by(""))
        self._on_recorded = on_recorded

    def _follow(self, connection: Connection) -> None:
        if self._recorder is not None:
            self._recorder.watch(self.feeds[connection.watching])

    async def stop_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        done = await recorder.stop()
        if done is not None and self._on_recorded is not None:
            await self._on_recorded(done)

    async def close(self) -> None:
        await self.stop_recording()
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in connections))
        for feed in self.feeds.values():
            await feed.close()
        for voice in self._voices.values():
            voice.detach()
        for task in list(self._tasks):
            task.cancel()


def _media_state(kind: VideoSource, size: Size | None, stalled: bool = False) -> MediaState:
    if size is None:
        return MediaState(source=kind.value, state="none")
    return MediaState(source=kind.value, state="stalled" if stalled else "live", width=size[0],
                      height=size[1])


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

    def load(self) -> int:
        """Rooms held or reserved, as the other nodes see it: the limit itself when full for any reason
        (open files too), so placement passes this node by."""
        return self.limit if self.full() else len(self.rooms) + len(self._reserved)

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

    def open(self, room: Room) -> Room:
        """The room for its session: `room` unless another was opened meanwhile."""
        self._reserved.discard(room.session_id)
        return self.rooms.setdefault(room.session_id, room)

    def connected(self, session_id: str) -> list[str]:
        """Who is connected to a session on this node (for the use cases, see sessions.LiveRooms)."""
        room = self.rooms.get(session_id)
        return sorted(c.participant.id for c in room.connections()) if room else []

    async def stop_recording(self, session_id: str) -> None:
        room = self.rooms.get(session_id)
        if room is not None:
            await room.stop_recording()

    async def discard_if_empty(self, session_id: str) -> None:
        room = self.rooms.get(session_id)
        if room is not None and not room.connections():
            del self.rooms[session_id]
            await room.close()

    def detach(self, session_id: str) -> Room | None:
        return self.rooms.pop(session_id, None)

    async def close(self) -> None:
        rooms, self.rooms = list(self.rooms.values()), {}
        await asyncio.gather(*(room.close() for room in rooms))
