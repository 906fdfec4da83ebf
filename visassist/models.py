"""Domain records: what a session, a participant, a snapshot and an event are."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"  # Tier 2, who opened the session
    EXPERT = "expert"  # Tier 3, invited in; can do all an agent can
    SUPERVISOR = "supervisor"  # watches and listens, silently

    @property
    def staff(self) -> bool:
        return self is not Role.CUSTOMER


STAFF = frozenset({Role.AGENT, Role.EXPERT, Role.SUPERVISOR})


class Status(enum.StrEnum):
    WAITING = "waiting"
    LIVE = "live"
    ENDED = "ended"
    EXPIRED = "expired"
    REVOKED = "revoked"  # links withdrawn by the ticket system


class Outcome(enum.StrEnum):
    RESOLVED = "resolved"
    ESCALATED = "escalated"
    FOLLOW_UP = "follow_up"
    NO_SHOW = "no_show"
    ABANDONED = "abandoned"
    TECHNICAL_FAILURE = "technical_failure"


class EventType(enum.StrEnum):
    SESSION_CREATED = "session.created"
    PARTICIPANT_JOINED = "participant.joined"
    PARTICIPANT_LEFT = "participant.left"
    PARTICIPANT_INVITED = "participant.invited"
    SESSION_HANDOVER = "session.handover"
    MEDIA_STARTED = "media.started"
    MEDIA_STOPPED = "media.stopped"
    MEDIA_FROZEN = "media.frozen"
    MEDIA_UNFROZEN = "media.unfrozen"
    QUALITY_CHANGED = "quality.changed"
    CAMERA_CHANGED = "camera.changed"
    CAMERA_FAILED = "camera.failed"
    PHOTO_REQUESTED = "photo.requested"
    CHAT_MESSAGE = "chat.message"
    AUDIO_CHANGED = "audio.changed"
    SNAPSHOT_CAPTURED = "snapshot.captured"
    SNAPSHOT_ANNOTATED = "snapshot.annotated"
    SESSION_ENDED = "session.ended"
    SESSION_EXPIRED = "session.expired"
    SESSION_RATED = "session.rated"
    SESSION_REVOKED = "session.revoked"
    TICKET_ERASED = "ticket.erased"
    INVITATION_SENT = "invitation.sent"
    RETENTION_PURGED = "retention.purged"
    RECORDING_STARTED = "recording.started"
    RECORDING_STORED = "recording.stored"
    SESSION_MOVED = "session.moved"
    SNAPSHOT_READ = "snapshot.read"
    FIELD_CONFIRMED = "field.confirmed"
    FIELD_REJECTED = "field.rejected"
    LINK_OPENED = "link.opened"
    CAMERA_ALLOWED = "camera.allowed"


class SnapshotSource(enum.StrEnum):
    CAMERA = "camera"
    SCREEN = "screen"
    DEVICE_PHOTO = "device_photo"


class VideoSource(enum.StrEnum):
    """The video streams a session can carry through the server."""

    CAMERA = "camera"  # the customer's camera
    SCREEN = "screen"  # the customer's shared screen
    STAFF_SCREEN = "staff_screen"  # a screen shared by the agent or expert, shown to the customer


@dataclass(frozen=True)
class Session:
    id: str
    ticket_id: str
    tier: int
    customer: dict[str, Any]
    status: Status
    created_at: datetime
    expires_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    notes: str | None = None
    ended_by: str | None = None
    audio: bool = False  # ask for the customer's microphone from the start
    record: bool = False  # record the customer's video and the voices
    node_id: str | None = None  # the node its room lives on (visassist/nodes.py)

    def effective_status(self, now: datetime) -> Status:
        """Expiry is a matter of time, so it is read off the clock (the service's, which tests move),
        not only off the stored row."""
        if self.status in (Status.ENDED, Status.EXPIRED, Status.REVOKED):
            return self.status
        if now >= self.expires_at:
            return Status.EXPIRED
        return self.status

    def open_at(self, now: datetime) -> bool:
        """Waiting or live: its links work and it can still change."""
        return self.effective_status(now) in (Status.WAITING, Status.LIVE)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 3)


@dataclass(frozen=True)
class Participant:
    id: str
    session_id: str
    role: Role
    name: str
    created_at: datetime
    user_id: str | None = None  # for staff links: the signed-in person the link is bound to


@dataclass(frozen=True)
class Snapshot:
    id: str
    session_id: str
    ticket_id: str
    taken_at: datetime
    taken_by: str
    source: SnapshotSource
    width: int
    height: int
    annotations: list[dict[str, Any]]
    raw_key: str
    annotated_key: str
    faces_blurred: int = 0  # faces found and blurred before the images were stored


class FieldStatus(enum.StrEnum):
    SUGGESTED = "suggested"  # read off the picture, shown to the agent as a chip
    CONFIRMED = "confirmed"  # the agent confirmed it (or corrected it): part of the record
    REJECTED = "rejected"  # the agent dismissed it


@dataclass(frozen=True)
class SnapshotField:
    """A value read off a snapshot (a serial number, a barcode's content...) and what the agent made
    of it."""

    id: str
    session_id: str
    snapshot_id: str
    name: str  # serial_number, model, mac_address, imei, ean, upc, qr, data_matrix, code, ...
    value: str  # the confirmed value once confirmed (the agent may have corrected what was read)
    read_value: str  # what was read
    confidence: float  # of the reading, 0..1
    source: str  # "text" or the code's format ("EAN-13", "QR Code")
    box: list[float]  # x0, y0, x1, y1 on the snapshot, normalized
    status: FieldStatus
    created_at: datetime
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None


@dataclass(frozen=True)
class Recording:
    """One recorded stretch of a session (a session whose room closed and reopened has several)."""

    id: str
    session_id: str
    ticket_id: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    size_bytes: int
    width: int
    height: int
    key: str  # where the WebM file is in the blob store


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def stamp(moment: datetime) -> str:
    """Microsecond, fixed-width UTC text: how the store keeps times, and how delivery listings show them."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str
    role: str
    password_hash: str
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: who, and the CSRF token its forms carry."""

    user: User
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Delivery:
    """One event's delivery to one endpoint, as listed (with every attempt)."""

    id: int
    endpoint_id: str
    event_seq: int
    session_id: str
    type: str
    status: str  # pending, delivered, failed or cancelled
    attempts: list[Attempt]
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime

    @property
    def event_id(self) -> str:
        return f"evt_{self.event_seq}"


class NodeState(enum.StrEnum):
    ACTIVE = "active"  # takes new sessions
    DRAINING = "draining"  # finishes its live sessions, takes no new ones
    STOPPED = "stopped"  # shut down cleanly
    DEAD = "dead"  # stopped beating: its open sessions were placed elsewhere


@dataclass(frozen=True)
class Node:
    """One visassist process serving rooms, as the shared database knows it."""

    id: str
    url: str
    capacity: int
    load: int  # rooms live on it at its last heartbeat
    state: NodeState
    started_at: datetime
    heartbeat_at: datetime
    sessions: int = 0  # open sessions placed on it


@dataclass(frozen=True)
class WebhookBacklog:
    """Deliveries waiting to be sent (or retried), the oldest one's creation, and those given up on."""

    pending: int
    oldest_pending_at: datetime | None
    failed: int


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery whose time has come, with what sending it needs."""

    id: int
    endpoint_id: str
    event_seq: int
    session_id: str
    type: str
    payload: str
    attempts: int
    created_at: datetime
    url: str
    secret: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Rating:
    rating: int
    comment: str
    at: datetime
