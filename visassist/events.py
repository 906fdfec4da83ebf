"""The session timeline's events: one typed model per event type, and the bus they are published on.

A use case (visassist/sessions.py) records an event with the state change it describes, in one
transaction, then publishes it. Whatever reacts to events subscribes instead of being called: the live
rooms (visassist/signalling/live.py), the webhook outbox (visassist/webhooks.py), and later analytics and
the relay between nodes. The models say which events are webhooks, what a webhook carries and which
fields are personal (erased with the ticket); docs/events.md is generated from them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from visassist.models import EventType, Outcome, Role, Session, SnapshotSource, VideoSource, iso

log = logging.getLogger(__name__)


class WebhookContext(Protocol):
    """What a webhook body may show besides the event: the session's media, as receivers see it."""

    async def snapshot(self, snapshot_id: str) -> dict[str, Any] | None: ...

    async def snapshots(self) -> list[dict[str, Any]]: ...

    async def recordings(self) -> list[dict[str, Any]]: ...

    async def fields(self) -> list[dict[str, Any]]:
        """The session's confirmed fields (schemas.FieldOut)."""
        ...


class EventData(BaseModel):
    """The data of one event type. Fields listed in `personal` go when the ticket is erased."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    type: ClassVar[EventType]
    summary: ClassVar[str]
    personal: ClassVar[frozenset[str]] = frozenset()
    webhook: ClassVar[bool] = False  # sent to webhook receivers (and adapters such as Zendesk)

    erased: bool = False

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler,
                     info: SerializationInfo) -> dict[str, Any]:
        # Optional fields that were not given (or were erased) are left out, as is `erased` until true.
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        for name, value in list(data.items()):
            field = fields.get(name) or next((f for f in fields.values() if f.alias == name), None)
            if (value is None and field is not None and not field.is_required()) or (
                    name == "erased" and not value):
                del data[name]
        return data

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def erase(self) -> EventData:
        """The event without its personal fields (its type, time and the rest stay)."""
        if not self.personal:
            return self
        return self.model_copy(update={name: None for name in self.personal} | {"erased": True})

    async def webhook_body(self, context: WebhookContext) -> dict[str, Any]:
        """The `data` of this event's webhook; the event's own data unless a type says otherwise."""
        return self.public()


EVENT_DATA: dict[EventType, type[EventData]] = {}


def _event(cls: type[EventData]) -> type[EventData]:
    EVENT_DATA[cls.type] = cls
    return cls


def _iso(moment: datetime) -> str:
    text = iso(moment)
    assert text is not None
    return text


# Sessions


@_event
class SessionCreated(EventData):
    type = EventType.SESSION_CREATED
    summary = "a ticket system (or a person) created the session"
    personal = frozenset({"ticket_id"})
    webhook = True
    ticket_id: str | None = None
    tier: int
    expires_at: str

    async def webhook_body(self, context: WebhookContext) -> dict[str, Any]:
        return {"tier": self.tier, "expires_at": self.expires_at}

    @classmethod
    def of(cls, session: Session) -> SessionCreated:
        return cls(ticket_id=session.ticket_id, tier=session.tier, expires_at=_iso(session.expires_at))


@_event
class SessionEnded(EventData):
    type = EventType.SESSION_ENDED
    summary = "staff or the API ended the session with an outcome"
    personal = frozenset({"notes"})
    webhook = True
    connected: list[str] = Field(default_factory=list)  # who was in the room at the end
    outcome: Outcome
    notes: str | None = None
    duration_seconds: float | None = None

    async def webhook_body(self, context: WebhookContext) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "notes": self.notes, "duration_seconds": self.duration_seconds,
                "snapshots": await context.snapshots(), "recordings": await context.recordings(),
                "fields": await context.fields()}


@_event
class SessionExpired(EventData):
    type = EventType.SESSION_EXPIRED
    summary = "the session's time ran out before it was ended"


@_event
class SessionRevoked(EventData):
    type = EventType.SESSION_REVOKED
    summary = "the links were withdrawn; whoever was in was disconnected"


@_event
class SessionMoved(EventData):
    type = EventType.SESSION_MOVED
    summary = ("its node stopped answering (or stopped and did not come back); the session was placed "
               "on another node, where its people rejoin")
    from_node: str
    to_node: str | None = None  # none when no node had room: the session waits for one


@_event
class SessionRated(EventData):
    type = EventType.SESSION_RATED
    summary = "the customer rated the session"
    personal = frozenset({"comment"})
    webhook = True
    rating: int
    comment: str | None = None

    async def webhook_body(self, context: WebhookContext) -> dict[str, Any]:
        return {"rating": self.rating, "comment": self.comment or ""}


@_event
class SessionHandover(EventData):
    type = EventType.SESSION_HANDOVER
    summary = "the lead passed to another agent or expert"
    from_: str | None = Field(alias="from")
    to: str
    role: Role


# People


@_event
class ParticipantInvited(EventData):
    type = EventType.PARTICIPANT_INVITED
    summary = "an expert or a supervisor was given a link"
    personal = frozenset({"name"})
    participant_id: str
    role: Role
    name: str | None = None


@_event
class ParticipantJoined(EventData):
    type = EventType.PARTICIPANT_JOINED
    summary = "someone connected (rejoin: they had been in this room before)"
    personal = frozenset({"name"})
    webhook = True
    participant_id: str
    role: Role
    name: str | None = None
    rejoin: bool


LeftReason = Literal["disconnected", "replaced", "ended", "revoked", "expired"]


@_event
class ParticipantLeft(EventData):
    type = EventType.PARTICIPANT_LEFT
    summary = "someone's connection ended, and why"
    webhook = True
    participant_id: str
    role: Role
    reason: LeftReason


# The customer's way in (the join funnel: visassist/analytics.py)


@_event
class LinkOpened(EventData):
    type = EventType.LINK_OPENED
    summary = "the customer's page was served: the link was opened, in this browser"
    browser: str | None = None  # "Chrome Mobile 120", from the User-Agent
    os: str | None = None  # "Android 14"
    mobile: bool = False


CameraFailure = Literal["refused", "missing", "busy", "insecure", "unsupported", "other"]


@_event
class CameraAllowed(EventData):
    type = EventType.CAMERA_ALLOWED
    summary = "the customer's camera started (they allowed it)"


@_event
class CameraFailed(EventData):
    type = EventType.CAMERA_FAILED
    summary = ("the customer's camera did not start, as their page reported: `refused` (blocked by the "
               "person or the browser), `missing`, `busy` (another app has it), `insecure` (not HTTPS), "
               "`unsupported` (a browser without video calls)")
    reason: CameraFailure
    error: str  # the browser's own name for it, e.g. NotAllowedError


@_event
class InvitationSent(EventData):
    type = EventType.INVITATION_SENT
    summary = "the customer's link was sent by e-mail or SMS (the address masked)"
    channel: Literal["email", "sms"]
    to: str


@_event
class ChatMessage(EventData):
    type = EventType.CHAT_MESSAGE
    summary = "a chat message"
    personal = frozenset({"name", "text"})
    participant_id: str
    role: Role
    name: str | None = None
    text: str | None = None


@_event
class AudioChanged(EventData):
    type = EventType.AUDIO_CHANGED
    summary = "someone turned their microphone on or off"
    participant_id: str
    role: Role
    muted: bool


# Media


@_event
class MediaStarted(EventData):
    type = EventType.MEDIA_STARTED
    summary = "a video source started reaching the server"
    participant_id: str
    source: VideoSource
    kind: Literal["video"] = "video"
    width: int
    height: int


@_event
class MediaStopped(EventData):
    type = EventType.MEDIA_STOPPED
    summary = "a video source stopped"
    source: VideoSource


@_event
class MediaFrozen(EventData):
    type = EventType.MEDIA_FROZEN
    summary = "staff held the picture of a source"
    source: VideoSource


@_event
class MediaUnfrozen(EventData):
    type = EventType.MEDIA_UNFROZEN
    summary = "staff let the held picture go (a source that stops lets it go unrecorded)"
    source: VideoSource


@_event
class QualityChanged(EventData):
    type = EventType.QUALITY_CHANGED
    summary = "staff asked the customer's phone for another quality profile"
    profile: str


@_event
class CameraChanged(EventData):
    type = EventType.CAMERA_CHANGED
    summary = "staff switched the customer's camera, torch or zoom"
    facing: str | None = None
    torch: bool | None = None
    zoom: float | None = None


@_event
class PhotoRequested(EventData):
    type = EventType.PHOTO_REQUESTED
    summary = "staff asked the customer for a full-resolution photo"


# Snapshots and recordings


@_event
class SnapshotCaptured(EventData):
    type = EventType.SNAPSHOT_CAPTURED
    summary = "a snapshot or photo was stored in the ticket's record"
    webhook = True
    snapshot_id: str
    source: SnapshotSource
    width: int
    height: int
    shapes: int
    faces_blurred: int = 0

    async def webhook_body(self, context: WebhookContext) -> dict[str, Any]:
        return {"snapshot": await context.snapshot(self.snapshot_id)}


@_event
class SnapshotAnnotated(EventData):
    type = EventType.SNAPSHOT_ANNOTATED
    summary = "a stored snapshot was drawn on again (the raw image is kept)"
    snapshot_id: str
    shapes: int


@_event
class RecordingStarted(EventData):
    type = EventType.RECORDING_STARTED
    summary = "recording began (the room opened for a recorded session)"


@_event
class RecordingStored(EventData):
    type = EventType.RECORDING_STORED
    summary = "a recording was finished and stored in the ticket's record"
    recording_id: str
    duration_seconds: float
    size_bytes: int


# Reading labels (visassist/vision/)


class FoundField(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    value: str
    confidence: float


@_event
class SnapshotRead(EventData):
    type = EventType.SNAPSHOT_READ
    summary = ("a stored snapshot was read: the fields found in its text and codes (chips for the agent), "
               "or why it could not be (`error`: busy, timeout, failed)")
    personal = frozenset({"fields"})
    snapshot_id: str
    fields: list[FoundField] | None = None
    lines: int = 0  # lines of text read
    codes: int = 0  # barcodes and QR codes read
    duration_ms: int = 0
    error: Literal["busy", "timeout", "failed"] | None = None


@_event
class FieldConfirmed(EventData):
    type = EventType.FIELD_CONFIRMED
    summary = "staff (or the API) confirmed a value read off a snapshot, or corrected it (`corrected`)"
    personal = frozenset({"value"})
    field_id: str
    snapshot_id: str
    name: str
    value: str | None = None
    confidence: float
    corrected: bool = False


@_event
class FieldRejected(EventData):
    type = EventType.FIELD_REJECTED
    summary = "staff dismissed a value read off a snapshot"
    field_id: str
    snapshot_id: str
    name: str


# Retention


@_event
class TicketErased(EventData):
    type = EventType.TICKET_ERASED
    summary = "the ticket's personal data and media were erased"


@_event
class RetentionPurged(EventData):
    type = EventType.RETENTION_PURGED
    summary = "the retention purge removed old media"
    snapshots: int = 0
    recordings: int = 0


assert set(EVENT_DATA) == set(EventType), "every event type has a model"
WEBHOOK_TYPES: tuple[EventType, ...] = tuple(t for t, cls in EVENT_DATA.items() if cls.webhook)


def parse_data(type: EventType, data: dict[str, Any]) -> EventData:
    """A stored event's data as its model (rows written by older versions parse too)."""
    return EVENT_DATA[type].model_validate(data)


@dataclass(frozen=True)
class Event:
    """One entry of a session's timeline, as stored: its place (seq), time, actor and typed data."""

    seq: int
    session_id: str
    at: datetime
    actor: str  # a participant id, "api", "api:<key id>" or "system"
    data: EventData

    @property
    def type(self) -> EventType:
        return self.data.type

    def public(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type.value, "at": iso(self.at), "actor": self.actor,
                "data": self.data.public()}


Subscriber = Callable[[Event], Awaitable[None]]


class Bus:
    """In-process publish/subscribe of recorded events, in order. A subscriber that fails is logged and
    does not stop the others or the publisher: the event is already stored."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        self._subscribers.append((name, subscriber))

    async def publish(self, *events: Event) -> None:
        for event in events:
            for name, subscriber in self._subscribers:
                try:
                    await subscriber(event)
                except Exception:
                    log.exception("%s failed on event %d (%s) of session %s", name, event.seq,
                                  event.type.value, event.session_id)


def markdown() -> str:
    """The event table of docs/events.md, generated from the models above."""
    lines = ["| Event | When | Data | Webhook | Erased with the ticket |",
             "|---|---|---|---|---|"]
    for cls in EVENT_DATA.values():
        fields = ", ".join(f"`{f.alias or name}`" for name, f in cls.model_fields.items()
                           if name != "erased") or "none"
        personal = ", ".join(f"`{name}`" for name in sorted(cls.personal)) or ""
        lines.append(f"| `{cls.type.value}` | {cls.summary} | {fields} | {'yes' if cls.webhook else ''} "
                     f"| {personal} |")
    return "\n".join(lines) + "\n"
