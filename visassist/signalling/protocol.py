"""The wire protocol: every signalling message as a typed class, validated on the way in.

This module is the one source of truth. docs/protocol.md describes it for people and
static/js/protocol.js mirrors its names for the browser; tests/test_protocol.py keeps all three in step.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from visassist.annotations import Shapes
from visassist.errors import ClientError
from visassist.models import Outcome

PROTOCOL_VERSION = 1
MAX_SDP_CHARS = 64 * 1024


class ErrorCode(enum.StrEnum):
    """Stable codes a client can act on; the message beside them is for people."""

    INVALID_MESSAGE = "invalid_message"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    NOT_AUTHENTICATED = "not_authenticated"
    INVALID_TOKEN = "invalid_token"
    SESSION_EXPIRED = "session_expired"
    SESSION_ENDED = "session_ended"
    FORBIDDEN = "forbidden"
    NO_VIDEO = "no_video"
    SNAPSHOT_LIMIT = "snapshot_limit"
    MEDIA_FAILED = "media_failed"
    REPLACED = "replaced"
    SERVER_BUSY = "server_busy"
    INTERNAL_ERROR = "internal_error"


class _Message(BaseModel):
    # Strict: a protocol of "1" or a request_id of 5 is a client bug worth reporting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Client -> server


class Hello(_Message):
    """First message on every socket: which protocol the client speaks and whose link it holds."""

    type: Literal["hello"]
    protocol: int
    token: Annotated[str, Field(min_length=1, max_length=256)]


class Offer(_Message):
    """An SDP offer. A new offer replaces the sender's peer connection (this is how media recovers)."""

    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]


class Ice(_Message):
    """A trickled ICE candidate of the sender's latest offer; a null candidate ends the list."""

    type: Literal["ice"]
    candidate: Annotated[str, Field(max_length=1024)] | None
    sdpMid: Annotated[str, Field(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None


class TakeSnapshot(_Message):
    """Agent only: capture the newest frame of the customer's video with these annotations."""

    type: Literal["snapshot"]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    annotations: Shapes = []


class EndSession(_Message):
    """Agent only: end the session for everyone with an outcome."""

    type: Literal["end"]
    outcome: Outcome
    notes: Annotated[str, Field(max_length=4000)] = ""


ClientMessage = Annotated[Hello | Offer | Ice | TakeSnapshot | EndSession, Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# Server -> client


class ParticipantInfo(BaseModel):
    id: str
    role: str
    name: str
    connected: bool


class Welcome(_Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    participant: ParticipantInfo
    session: dict[str, Any]
    ice_servers: list[dict[str, str]]
    participants: list[ParticipantInfo]


class Answer(_Message):
    type: Literal["answer"] = "answer"
    sdp: str


class Presence(_Message):
    """Who is in the session now; sent to everyone whenever someone joins or leaves."""

    type: Literal["presence"] = "presence"
    participants: list[ParticipantInfo]


class MediaState(_Message):
    """Whether the customer's camera reaches the server, and at what size."""

    type: Literal["media"] = "media"
    state: Literal["live", "none"]
    width: int | None = None
    height: int | None = None


class SnapshotStored(_Message):
    type: Literal["snapshot.stored"] = "snapshot.stored"
    request_id: str | None
    snapshot: dict[str, Any]


class Ended(_Message):
    """The session is over (ended by an agent or the API, or expired); the links no longer work."""

    type: Literal["ended"] = "ended"
    status: Literal["ended", "expired"]
    outcome: str | None = None


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | None = None  # the request_id or message type the error answers


ServerMessage = Welcome | Answer | Presence | MediaState | SnapshotStored | Ended | Error

CLIENT_MESSAGE_TYPES = ("hello", "offer", "ice", "snapshot", "end")
SERVER_MESSAGE_TYPES = ("welcome", "answer", "presence", "media", "snapshot.stored", "ended", "error")


class ProtocolError(ClientError):
    """Bad input on the socket: answered with an error message, never a dropped connection."""

    def __init__(self, code: ErrorCode, message: str, *, ref: str | None = None) -> None:
        super().__init__(code.value, message)
        self.error_code = code
        self.ref = ref

    def message_out(self) -> Error:
        return Error(code=self.error_code, message=self.message, ref=self.ref)


def parse_client_message(text: str) -> Hello | Offer | Ice | TakeSnapshot | EndSession:
    try:
        raw = json.loads(text)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    kind = raw.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"unknown message type {kind!r}; expected one of {', '.join(CLIENT_MESSAGE_TYPES)}",
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
    return message.model_dump_json(exclude_none=False)
