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
    LINK_OPENED = "link.opened"
    CAMERA_ALLOWED = "camera.allowed"
    CAMERA_FAILED = "camera.failed"


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
