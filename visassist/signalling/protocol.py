"""The wire protocol: every signalling message as a typed class, validated on the way in.

This module is the one source of truth. docs/protocol.md describes it for people and
static/js/lib/protocol.js mirrors its names for the browser; tests/test_protocol.py keeps all three in step.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from visassist.annotations import Point, Shapes
from visassist.models import Outcome
from visassist.schemas import ChatMessageOut, FieldOut, SessionSummaryOut, SnapshotOut

PROTOCOL_VERSION = 1
MAX_SDP_CHARS = 64 * 1024
MAX_CHAT_CHARS = 2000
MAX_JSON_DEPTH = 32  # the deepest real message (a snapshot's points) nests 5 levels


class ErrorCode(enum.StrEnum):
    """Stable codes a client can act on; the message beside them is for people."""

    INVALID_MESSAGE = "invalid_message"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    NOT_AUTHENTICATED = "not_authenticated"
    SIGN_IN_REQUIRED = "sign_in_required"
    INVALID_TOKEN = "invalid_token"
    SESSION_EXPIRED = "session_expired"
    SESSION_ENDED = "session_ended"
    SESSION_REVOKED = "session_revoked"
    FORBIDDEN = "forbidden"
    NO_VIDEO = "no_video"
    SNAPSHOT_LIMIT = "snapshot_limit"
    MEDIA_FAILED = "media_failed"
    REPLACED = "replaced"
    SESSION_FULL = "session_full"
    NOT_FOUND = "not_found"
    SERVER_BUSY = "server_busy"
    READER_BUSY = "reader_busy"
    INTERNAL_ERROR = "internal_error"


class _Message(BaseModel):
    # Strict: a protocol of "1" or a request_id of 5 is a client bug worth reporting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Client -> server

Source = Literal["camera", "screen", "staff_screen"]
Profile = Literal["high", "medium", "low", "audio_only"]
Mid = Annotated[str, Field(min_length=1, max_length=16)]


class Hello(_Message):
    """First message on every socket: which protocol the client speaks and whose link it holds."""

    type: Literal["hello"]
    protocol: int
    token: Annotated[str, Field(min_length=1, max_length=256)]


class Offer(_Message):
    """An SDP offer. A new offer replaces the sender's peer connection (this is how media recovers).

    `sources` names what each sending video section carries, by mid: the customer sends "camera" and
    "screen", staff send "staff_screen". Sections it does not name are not used as video sources.
    """

    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
    sources: Annotated[dict[Mid, Source], Field(max_length=4)] = {}
    id: Annotated[int, Field(ge=0, le=2**53)] | None = None  # echoed in the answer, to match the two


class Ice(_Message):
    """A trickled ICE candidate of the sender's latest offer; a null candidate ends the list."""

    type: Literal["ice"]
    candidate: Annotated[str, Field(max_length=1024)] | None
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None


class TakeSnapshot(_Message):
    """Agent or expert: capture the newest frame of the watched source with these annotations."""

    type: Literal["snapshot"]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    annotations: Shapes = []


class AnnotateSnapshot(_Message):
    """Agent or expert: draw (again) on a stored snapshot, such as a device photo."""

    type: Literal["annotate"]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    snapshot_id: Annotated[str, Field(min_length=1, max_length=64)]
    annotations: Shapes


class EndSession(_Message):
    """Agent or expert: end the session for everyone with an outcome."""

    type: Literal["end"]
    outcome: Outcome
    notes: Annotated[str, Field(max_length=4000)] = ""


class Watch(_Message):
    """Staff: which of the customer's sources this viewer's video shows."""

    type: Literal["watch"]
    source: Literal["camera", "screen"]


class Ping(_Message):
    """Anyone: is the socket still alive? Answered with `pong` (a dead network is found in seconds)."""

    type: Literal["ping"]


class Chat(_Message):
    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_CHARS)]


class Annotations(_Message):
    """Agent or expert: the shapes drawn now (the draft stroke included), mirrored to everyone."""

    type: Literal["annotations"]
    shapes: Shapes


class Pointer(_Message):
    """Agent or expert: the laser pointer's position, or null when it leaves the picture."""

    type: Literal["pointer"]
    point: Point | None


class Freeze(_Message):
    """Agent or expert: hold the picture still for everyone (snapshots use the held frame), or let go."""

    type: Literal["freeze"]
    frozen: bool


class RequestPhoto(_Message):
    """Agent or expert: ask the customer's phone for a full-resolution photo."""

    type: Literal["photo.request"]


class CameraControl(_Message):
    """Agent or expert: change the customer's camera; fields left out are left as they are."""

    type: Literal["camera"]
    facing: Literal["user", "environment"] | None = None
    torch: bool | None = None
    zoom: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = None


class CameraState(_Message):
    """Customer: what the camera can do and is doing; `error` says why the last request failed."""

    type: Literal["camera.state"]
    facing: Annotated[list[Literal["user", "environment"]], Field(max_length=2)] = []
    current_facing: Literal["user", "environment"] | None = None
    cameras: Annotated[int, Field(ge=0, le=16)] = 0
    torch: bool | None = None  # None: not supported
    zoom: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    zoom_min: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    zoom_max: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    error: Annotated[str, Field(max_length=300)] | None = None


class CameraFailed(_Message):
    """Customer: the camera did not start, and why (the page tells the person what to do)."""

    type: Literal["camera.failed"]
    reason: Literal["refused", "missing", "busy", "insecure", "unsupported", "other"]
    error: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")]


class CameraAllowed(_Message):
    """Customer: the camera started (a step of the join funnel)."""

    type: Literal["camera.allowed"]


class QualityReport(_Message):
    """Customer: measured quality of the video it sends (from RTCPeerConnection.getStats)."""

    type: Literal["quality"]
    width: Annotated[int, Field(ge=0, le=10_000)] | None = None
    height: Annotated[int, Field(ge=0, le=10_000)] | None = None
    fps: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] | None = None
    bitrate_kbps: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = None
    packet_loss: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    rtt_ms: Annotated[float, Field(ge=0, le=60_000, allow_inf_nan=False)] | None = None
    profile: Profile = "high"


class RequestQuality(_Message):
    """Agent or expert: ask the customer's page to send less (or more) video."""

    type: Literal["quality.request"]
    profile: Profile


class Mute(_Message):
    """Anyone: whether their microphone is off; shown to everyone in presence."""

    type: Literal["mute"]
    muted: bool


class Invite(_Message):
    """Agent or expert: create a link for a Tier 3 expert or a supervisor."""

    type: Literal["invite"]
    role: Literal["expert", "supervisor"]
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class Handover(_Message):
    """Agent or expert: hand the lead to another agent or expert, who carries on after the sender leaves."""

    type: Literal["handover"]
    to: Annotated[str, Field(min_length=1, max_length=64)]


Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class ReadLabel(_Message):
    """Agent or expert: read the text and codes of the watched source's picture now (the held one
    while frozen), or of `region` of it (x0, y0, x1, y1 in 0..1). Nothing is stored."""

    type: Literal["read"]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    region: tuple[Unit, Unit, Unit, Unit] | None = None


class ConfirmField(_Message):
    """Agent or expert: confirm a value read off a snapshot (`value`: the right one, if it was misread)."""

    type: Literal["field.confirm"]
    field_id: Annotated[str, Field(min_length=1, max_length=64)]
    value: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class RejectField(_Message):
    """Agent or expert: dismiss a value read off a snapshot."""

    type: Literal["field.reject"]
    field_id: Annotated[str, Field(min_length=1, max_length=64)]


ClientMessageType = (Hello | Offer | Ice | Ping | TakeSnapshot | AnnotateSnapshot | EndSession | Watch | Chat
                     | Annotations | Pointer | Freeze | RequestPhoto | CameraControl | CameraState
                     | CameraFailed | CameraAllowed | QualityReport | RequestQuality | Mute | Invite
                     | Handover | ReadLabel | ConfirmField | RejectField)
ClientMessage = Annotated[ClientMessageType, Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessageType] = TypeAdapter(ClientMessage)


# Server -> client


class ParticipantInfo(BaseModel):
    id: str
    role: str
    name: str
    connected: bool
    muted: bool = True
    lead: bool = False


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    participant: ParticipantInfo
    session: SessionSummaryOut
    ice_servers: list[dict[str, str]]
    ice_transport_policy: Literal["all", "relay"] = "all"  # "relay": media only through TURN
    participants: list[ParticipantInfo]
    chat: list[ChatMessageOut] = []
    snapshots: list[SnapshotOut] = []  # staff only: the session's snapshots so far
    fields: list[FieldOut] = []  # staff only: the values read off them (chips) and their status
    reading: bool = False  # staff only: this server reads labels (`read`; snapshots get `snapshot.read`)
    frozen: bool = False
    audio: bool = False  # the session asked for the customer's microphone from the start
    # Base URLs of the other live nodes: where to ask for the session if this node stops answering.
    nodes: list[str] = []


class Answer(_Message):
    type: Literal["answer"] = "answer"
    sdp: str
    id: int | None = None  # the offer's


class Pong(_Message):
    type: Literal["pong"] = "pong"


class Presence(_Message):
    """Who is in the session now; sent to everyone whenever someone joins, leaves or mutes."""

    type: Literal["presence"] = "presence"
    participants: list[ParticipantInfo]


class MediaState(_Message):
    """Whether a video source reaches the server, and at what size (one message per source).
    `stalled`: it is live but its frames stopped arriving (the sender's network, most often)."""

    type: Literal["media"] = "media"
    source: Source = "camera"
    state: Literal["live", "stalled", "none"]
    width: int | None = None
    height: int | None = None


class SnapshotStored(_Message):
    type: Literal["snapshot.stored"] = "snapshot.stored"
    request_id: str | None
    snapshot: SnapshotOut


class TextOut(BaseModel):
    text: str
    confidence: float
    box: tuple[float, float, float, float]


class Found(BaseModel):
    name: str
    value: str
    confidence: float
    source: str
    box: tuple[float, float, float, float]


class LabelRead(_Message):
    """The answer to `read`: every line of text and every code, with where it is (0..1), and the
    fields the patterns found in them."""

    type: Literal["read.result"] = "read.result"
    request_id: str
    width: int
    height: int
    region: tuple[float, float, float, float] | None
    lines: list[TextOut]
    found: list[Found]
    duration_ms: int


class SnapshotRead(_Message):
    """Staff: a stored snapshot was read; `fields` are its chips (empty with `error` when it could not be
    read: busy, timeout, failed)."""

    type: Literal["snapshot.read"] = "snapshot.read"
    snapshot_id: str
    fields: list[FieldOut]
    error: str | None = None


class FieldDecided(_Message):
    """Staff: a field was confirmed, corrected or dismissed (by anyone, the API included)."""

    type: Literal["field"] = "field"
    field: FieldOut


class ChatOut(_Message):
    type: Literal["chat"] = "chat"
    message: ChatMessageOut


class AnnotationsOut(_Message):
    type: Literal["annotations"] = "annotations"
    by: str
    shapes: list[dict[str, Any]]


class PointerOut(_Message):
    type: Literal["pointer"] = "pointer"
    by: str
    point: tuple[float, float] | None


class Frozen(_Message):
    """The picture is held (or live again); the held frame is at <the page's link>/frozen.png."""

    type: Literal["frozen"] = "frozen"
    frozen: bool
    by: str | None = None
    source: Source = "camera"


class PhotoRequested(_Message):
    type: Literal["photo.requested"] = "photo.requested"
    by: str


class CameraControlOut(_Message):
    type: Literal["camera"] = "camera"
    facing: str | None = None
    torch: bool | None = None
    zoom: float | None = None


class CameraStateOut(_Message):
    type: Literal["camera.state"] = "camera.state"
    state: dict[str, Any]


class QualityOut(_Message):
    type: Literal["quality"] = "quality"
    report: dict[str, Any]
    poor: list[str]  # plain-words reasons the connection is poor; empty when it is fine


class QualityRequested(_Message):
    type: Literal["quality.request"] = "quality.request"
    profile: Profile
    by: str


class Invited(_Message):
    type: Literal["invited"] = "invited"
    participant: ParticipantInfo
    url: str


class Ended(_Message):
    """The session is over (ended by an agent or the API, or expired); the links no longer work."""

    type: Literal["ended"] = "ended"
    status: Literal["ended", "expired", "revoked"]
    outcome: str | None = None


class Restarting(_Message):
    """The server is restarting (a deploy): reconnect at once. The socket then closes with 1012."""

    type: Literal["restarting"] = "restarting"


class Moved(_Message):
    """The session is carried by another node now (its own node stopped answering): open the same link
    there. The socket then closes."""

    type: Literal["moved"] = "moved"
    url: str  # the node's base URL


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None  # the request_id or message type the error answers


ServerMessage = (Welcome | Answer | Pong | Presence | MediaState | SnapshotStored | ChatOut | AnnotationsOut
                 | PointerOut | Frozen | PhotoRequested | CameraControlOut | CameraStateOut | QualityOut
                 | QualityRequested | Invited | Ended | Restarting | Moved | Error | LabelRead | SnapshotRead
                 | FieldDecided)

CLIENT_MESSAGE_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].annotation.__args__[0] for m in ClientMessageType.__args__)
SERVER_MESSAGE_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].default for m in ServerMessage.__args__)


class ProtocolError(Exception):
    """Bad input on the socket: answered with an error message, never a dropped connection.

    Not a ClientError: its codes are the protocol's own, never those of an HTTP error body."""

    def __init__(self, code: ErrorCode, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.error_code = code
        self.message = message
        self.ref = ref

    def message_out(self) -> Error:
        return Error(code=self.error_code, message=self.message, ref=self.ref)


_ESCAPE = re.compile(r"\\.", re.S)
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether `text`'s arrays and objects nest more than `limit` levels, found without parsing it.

    Linear in the text's length: escapes go first, so a string is then simply quote to quote (brackets
    inside strings do not count). On text that is not JSON the answer means nothing, but parsing that
    text fails anyway."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    if brackets.count("[") + brackets.count("{") <= limit:
        return False
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets))) > limit


def parse_client_message(text: str) -> ClientMessageType:
    # The JSON parsers recurse per level: checked first, deep nesting is an error, not a RecursionError.
    if nests_deeper_than(text, MAX_JSON_DEPTH):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"message nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    kind = raw.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError(  # the echo is cut short: a "type" may be as long as the message
            ErrorCode.INVALID_MESSAGE,
            f"unknown message type {repr(kind)[:40]}; expected one of {', '.join(CLIENT_MESSAGE_TYPES)}",
        )
    try:
        return _client_adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "message"
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"{kind}: {where}: {first['msg']}", ref=str(kind)
        ) from None


def encode(message: ServerMessage) -> str:
    return message.model_dump_json(exclude_none=False, by_alias=True)
