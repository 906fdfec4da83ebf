"""API bodies as pydantic models: requests are validated with them, responses are built from them.

One representation per resource: the REST API, the signalling socket and the webhooks all send a
snapshot, a recording, a session or a chat message as the `*Out` model below, each with URLs fit for
its receiver (a path on the API, an absolute URL in a webhook, the agent link's own path on the
socket). The OpenAPI document is generated from these models, and the tests validate real responses
against them, so the document stays true.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from visassist.annotations import Arrow, Ellipse, Freehand, Rect, Text
from visassist.errors import ApiErrorCode
from visassist.events import ChatMessage, Event
from visassist.models import Outcome, Recording, Session, Snapshot, SnapshotField, iso


def api_folder(session_id: str, kind: Literal["snapshots", "recordings"], base: str = "") -> str:
    """Where the API serves a session's snapshots or recordings; `base` makes it absolute."""
    return f"{base}/api/v1/sessions/{session_id}/{kind}"


def _iso(moment: Any) -> str:
    text = iso(moment)
    assert text is not None
    return text

TICKET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


class _Body(BaseModel):
    # Strict: "2" is not a tier and an unknown field is a typo worth reporting, not ignoring.
    model_config = ConfigDict(extra="forbid", strict=True)


class CustomerIn(_Body):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class CreateSessionIn(_Body):
    ticket_id: Annotated[str, Field(pattern=TICKET_ID_PATTERN)]
    tier: Literal[2, 3]
    customer: CustomerIn = CustomerIn()
    ttl_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    # Turn the customer's microphone on from the start (otherwise they can turn it on themselves).
    audio: bool = False
    # Record the customer's video and the voices (WebM); unset means the deployment's default.
    record: bool | None = None


class InviteIn(_Body):
    role: Literal["expert", "supervisor"]
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class EndSessionIn(_Body):
    outcome: Outcome
    notes: Annotated[str, Field(max_length=4000)] = ""


WebhookType = Literal["session.created", "participant.joined", "participant.left", "snapshot.captured",
                      "session.ended", "session.rated"]


class WebhookIn(_Body):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2000)]
    events: Annotated[list[WebhookType], Field(min_length=1, max_length=6)] = [
        "session.created", "participant.joined", "participant.left", "snapshot.captured",
        "session.ended", "session.rated"]


class RatingIn(_Body):
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=1000)] = ""


class ListQuery(BaseModel):
    """Query string of GET /api/v1/sessions (strings in, so not strict)."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: Annotated[str, Field(pattern=TICKET_ID_PATTERN)] | None = None
    status: Literal["waiting", "live", "ended", "expired", "revoked"] | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(max_length=200)] | None = None


class SendInvitationIn(_Body):
    """Exactly one of them: where to send the customer's link."""

    email: Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")] | None = None
    phone: Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$")] | None = None  # E.164


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Out):
    code: ApiErrorCode  # the document lists every code, so clients can switch on them
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorOut(_Out):
    error: ErrorBody


class ParticipantOut(_Out):
    id: str
    role: Literal["customer", "agent", "expert", "supervisor"]
    name: str
    connected: bool


class EventOut(_Out):
    seq: int
    type: str
    at: str
    actor: str
    data: dict[str, Any]


class ChatMessageOut(_Out):
    id: int
    from_: str = Field(alias="from")
    role: str
    name: str
    text: str
    at: str

    @classmethod
    def of(cls, event: Event) -> ChatMessageOut:
        data = event.data
        assert isinstance(data, ChatMessage)
        return cls.model_validate({"id": event.seq, "from": data.participant_id, "role": data.role.value,
                                   "name": data.name or "", "text": data.text or "", "at": _iso(event.at)})


class FieldOut(_Out):
    """A value read off a snapshot. `suggested` ones are the console's chips; `confirmed` ones are the
    record's structured fields (`value` is the agent's correction when they corrected it)."""

    id: str
    snapshot_id: str
    name: str  # serial_number, model, mac_address, imei, ean, upc, qr, data_matrix, code, or a configured one
    value: str
    read_value: str  # what was read, before any correction
    confidence: float
    source: str  # "text", or the code's format ("EAN-13", "QR Code", ...)
    box: list[float]  # x0, y0, x1, y1 on the snapshot, 0..1
    status: Literal["suggested", "confirmed", "rejected"]
    confirmed_by: str | None
    confirmed_at: str | None

    @classmethod
    def of(cls, field: SnapshotField) -> FieldOut:
        return cls(id=field.id, snapshot_id=field.snapshot_id, name=field.name, value=field.value,
                   read_value=field.read_value, confidence=field.confidence, source=field.source,
                   box=field.box, status=field.status.value, confirmed_by=field.confirmed_by,
                   confirmed_at=iso(field.confirmed_at))


class FieldListOut(_Out):
    fields: list[FieldOut]


class ConfirmFieldIn(_Body):
    """Confirm the value read, or give the right one."""

    value: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class SnapshotOut(_Out):
    id: str
    session_id: str
    ticket_id: str
    taken_at: str
    taken_by: str
    source: Literal["camera", "screen", "device_photo"]
    width: int
    height: int
    annotations: list[Arrow | Rect | Ellipse | Freehand | Text]
    raw_url: str
    annotated_url: str  # changes when the snapshot is drawn on again, so caches never show the old one
    faces_blurred: int = 0  # faces blurred before the images were stored
    fields: list[FieldOut] | None = None  # its confirmed fields, where the record shows them

    @classmethod
    def of(cls, snapshot: Snapshot, folder: str, fields: list[FieldOut] | None = None) -> SnapshotOut:
        """`folder`: the receiver's URL of the session's snapshots (see api_folder)."""
        path = f"{folder}/{snapshot.id}"
        version = snapshot.annotated_key.rsplit("/", 1)[1].removeprefix("annotated").removesuffix(".png")
        return cls.model_validate({
            "id": snapshot.id, "session_id": snapshot.session_id, "ticket_id": snapshot.ticket_id,
            "taken_at": _iso(snapshot.taken_at), "taken_by": snapshot.taken_by,
            "source": snapshot.source.value, "width": snapshot.width, "height": snapshot.height,
            "annotations": snapshot.annotations, "raw_url": f"{path}/raw.png",
            "annotated_url": f"{path}/annotated.png" + (f"?v={version.lstrip('-')}" if version else ""),
            "faces_blurred": snapshot.faces_blurred,
            "fields": None if fields is None else [f for f in fields if f.snapshot_id == snapshot.id],
        }, strict=False)  # the shapes were checked when drawn; stored JSON has lists for tuples


class RecordingOut(_Out):
    id: str
    started_at: str
    duration_seconds: float
    size_bytes: int
    width: int
    height: int
    content_type: Literal["video/webm"]
    url: str  # downloadable with HTTP Range, so a player can seek

    @classmethod
    def of(cls, recording: Recording, folder: str) -> RecordingOut:
        return cls(id=recording.id, started_at=_iso(recording.started_at),
                   duration_seconds=recording.duration_seconds, size_bytes=recording.size_bytes,
                   width=recording.width, height=recording.height, content_type="video/webm",
                   url=f"{folder}/{recording.id}")


class RecordingListOut(_Out):
    recordings: list[RecordingOut]


class OutcomeOut(_Out):
    outcome: Outcome
    notes: str | None
    ended_by: str | None


class RatingOut(_Out):
    rating: int
    comment: str
    at: str


class SessionSummaryOut(_Out):
    id: str
    ticket_id: str
    tier: int
    customer: dict[str, Any]
    status: Literal["waiting", "live", "ended", "expired", "revoked"]
    created_at: str
    expires_at: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    audio: bool
    record: bool
    outcome: OutcomeOut | None

    @classmethod
    def of(cls, session: Session, now: datetime) -> SessionSummaryOut:
        return cls.model_validate({
            "id": session.id, "ticket_id": session.ticket_id, "tier": session.tier,
            "customer": session.customer, "status": session.effective_status(now).value,
            "created_at": iso(session.created_at), "expires_at": iso(session.expires_at),
            "started_at": iso(session.started_at), "ended_at": iso(session.ended_at),
            "duration_seconds": session.duration_seconds, "audio": session.audio,
            "record": session.record,
            "outcome": None if session.outcome is None else {
                "outcome": session.outcome.value, "notes": session.notes, "ended_by": session.ended_by},
        })


class SessionOut(SessionSummaryOut):
    participants: list[ParticipantOut]
    events: list[EventOut]
    snapshots: list[SnapshotOut] | None = None
    recordings: list[RecordingOut]
    fields: list[FieldOut]  # confirmed values read off the snapshots
    customer_url: str | None = None
    agent_url: str | None = None
    record_url: str | None = None  # the ticket's record page, for signed-in staff
    rating: RatingOut | None = None


class InvitedOut(_Out):
    participant: ParticipantOut
    url: str


class SnapshotListOut(_Out):
    snapshots: list[SnapshotOut]


class TicketOut(_Out):
    ticket_id: str
    record_url: str  # the same record as a page for signed-in staff (timeline, gallery, ZIP)
    sessions: list[SessionOut]




class WebhookOut(_Out):
    id: str
    url: str
    events: list[str]
    created_at: str
    disabled_at: str | None


class WebhookCreatedOut(WebhookOut):
    secret: str  # shown once: sign-checking key for the receiver


class WebhookListOut(_Out):
    webhooks: list[WebhookOut]


class AttemptOut(_Out):
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(_Out):
    id: int
    endpoint_id: str
    event_id: str
    session_id: str
    type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: list[AttemptOut]
    last_error: str | None
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None


class DeliveryListOut(_Out):
    deliveries: list[DeliveryOut]



class SessionListOut(_Out):
    sessions: list[SessionSummaryOut]
    next_cursor: str | None
