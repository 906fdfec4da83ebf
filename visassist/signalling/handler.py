"""The signalling socket: handshake, then typed messages until the participant leaves or the session ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

from visassist import accounts, logs
from visassist.api import public_base
from visassist.context import AppContext
from visassist.errors import ClientError
from visassist.events import MediaStarted, MediaStopped, ParticipantJoined, SessionHandover
from visassist.media.feed import Size
from visassist.media.recorder import Recorded
from visassist.media.turn import ice_servers_for
from visassist.models import Session, Status, VideoSource
from visassist.nodes import Moving
from visassist.schemas import SessionSummaryOut, SnapshotOut
from visassist.signalling.actions import Joined, dispatch, error
from visassist.signalling.live import depart
from visassist.signalling.protocol import (
    PROTOCOL_VERSION,
    AnnotationsOut,
    CameraStateOut,
    Error,
    ErrorCode,
    Frozen,
    Hello,
    Moved,
    ParticipantInfo,
    Presence,
    ProtocolError,
    QualityOut,
    Welcome,
    encode,
    parse_client_message,
)
from visassist.signalling.room import Connection, Room
from visassist.tasks import finish
from visassist.tokens import digest, looks_like_token

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
HEARTBEAT = 15.0


async def _refuse(ctx: AppContext, ws: web.WebSocketResponse, code: ErrorCode, message: str) -> None:
    ctx.metrics.refused.labels(ctx.metrics.node, code.value).inc()
    await ws.send_str(encode(error(code, message, "hello")))
    await ws.close()


async def handle(request: web.Request) -> web.WebSocketResponse:
    ctx: AppContext = request.app[AppContext.KEY]
    # aiohttp closes the socket (1009) on a frame over max_msg_size before reading it, so that is only
    # a memory ceiling far above our own limit, which _text answers with an error. Text arrives as
    # bytes (decode_text=False): aiohttp would close the socket on invalid UTF-8 too.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=ctx.settings.max_ws_frame_bytes,
                               decode_text=False)
    await ws.prepare(request)
    if not accounts.same_origin(request):
        # A page on another site must not drive a session with a signed-in agent's cookies.
        await _refuse(ctx, ws, ErrorCode.FORBIDDEN, "connections from other sites are refused")
        return ws
    try:
        joined = await _handshake(ctx, ws, public_base(request), request)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        # Past prepare() no error page can be sent: answer on the socket, as for any other message.
        log.exception("signalling handshake failed")
        await _refuse(ctx, ws, ErrorCode.INTERNAL_ERROR, "the server could not open this session; try again")
        return ws
    if joined is None:
        return ws
    logs.bind(session_id=joined.session.id, participant_id=joined.participant.id)
    try:
        await _greet(ctx, joined)
        await _serve(ctx, ws, joined)
    finally:
        # aiohttp cancels this handler when the client goes away; leaving must still finish.
        await finish(_leave(ctx, joined))
    return ws


async def _handshake(ctx: AppContext, ws: web.WebSocketResponse, base: str,
                     request: web.Request) -> Joined | None:
    try:
        first = await ws.receive(timeout=HELLO_TIMEOUT)
    except TimeoutError:
        await _refuse(ctx, ws, ErrorCode.NOT_AUTHENTICATED, "send a hello message first")
        return None
    if first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    try:
        hello = parse_client_message(_text(first, ctx.settings.max_ws_message_bytes))
    except ProtocolError as exc:
        await _refuse(ctx, ws, exc.error_code, exc.message)
        return None
    if not isinstance(hello, Hello):
        await _refuse(ctx, ws, ErrorCode.NOT_AUTHENTICATED, "the first message must be hello")
        return None
    if hello.protocol != PROTOCOL_VERSION:
        await _refuse(ctx, ws, ErrorCode.UNSUPPORTED_PROTOCOL,
                      f"this server speaks protocol {PROTOCOL_VERSION}; reload the page")
        return None

    participant = None
    if looks_like_token(hello.token):
        participant = await ctx.store.participant_by_token(digest(hello.token))
    if participant is None:
        await _refuse(ctx, ws, ErrorCode.INVALID_TOKEN, "this link is not valid")
        return None
    if participant.role.staff:
        try:
            await accounts.admit_staff(request, participant)
        except accounts.SignInRequired as exc:
            await _refuse(ctx, ws, ErrorCode.SIGN_IN_REQUIRED, exc.message)
            return None
        except ClientError as exc:
            await _refuse(ctx, ws, ErrorCode.FORBIDDEN, exc.message)
            return None
    session = await ctx.sessions.get(participant.session_id)
    status = session.effective_status(ctx.sessions.clock())
    if status is Status.ENDED:
        await _refuse(ctx, ws, ErrorCode.SESSION_ENDED, "this session has ended")
        return None
    if status is Status.REVOKED:
        await _refuse(ctx, ws, ErrorCode.SESSION_REVOKED, "this link was withdrawn")
        return None
    if status is Status.EXPIRED:
        await _refuse(ctx, ws, ErrorCode.SESSION_EXPIRED, "this link has expired")
        return None
    try:
        home = await ctx.nodes.where(session)
    except Moving:  # its node died a moment ago: it is placed elsewhere within seconds
        await _refuse(ctx, ws, ErrorCode.SERVER_BUSY, "this session is moving to another server; try again")
        return None
    if home is not None:
        await ws.send_str(encode(Moved(url=home)))
        await ws.close()
        return None
    room = ctx.hub.get(session.id)
    if room is None:
        if not ctx.hub.reserve(session.id):
            await _refuse(ctx, ws, ErrorCode.SERVER_BUSY, "the server is at capacity; try again shortly")
            return None
        try:
            members = await ctx.store.participants(session.id)
            timeline = [e.data for e in await ctx.store.events(session.id)]
            handovers = [d for d in timeline if isinstance(d, SessionHandover)]
            # Whoever joined before (also before a restart of this server) rejoins.
            joined = {d.participant_id for d in timeline if isinstance(d, ParticipantJoined)}
        except BaseException:
            ctx.hub.release(session.id)
            raise
        room = ctx.hub.get(session.id)  # someone else may have opened it while we read
        if room is None:
            room = ctx.hub.open(Room(session.id, members, handovers[-1].to if handovers else None,
                                     joined_before=joined, on_video=_media_recorder(ctx, session.id)))
            if session.record:
                _record(ctx, room, session)

    connection = Connection(participant=participant, ws=ws, transport=request.transport, snapshots_path=(
        f"/a/{hello.token}/snapshots" if participant.role.staff else ""))
    # Join with no await in between, so the room is never empty (and discarded) while we join;
    # from here on the caller's cleanup covers us.
    rejoin, previous = room.join(connection)
    return Joined(session=session, participant=participant, room=room, connection=connection,
                  rejoin=rejoin, replaces=previous, base=base)


async def _greet(ctx: AppContext, joined: Joined) -> None:
    session, participant, room, connection = (joined.session, joined.participant, joined.room,
                                              joined.connection)
    if joined.replaces is not None:
        # The same link opened again (a reload, a second tab): the newest socket wins.
        await joined.replaces.send(error(ErrorCode.REPLACED, "this link was opened somewhere else"))
        await depart(ctx.sessions, room, joined.replaces, "replaced")
        await joined.replaces.close()
    await ctx.sessions.joined(session, participant, joined.rejoin)
    current = await ctx.sessions.get(session.id)
    await connection.send(Welcome(
        participant=ParticipantInfo(id=participant.id, role=participant.role.value,
                                    name=participant.name, connected=True,
                                    lead=participant.id == room.lead),
        session=SessionSummaryOut.of(current, ctx.sessions.clock()),
        ice_servers=[s.to_browser() for s in ice_servers_for(ctx.settings, participant.id)],
        ice_transport_policy="relay" if ctx.settings.ice_relay_only else "all",
        participants=room.presence(),
        chat=await ctx.sessions.transcript(session.id),
        snapshots=[SnapshotOut.of(s, connection.snapshots_path)
                   for s in await ctx.store.snapshots(session.id)] if participant.role.staff else [],
        fields=await ctx.sessions.fields(session.id) if participant.role.staff else [],
        reading=participant.role.staff and bool(ctx.sessions.vision and ctx.sessions.vision.read_labels),
        frozen=room.frozen is not None,
        nodes=ctx.nodes.peers,
        audio=current.audio,
    ))
    await room.broadcast(Presence(participants=room.presence()))
    # Bring a (re)joining participant up to date with what is live now.
    if participant.role.staff:
        for kind in (VideoSource.CAMERA, VideoSource.SCREEN, VideoSource.STAFF_SCREEN):
            await connection.send(room.media_state(kind))
        if room.camera_state is not None:
            await connection.send(CameraStateOut(state=room.camera_state))
        if room.quality is not None:
            await connection.send(QualityOut(report=room.quality[0], poor=room.quality[1]))
    else:
        await connection.send(room.media_state(VideoSource.STAFF_SCREEN))
    for by, shapes in room.drawings():
        if by != participant.id:
            await connection.send(AnnotationsOut(by=by, shapes=shapes))
    if room.frozen is not None:
        await connection.send(Frozen(frozen=True, by=room.frozen_by, source=room.frozen.value))
    log.info("%s %s joined session %s", participant.role.value, participant.id, session.id)


def _record(ctx: AppContext, room: Room, session: Session) -> None:
    # No await here: the room must not be seen empty (and discarded) before the joiner registers.
    key, path = ctx.sessions.recording_path(session)

    async def recorded(done: Recorded) -> None:
        await ctx.sessions.recorded(session, key, done)

    room.start_recording(path, recorded)
    room.spawn(ctx.sessions.recording_started(session.id))


def _media_recorder(ctx: AppContext, session_id: str
                    ) -> Callable[[VideoSource, str, Size | None], Coroutine[Any, Any, None]]:
    """Writes a source's start and stop to the timeline (a new size of the same stream is no start)."""
    started: set[VideoSource] = set()

    async def changed(kind: VideoSource, sender: str, size: Size | None) -> None:
        if size is None:
            started.discard(kind)
            await ctx.sessions.record(session_id, MediaStopped(source=kind), sender)
        elif kind not in started:
            started.add(kind)
            await ctx.sessions.record(session_id, MediaStarted(participant_id=sender, source=kind,
                                                               width=size[0], height=size[1]), sender)

    return changed


def _text(message: WSMessage, limit: int) -> str:
    """A text frame's JSON text, its size checked before anything decodes or parses it."""
    if message.type != WSMsgType.TEXT:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "messages are JSON text")
    data: bytes = message.data
    if len(data) > limit:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"message larger than {limit} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message is not valid UTF-8") from None


async def _serve(ctx: AppContext, ws: web.WebSocketResponse, joined: Joined) -> None:
    limit = ctx.settings.max_ws_message_bytes
    async for message in ws:
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue  # pings and pongs; aiohttp ends the loop on close and errors
        ref: str | None = None
        try:
            parsed = parse_client_message(_text(message, limit))
            ref = getattr(parsed, "request_id", None) or parsed.type
            await dispatch(ctx, joined, parsed)
        except ProtocolError as exc:
            log.debug("refused a message in session %s: %s", joined.session.id, exc.message)
            out = exc.message_out()
            await joined.connection.send(out if out.ref else out.model_copy(update={"ref": ref}))
        except ClientError as exc:
            await joined.connection.send(_as_protocol_error(exc, ref))
        except Exception:
            log.exception("failed on a %s message in session %s", ref, joined.session.id)
            await joined.connection.send(error(
                ErrorCode.INTERNAL_ERROR, "the server failed on this message; try again", ref))


def _as_protocol_error(exc: ClientError, ref: str | None) -> Error:
    try:
        code = ErrorCode(exc.code.value)  # the codes both sides share, e.g. session_full
    except ValueError:
        code = ErrorCode.FORBIDDEN
    return error(code, exc.message, ref)


async def _leave(ctx: AppContext, joined: Joined) -> None:
    room, participant, connection = joined.room, joined.participant, joined.connection
    await depart(ctx.sessions, room, connection, "disconnected")
    await connection.close()
    if ctx.hub.get(room.session_id) is room:
        await ctx.hub.discard_if_empty(room.session_id)
    log.info("%s %s left session %s", participant.role.value, participant.id, joined.session.id)
