"""The signalling socket: handshake, then typed messages until the participant leaves or the session ends."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import WSMsgType, web
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from visassist.context import AppContext
from visassist.errors import ClientError
from visassist.media.peer import Peer, PeerError
from visassist.media.relay import ViewerTrack
from visassist.models import Participant, Role, Session, Status
from visassist.signalling.protocol import (
    PROTOCOL_VERSION,
    Answer,
    EndSession,
    Error,
    ErrorCode,
    Hello,
    Ice,
    Offer,
    ParticipantInfo,
    Presence,
    ProtocolError,
    SnapshotStored,
    TakeSnapshot,
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


@dataclass
class Joined:
    session: Session
    participant: Participant
    room: Room
    connection: Connection
    rejoin: bool
    replaces: Connection | None  # the same link's older socket, to be told and closed


def _error(code: ErrorCode, message: str, ref: str | None = None) -> Error:
    return Error(code=code, message=message, ref=ref)


def _as_protocol_error(exc: ClientError, ref: str | None) -> Error:
    try:
        code = ErrorCode(exc.code)
    except ValueError:
        code = ErrorCode.FORBIDDEN
    return _error(code, exc.message, ref)


async def _refuse(ws: web.WebSocketResponse, code: ErrorCode, message: str) -> None:
    await ws.send_str(encode(_error(code, message, "hello")))
    await ws.close()


async def handle(request: web.Request) -> web.WebSocketResponse:
    ctx: AppContext = request.app[AppContext.KEY]
    # aiohttp's own limit is a backstop; our lower limit answers with an error message instead.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=4 * ctx.settings.max_ws_message_bytes)
    await ws.prepare(request)
    try:
        joined = await _handshake(ctx, ws)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:
        # Past prepare() no error page can be sent: answer on the socket, as for any other message.
        log.exception("signalling handshake failed")
        await _refuse(ws, ErrorCode.INTERNAL_ERROR, "the server could not open this session; try again")
        return ws
    if joined is None:
        return ws
    try:
        await _greet(ctx, joined)
        await _serve(ctx, ws, joined)
    finally:
        # aiohttp cancels this handler when the client goes away; leaving must still finish.
        await finish(_leave(ctx, joined))
    return ws


async def _handshake(ctx: AppContext, ws: web.WebSocketResponse) -> Joined | None:
    try:
        first = await ws.receive(timeout=HELLO_TIMEOUT)
    except TimeoutError:
        await _refuse(ws, ErrorCode.NOT_AUTHENTICATED, "send a hello message first")
        return None
    if first.type != WSMsgType.TEXT:
        if first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        await _refuse(ws, ErrorCode.INVALID_MESSAGE, "messages are JSON text")
        return None
    try:
        hello = parse_client_message(first.data)
    except ProtocolError as exc:
        await _refuse(ws, exc.error_code, exc.message)
        return None
    if not isinstance(hello, Hello):
        await _refuse(ws, ErrorCode.NOT_AUTHENTICATED, "the first message must be hello")
        return None
    if hello.protocol != PROTOCOL_VERSION:
        await _refuse(ws, ErrorCode.UNSUPPORTED_PROTOCOL,
                      f"this server speaks protocol {PROTOCOL_VERSION}; reload the page")
        return None

    participant = None
    if looks_like_token(hello.token):
        participant = await ctx.store.participant_by_token(digest(hello.token))
    if participant is None:
        await _refuse(ws, ErrorCode.INVALID_TOKEN, "this link is not valid")
        return None
    session = await ctx.sessions.get(participant.session_id)
    status = session.effective_status()
    if status is Status.ENDED:
        await _refuse(ws, ErrorCode.SESSION_ENDED, "this session has ended")
        return None
    if status is Status.EXPIRED:
        await _refuse(ws, ErrorCode.SESSION_EXPIRED, "this link has expired")
        return None
    room = ctx.hub.get(session.id)
    if room is None:
        if ctx.hub.full():
            await _refuse(ws, ErrorCode.SERVER_BUSY, "the server is at capacity; try again shortly")
            return None
        room = ctx.hub.open(session.id, await ctx.store.participants(session.id))
        _watch_video(ctx, room)

    connection = Connection(participant=participant, ws=ws)
    # Register with no await in between, so the room is never empty (and discarded) while we join;
    # from here on the caller's cleanup covers us.
    previous = room.connections.get(participant.id)
    room.connections[participant.id] = connection
    rejoin = participant.id in room.joined_once
    room.joined_once.add(participant.id)
    return Joined(session=session, participant=participant, room=room, connection=connection,
                  rejoin=rejoin, replaces=previous)


async def _greet(ctx: AppContext, joined: Joined) -> None:
    session, participant, room, connection = (joined.session, joined.participant, joined.room,
                                              joined.connection)
    if joined.replaces is not None:
        # The same link opened again (a reload, a second tab): the newest socket wins.
        await joined.replaces.send(_error(ErrorCode.REPLACED, "this link was opened somewhere else"))
        await ctx.sessions.left(session.id, participant, "replaced")
        await joined.replaces.close()
    await ctx.sessions.joined(session, participant, joined.rejoin)
    await connection.send(Welcome(
        participant=ParticipantInfo(id=participant.id, role=participant.role.value,
                                    name=participant.name, connected=True),
        session=ctx.sessions.summary(await ctx.sessions.get(session.id)),
        ice_servers=[s.to_browser() for s in ctx.settings.ice_servers],
        participants=room.presence(),
    ))
    await room.broadcast(Presence(participants=room.presence()))
    if participant.role is Role.AGENT:
        await connection.send(room.media_state())
    log.info("%s %s joined session %s", participant.role.value, participant.id, session.id)


def _watch_video(ctx: AppContext, room: Room) -> None:
    async def started(frame: VideoFrame) -> None:
        customer = next((c.participant for c in room.connections.values()
                         if c.participant.role is Role.CUSTOMER), None)
        if customer is not None:
            await ctx.sessions.media_started(room.session_id, customer, frame.width, frame.height)

    room.on_video_started = started


async def _serve(ctx: AppContext, ws: web.WebSocketResponse, joined: Joined) -> None:
    limit = ctx.settings.max_ws_message_bytes
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            if len(message.data) > limit:
                await joined.connection.send(_error(
                    ErrorCode.INVALID_MESSAGE, f"message larger than {limit} bytes"))
                continue
            ref: str | None = None
            try:
                parsed = parse_client_message(message.data)
                ref = getattr(parsed, "request_id", None) or parsed.type
                await _dispatch(ctx, joined, parsed)
            except ProtocolError as exc:
                error = exc.message_out()
                await joined.connection.send(error if error.ref else error.model_copy(update={"ref": ref}))
            except ClientError as exc:
                await joined.connection.send(_as_protocol_error(exc, ref))
            except Exception:
                log.exception("failed on a %s message in session %s", ref, joined.session.id)
                await joined.connection.send(_error(
                    ErrorCode.INTERNAL_ERROR, "the server failed on this message; try again", ref))
        elif message.type == WSMsgType.BINARY:
            await joined.connection.send(_error(ErrorCode.INVALID_MESSAGE, "messages are JSON text"))


async def _dispatch(ctx: AppContext, joined: Joined,
                    message: Hello | Offer | Ice | TakeSnapshot | EndSession) -> None:
    connection, participant = joined.connection, joined.participant
    if isinstance(message, Hello):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "hello was already received", ref="hello")
    if isinstance(message, Offer):
        await _offer(ctx, joined, message)
    elif isinstance(message, Ice):
        if connection.peer is None:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "send an offer before ICE candidates",
                                ref="ice")
        try:
            await connection.peer.add_candidate(message.candidate, message.sdpMid, message.sdpMLineIndex)
        except PeerError as exc:
            raise ProtocolError(ErrorCode.MEDIA_FAILED, str(exc), ref="ice") from None
    elif isinstance(message, TakeSnapshot):
        _require_agent(participant, "take snapshots")
        frame = joined.room.source.frame
        if frame is None or not joined.room.source.live:
            raise ProtocolError(ErrorCode.NO_VIDEO, "there is no video from the customer yet",
                                ref=message.request_id)
        session = await ctx.sessions.get(joined.session.id)
        if session.effective_status() not in (Status.WAITING, Status.LIVE):
            raise ProtocolError(ErrorCode.SESSION_ENDED, "the session is over", ref=message.request_id)
        snapshot = await ctx.sessions.capture(session, participant, frame, list(message.annotations))
        view = ctx.sessions.snapshot_view(snapshot)
        await joined.room.broadcast(SnapshotStored(request_id=None, snapshot=view), {Role.AGENT},
                                    exclude=connection)
        await connection.send(SnapshotStored(request_id=message.request_id, snapshot=view))
    elif isinstance(message, EndSession):
        _require_agent(participant, "end the session")
        await ctx.sessions.end(joined.session.id, message.outcome, message.notes, participant.id)


async def _offer(ctx: AppContext, joined: Joined, offer: Offer) -> None:
    room, connection = joined.room, joined.connection

    def on_track(track: MediaStreamTrack) -> None:
        if joined.participant.role is Role.CUSTOMER and track.kind == "video":
            room.source.attach(track)
            return
        # Every received track must be read, or aiortc queues its frames without bound.
        drain = MediaBlackhole()
        drain.addTrack(track)
        room.spawn(drain.start())

    if joined.participant.role is Role.CUSTOMER:
        peer = Peer(ctx.rtc_configuration, on_track=on_track)
    else:
        peer = Peer(ctx.rtc_configuration, send=ViewerTrack(room.source), on_track=on_track)
    await connection.replace_peer(peer)
    try:
        sdp = await asyncio.wait_for(peer.answer(offer.sdp), timeout=15)
    except (PeerError, TimeoutError) as exc:
        await connection.replace_peer(None)
        raise ProtocolError(ErrorCode.MEDIA_FAILED, str(exc) or "media negotiation timed out",
                            ref="offer") from None
    await connection.send(Answer(sdp=sdp))


def _require_agent(participant: Participant, action: str) -> None:
    if participant.role is not Role.AGENT:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"only the agent can {action}")


async def _leave(ctx: AppContext, joined: Joined) -> None:
    room, participant, connection = joined.room, joined.participant, joined.connection
    if room.connections.get(participant.id) is connection:
        del room.connections[participant.id]
        await ctx.sessions.left(joined.session.id, participant, "disconnected")
        await room.broadcast(Presence(participants=room.presence()))
    await connection.close()
    if ctx.hub.get(room.session_id) is room:
        await ctx.hub.discard_if_empty(room.session_id)
    log.info("%s %s left session %s", participant.role.value, participant.id, joined.session.id)
