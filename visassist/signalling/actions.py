"""What each signalling message does, and who may send it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from visassist.annotations import shapes_adapter
from visassist.context import AppContext
from visassist.errors import NotFound
from visassist.events import (
    AudioChanged,
    CameraChanged,
    MediaFrozen,
    MediaUnfrozen,
    QualityChanged,
    SessionHandover,
)
from visassist.events import CameraAllowed as CameraStarted
from visassist.events import CameraFailed as CameraFailure
from visassist.events import PhotoRequested as PhotoAsked
from visassist.media.audio import VoiceTrack
from visassist.media.feed import FeedTrack
from visassist.media.peer import Peer, PeerError, read_offer
from visassist.media.pictures import to_bgr
from visassist.models import STAFF, Participant, Role, Session, Snapshot, SnapshotSource, VideoSource
from visassist.schemas import SnapshotOut
from visassist.signalling.protocol import (
    AnnotateSnapshot,
    Annotations,
    AnnotationsOut,
    Answer,
    CameraAllowed,
    CameraControl,
    CameraControlOut,
    CameraFailed,
    CameraState,
    CameraStateOut,
    Chat,
    ChatOut,
    ClientMessageType,
    ConfirmField,
    EndSession,
    Error,
    ErrorCode,
    Found,
    Freeze,
    Frozen,
    Handover,
    Hello,
    Ice,
    Invite,
    Invited,
    LabelRead,
    Mute,
    Offer,
    ParticipantInfo,
    PhotoRequested,
    Ping,
    Pointer,
    PointerOut,
    Pong,
    Presence,
    ProtocolError,
    QualityOut,
    QualityReport,
    QualityRequested,
    ReadLabel,
    RejectField,
    RequestPhoto,
    RequestQuality,
    SnapshotStored,
    TakeSnapshot,
    TextOut,
    Watch,
)
from visassist.signalling.room import Connection, Room
from visassist.vision import Busy, TimedOut

log = logging.getLogger(__name__)

M = TypeVar("M", bound=ClientMessageType)

LEADS = frozenset({Role.AGENT, Role.EXPERT})
ANYONE = frozenset(Role)
SPEAKERS = frozenset({Role.CUSTOMER, Role.AGENT, Role.EXPERT})
CUSTOMER = frozenset({Role.CUSTOMER})

# Video a role may send, by the name its offer gives the section.
SENDABLE = {Role.CUSTOMER: {VideoSource.CAMERA, VideoSource.SCREEN},
            Role.AGENT: {VideoSource.STAFF_SCREEN}, Role.EXPERT: {VideoSource.STAFF_SCREEN},
            Role.SUPERVISOR: set()}

# Quality thresholds behind the console's plain-words warning.
POOR_LOSS = 0.05
POOR_RTT_MS = 400
POOR_FPS = 10


@dataclass
class Joined:
    session: Session
    participant: Participant
    room: Room
    connection: Connection
    rejoin: bool
    replaces: Connection | None  # the same link's older socket, to be told and closed
    base: str  # where links point, for invitations


def error(code: ErrorCode, message: str, ref: str | None = None) -> Error:
    return Error(code=code, message=message, ref=ref)


Action = Callable[[AppContext, Joined, Any], Awaitable[None]]
ACTIONS: dict[type[Any], tuple[frozenset[Role], Action]] = {}
VERBS: dict[type[Any], str] = {}


def action(message: type[M], roles: frozenset[Role], verb: str) -> Callable[
        [Callable[[AppContext, Joined, M], Awaitable[None]]],
        Callable[[AppContext, Joined, M], Awaitable[None]]]:
    def register(handler: Callable[[AppContext, Joined, M], Awaitable[None]]
                 ) -> Callable[[AppContext, Joined, M], Awaitable[None]]:
        ACTIONS[message] = (roles, handler)
        VERBS[message] = verb
        return handler
    return register


async def dispatch(ctx: AppContext, joined: Joined, message: ClientMessageType) -> None:
    if isinstance(message, Hello):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "hello was already received", ref="hello")
    roles, handler = ACTIONS[type(message)]
    if joined.participant.role not in roles:
        raise ProtocolError(ErrorCode.FORBIDDEN,
                            f"a {joined.participant.role.value} cannot {VERBS[type(message)]}")
    await handler(ctx, joined, message)


async def _open_session(ctx: AppContext, joined: Joined, ref: str) -> Session:
    session = await ctx.sessions.get(joined.session.id)
    if not session.open_at(ctx.sessions.clock()):
        raise ProtocolError(ErrorCode.SESSION_ENDED, "the session is over", ref=ref)
    return session


# Media


@action(Offer, ANYONE, "send media")
async def offer(ctx: AppContext, joined: Joined, message: Offer) -> None:
    room, connection, participant = joined.room, joined.connection, joined.participant
    named = {mid: VideoSource(kind) for mid, kind in message.sources.items()}
    try:
        offered = read_offer(message.sdp)
    except PeerError as exc:
        raise ProtocolError(ErrorCode.MEDIA_FAILED, str(exc), ref="offer") from None
    if participant.role is Role.CUSTOMER and not named:
        # A customer offer that names nothing: its first video section is the camera.
        first = next((m for m in offered.description.media
                      if m.kind == "video" and m.direction in ("sendonly", "sendrecv")), None)
        if first is not None and first.rtp.muxId:
            named[first.rtp.muxId] = VideoSource.CAMERA
    refused = [kind.value for kind in named.values() if kind not in SENDABLE[participant.role]]
    if refused:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"a {participant.role.value} cannot send "
                                                 f"{', '.join(refused)}", ref="offer")
    viewer_given = False  # one video section carries video back; any others stay unused

    def on_track(track: MediaStreamTrack, mid: str | None, request_keyframe: Callable[[], None]) -> None:
        if track.kind == "video" and mid in named:
            room.attach_video(named[mid], participant.id, track, request_keyframe)
        elif track.kind == "audio" and participant.role in SPEAKERS:
            room.voice(participant.id).attach(track)
        else:
            # Every received track must be read, or aiortc queues its frames without bound. The room holds
            # the task (a MediaBlackhole's own tasks were collected while pending, logging errors).
            room.spawn(_drain(track))

    def outgoing(kind: str, mid: str, direction: str) -> MediaStreamTrack | None:
        if kind == "audio":
            return VoiceTrack(lambda: room.heard_by(participant.id))
        nonlocal viewer_given
        if kind != "video" or viewer_given or mid in named:
            return None
        viewer_given = True
        if participant.role is Role.CUSTOMER:
            return FeedTrack(room.feeds[VideoSource.STAFF_SCREEN])
        connection.viewer = FeedTrack(room.feeds[connection.watching])
        return connection.viewer

    def on_failed() -> None:
        if connection.peer is peer:
            log.info("%s %s: media connection lost", participant.role.value, participant.id)
            room.spawn(connection.send(error(ErrorCode.MEDIA_FAILED, "the media connection was lost",
                                             "offer")))

    peer = Peer(ctx.rtc_configuration, outgoing=outgoing, on_track=on_track, on_failed=on_failed)
    await connection.replace_peer(peer)
    try:
        sdp = await asyncio.wait_for(peer.answer(message.sdp), timeout=15)
    except (PeerError, TimeoutError) as exc:
        await connection.replace_peer(None)
        raise ProtocolError(ErrorCode.MEDIA_FAILED, str(exc) or "media negotiation timed out",
                            ref="offer") from None
    await connection.send(Answer(sdp=sdp, id=message.id))


@action(Ping, ANYONE, "ping")
async def ping(ctx: AppContext, joined: Joined, message: Ping) -> None:
    await joined.connection.send(Pong())


async def _drain(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


@action(Ice, ANYONE, "send ICE candidates")
async def ice(ctx: AppContext, joined: Joined, message: Ice) -> None:
    peer = joined.connection.peer
    if peer is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "send an offer before ICE candidates", ref="ice")
    try:
        await peer.add_candidate(message.candidate, message.sdpMid, message.sdpMLineIndex)
    except PeerError as exc:
        raise ProtocolError(ErrorCode.MEDIA_FAILED, str(exc), ref="ice") from None


@action(Watch, STAFF, "choose a source")
async def watch(ctx: AppContext, joined: Joined, message: Watch) -> None:
    kind = VideoSource(message.source)
    joined.room.watch(joined.connection, kind)
    await joined.connection.send(joined.room.media_state(kind))


@action(Mute, SPEAKERS, "use a microphone")
async def mute(ctx: AppContext, joined: Joined, message: Mute) -> None:
    room, pid = joined.room, joined.participant.id
    if not room.set_muted(pid, message.muted):
        return  # no change: nothing to record or tell
    changed = AudioChanged(participant_id=pid, role=joined.participant.role, muted=message.muted)
    await ctx.sessions.record(joined.session.id, changed, pid)
    await room.broadcast(Presence(participants=room.presence()))


# Snapshots and ending


@action(TakeSnapshot, LEADS, "take snapshots")
async def snapshot(ctx: AppContext, joined: Joined, message: TakeSnapshot) -> None:
    kind = joined.connection.watching
    started = time.perf_counter()
    frame = await joined.room.feeds[kind].picture()
    if frame is None:
        raise ProtocolError(ErrorCode.NO_VIDEO, f"there is no {kind.value} video from the customer yet",
                            ref=message.request_id)
    session = await _open_session(ctx, joined, message.request_id)
    taken = await ctx.sessions.capture(session, joined.participant, frame, list(message.annotations),
                                       SnapshotSource(kind.value))
    await _stored(ctx, joined, taken, message.request_id)
    # Decoding, drawing, storing and answering: what the agent waits for after the click.
    ctx.metrics.snapshot.labels(ctx.metrics.node, kind.value).observe(time.perf_counter() - started)


@action(AnnotateSnapshot, LEADS, "annotate snapshots")
async def annotate(ctx: AppContext, joined: Joined, message: AnnotateSnapshot) -> None:
    session = await _open_session(ctx, joined, message.request_id)
    updated = await ctx.sessions.annotate(session, message.snapshot_id, list(message.annotations),
                                          joined.participant)
    await _stored(ctx, joined, updated, message.request_id)


async def _stored(ctx: AppContext, joined: Joined, snapshot: Snapshot, request_id: str) -> None:
    # The other staff were told by the snapshot's event (signalling/live.py).
    view = SnapshotOut.of(snapshot, joined.connection.snapshots_path)
    await joined.connection.send(SnapshotStored(request_id=request_id, snapshot=view))


@action(EndSession, LEADS, "end the session")
async def end(ctx: AppContext, joined: Joined, message: EndSession) -> None:
    await ctx.sessions.end(joined.session.id, message.outcome, message.notes, joined.participant.id)


# Reading labels


@action(ReadLabel, LEADS, "read labels")
async def read_label(ctx: AppContext, joined: Joined, message: ReadLabel) -> None:
    vision = ctx.sessions.vision
    if vision is None or not vision.read_labels:
        raise ProtocolError(ErrorCode.FORBIDDEN, "reading labels is turned off on this server",
                            ref=message.request_id)
    kind = joined.connection.watching
    frame = await joined.room.feeds[kind].picture()  # the held picture while frozen
    if frame is None:
        raise ProtocolError(ErrorCode.NO_VIDEO, f"there is no {kind.value} video from the customer yet",
                            ref=message.request_id)
    region = message.region
    if region is not None and (region[2] - region[0] < 0.01 or region[3] - region[1] < 0.01):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "read: region must have x0 < x1 and y0 < y1",
                            ref=message.request_id)
    image = await to_bgr(frame)
    try:
        reading = await vision.read(image, region)
    except (Busy, TimedOut) as exc:
        raise ProtocolError(ErrorCode.READER_BUSY, f"the label reader is busy, try again: {exc}",
                            ref=message.request_id) from None
    await joined.connection.send(LabelRead(
        request_id=message.request_id, width=reading.width, height=reading.height, region=region,
        lines=[TextOut(text=t.text, confidence=t.confidence, box=t.box) for t in reading.lines],
        found=[Found(name=f.name, value=f.value, confidence=f.confidence, source=f.source, box=f.box)
               for f in reading.found],
        duration_ms=reading.duration_ms))


@action(ConfirmField, LEADS, "confirm fields")
async def confirm_field(ctx: AppContext, joined: Joined, message: ConfirmField) -> None:
    await _decide(ctx, joined, message.field_id, message.value, confirm=True)


@action(RejectField, LEADS, "dismiss fields")
async def reject_field(ctx: AppContext, joined: Joined, message: RejectField) -> None:
    await _decide(ctx, joined, message.field_id, None, confirm=False)


async def _decide(ctx: AppContext, joined: Joined, field_id: str, value: str | None, *,
                  confirm: bool) -> None:
    try:
        # Every console hears of it through the field's event (signalling/live.py).
        await ctx.sessions.decide_field(joined.session.id, field_id, value, joined.participant.id,
                                        confirm=confirm)
    except NotFound:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such field in this session", ref=field_id) from None


# Talking and drawing


@action(Chat, SPEAKERS, "chat")
async def chat(ctx: AppContext, joined: Joined, message: Chat) -> None:
    await _open_session(ctx, joined, "chat")
    sent = await ctx.sessions.chat(joined.session.id, joined.participant, message.text)
    await joined.room.broadcast(ChatOut(message=sent))


@action(Annotations, LEADS, "annotate")
async def mirror_annotations(ctx: AppContext, joined: Joined, message: Annotations) -> None:
    shapes = shapes_adapter.dump_python(list(message.shapes), mode="json")
    joined.room.draw(joined.participant.id, shapes)
    await joined.room.broadcast(AnnotationsOut(by=joined.participant.id, shapes=shapes),
                                exclude=joined.connection)


@action(Pointer, LEADS, "point")
async def pointer(ctx: AppContext, joined: Joined, message: Pointer) -> None:
    await joined.room.broadcast(PointerOut(by=joined.participant.id, point=message.point),
                                exclude=joined.connection)


# Controlling the customer's picture


@action(Freeze, LEADS, "freeze the picture")
async def freeze(ctx: AppContext, joined: Joined, message: Freeze) -> None:
    room, pid = joined.room, joined.participant.id
    if message.frozen:
        kind = joined.connection.watching
        held = await room.freeze(kind, pid)
        if held is None:
            raise ProtocolError(ErrorCode.NO_VIDEO, "there is no picture to freeze yet", ref="freeze")
        if held:
            await ctx.sessions.record(room.session_id, MediaFrozen(source=kind), pid)
            await room.broadcast(Frozen(frozen=True, by=pid, source=kind.value))
    elif (released := room.unfreeze()) is not None:
        await ctx.sessions.record(room.session_id, MediaUnfrozen(source=released), pid)
        await room.broadcast(Frozen(frozen=False, by=pid, source=released.value))


def _customer(joined: Joined, ref: str) -> Connection:
    customer = joined.room.customer()
    if customer is None:
        raise ProtocolError(ErrorCode.NO_VIDEO, "the customer is not connected", ref=ref)
    return customer


@action(RequestPhoto, LEADS, "ask for photos")
async def request_photo(ctx: AppContext, joined: Joined, message: RequestPhoto) -> None:
    customer = _customer(joined, "photo.request")
    await ctx.sessions.record(joined.session.id, PhotoAsked(), joined.participant.id)
    await customer.send(PhotoRequested(by=joined.participant.id))


@action(CameraControl, LEADS, "control the camera")
async def camera(ctx: AppContext, joined: Joined, message: CameraControl) -> None:
    customer = _customer(joined, "camera")
    asked = message.model_dump(exclude={"type"}, exclude_none=True)
    if not asked:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "say what to change: facing, torch or zoom",
                            ref="camera")
    await ctx.sessions.record(joined.session.id, CameraChanged(**asked), joined.participant.id)
    await customer.send(CameraControlOut(**asked))


@action(CameraState, CUSTOMER, "report the camera")
async def camera_state(ctx: AppContext, joined: Joined, message: CameraState) -> None:
    state = message.model_dump(exclude={"type"})
    joined.room.report_camera(state)
    await joined.room.broadcast(CameraStateOut(state=state), STAFF)


@action(CameraAllowed, CUSTOMER, "report the camera")
async def camera_allowed(ctx: AppContext, joined: Joined, message: CameraAllowed) -> None:
    # A step of the join funnel (visassist/analytics.py), in the timeline.
    await ctx.sessions.record(joined.session.id, CameraStarted(), joined.participant.id)


@action(CameraFailed, CUSTOMER, "report the camera")
async def camera_failed(ctx: AppContext, joined: Joined, message: CameraFailed) -> None:
    # In the timeline (the agent's record shows why no picture came, analytics why customers stop)
    # and counted by /metrics.
    await ctx.sessions.record(joined.session.id, CameraFailure(reason=message.reason, error=message.error),
                              joined.participant.id)


def poor_reasons(report: QualityReport) -> list[str]:
    reasons = []
    if report.packet_loss is not None and report.packet_loss > POOR_LOSS:
        reasons.append(f"{report.packet_loss:.0%} of the video is lost on the way")
    if report.rtt_ms is not None and report.rtt_ms > POOR_RTT_MS:
        reasons.append(f"the connection is slow ({report.rtt_ms:.0f} ms round trip)")
    if report.profile != "audio_only" and report.fps is not None and report.fps < POOR_FPS:
        reasons.append(f"the picture is choppy ({report.fps:.0f} frames a second)")
    return reasons


@action(QualityReport, CUSTOMER, "report quality")
async def quality(ctx: AppContext, joined: Joined, message: QualityReport) -> None:
    report, poor = message.model_dump(exclude={"type"}), poor_reasons(message)
    joined.room.report_quality(report, poor)
    await joined.room.broadcast(QualityOut(report=report, poor=poor), STAFF)


@action(RequestQuality, LEADS, "change the quality")
async def request_quality(ctx: AppContext, joined: Joined, message: RequestQuality) -> None:
    customer = _customer(joined, "quality.request")
    await ctx.sessions.record(joined.session.id, QualityChanged(profile=message.profile),
                              joined.participant.id)
    await customer.send(QualityRequested(profile=message.profile, by=joined.participant.id))


# People


@action(Invite, LEADS, "invite")
async def invite(ctx: AppContext, joined: Joined, message: Invite) -> None:
    await _open_session(ctx, joined, "invite")
    invited, url = await ctx.sessions.invite(joined.session.id, Role(message.role), message.name,
                                             joined.participant.id, joined.base)
    await joined.connection.send(Invited(
        participant=ParticipantInfo(id=invited.id, role=invited.role.value, name=invited.name,
                                    connected=False), url=url))


@action(Handover, LEADS, "hand over")
async def handover(ctx: AppContext, joined: Joined, message: Handover) -> None:
    room = joined.room
    target = room.member(message.to)
    if target is None or target.role not in LEADS or target.id == joined.participant.id:
        raise ProtocolError(ErrorCode.NOT_FOUND, "hand over to another agent or expert in this session",
                            ref="handover")
    previous = room.hand_over(target.id)
    await ctx.sessions.record(joined.session.id,
                              SessionHandover(from_=previous, to=target.id, role=target.role),
                              joined.participant.id)
    await room.broadcast(Presence(participants=room.presence()))
