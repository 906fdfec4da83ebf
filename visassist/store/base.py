"""The storage interfaces the rest of the server codes against: one small Protocol per aggregate, typed
records in and out, domain errors. `Store` is all of them (what a backend implements)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from visassist.events import Event, EventData, SnapshotRead
from visassist.models import (
    ApiKey,
    AuditEntry,
    Delivery,
    DueDelivery,
    FieldStatus,
    Node,
    NodeState,
    Outcome,
    Participant,
    Rating,
    Recording,
    Session,
    Snapshot,
    SnapshotField,
    User,
    WebhookBacklog,
    WebhookEndpoint,
    WebSession,
)


class StoreError(Exception):
    """A backend's failure in domain terms, so callers never import a database driver."""


class DuplicateKey(StoreError):
    """A row with the same unique key exists already (often: a concurrent twin won the race)."""


class IdempotencyConflict(DuplicateKey):
    """Another create with this (API key, Idempotency-Key) was stored first."""


class ConstraintViolation(StoreError):
    """A write broke another integrity rule (a reference to a missing row, a missing value)."""


class SessionReads(Protocol):
    """What readers outside the session service (webhook payloads, adapters) look up."""

    async def get_session(self, session_id: str) -> Session | None: ...

    async def snapshots(self, session_id: str) -> list[Snapshot]: ...

    async def snapshot(self, session_id: str, snapshot_id: str) -> Snapshot | None: ...

    async def recordings(self, session_id: str) -> list[Recording]: ...


class FieldReads(Protocol):
    async def fields(self, session_id: str, status: FieldStatus | None = None) -> list[SnapshotField]:
        """The values read off the session's snapshots, oldest first; only those with `status` if given."""
        ...


class FieldStore(FieldReads, Protocol):
    """Values read off snapshots (visassist/vision/) and the agent's decision on each."""

    async def add_reading(self, session_id: str, snapshot_id: str, fields: list[SnapshotField],
                          read: SnapshotRead, at: datetime) -> Event | None: ...

    async def field(self, session_id: str, field_id: str) -> SnapshotField | None: ...

    async def decide_field(self, session_id: str, field_id: str, value: str | None, actor: str,
                           at: datetime) -> tuple[SnapshotField, Event] | None: ...


class SessionStore(SessionReads, Protocol):
    """Sessions with their participants, timeline, snapshots, recordings, rating and idempotency keys.
    Every state change records its event in the same transaction and returns it; a change that lost a
    race (already ended, expired, rated) returns None."""

    async def create_session(
        self, session: Session, participants: list[tuple[Participant, str]], actor: str,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Event:
        """Raises IdempotencyConflict when (api key id, key) was stored first by another create."""
        ...

    async def idempotent_session(self, api_key_id: str, key: str,
                                 since: datetime) -> tuple[str, str] | None: ...

    async def prune_idempotency_keys(self, before: datetime) -> int:
        """Forget idempotency keys stored before `before` (past the replay window); returns how many."""
        ...

    async def add_participant(self, participant: Participant, token_digest: str, actor: str,
                              limit: int) -> Event | None: ...

    async def sessions_for_ticket(self, ticket_id: str) -> list[Session]: ...

    async def open_sessions(self) -> list[Session]: ...

    async def list_sessions(self, *, ticket_id: str | None, status: str | None,
                            created_after: datetime | None, created_before: datetime | None,
                            before: tuple[str, str] | None, limit: int, now: datetime) -> list[Session]: ...

    async def participant_by_token(self, token_digest: str) -> Participant | None: ...

    async def participants(self, session_id: str) -> list[Participant]: ...

    async def mark_live(self, session_id: str, at: datetime) -> bool: ...

    async def end_session(
        self, session_id: str, outcome: Outcome, notes: str, actor: str, at: datetime,
        connected: list[str],
    ) -> tuple[Session, Event] | None: ...

    async def expire_session(self, session_id: str, at: datetime) -> Event | None: ...

    async def revoke_session(self, session_id: str, actor: str, at: datetime) -> Event | None: ...

    # Timeline
    async def append_event(self, session_id: str, data: EventData, actor: str, at: datetime) -> Event: ...

    async def events(self, session_id: str) -> list[Event]: ...

    async def last_event_seq(self, session_id: str) -> int: ...

    # Snapshots and recordings
    async def add_snapshot(self, snapshot: Snapshot) -> Event: ...

    async def annotate_snapshot(self, session_id: str, snapshot_id: str,
                                annotations: list[dict[str, Any]], annotated_key: str, actor: str,
                                at: datetime) -> Event | None: ...

    async def add_recording(self, recording: Recording) -> Event: ...

    async def recording(self, session_id: str, recording_id: str) -> Recording | None: ...

    # Customer satisfaction
    async def rate(self, session_id: str, rating: int, comment: str, actor: str,
                   at: datetime) -> Event | None: ...

    async def rating(self, session_id: str) -> Rating | None: ...

    # Erasure and retention
    async def erase_ticket(self, ticket_id: str, actor: str, at: datetime,
                           mark: str | None = None) -> tuple[dict[str, int], list[str], list[Event]]:
        """`mark`: a keyed digest of the ticket id, under which erasures() finds what went."""
        ...

    async def purge(self, media_before: datetime | None, chat_before: datetime | None,
                    at: datetime) -> tuple[dict[str, int], list[tuple[str, str]], list[Event]]: ...


@dataclass(frozen=True)
class SessionFacts:
    """A session as analytics reads it: the session, its funnel and media events, rating and agent."""

    session: Session
    events: list[Event]
    rating: Rating | None
    agent: str | None  # the name of the person the agent link is bound to


@dataclass(frozen=True)
class Erasure:
    """What erasing a ticket removed; found again by the keyed digest of the ticket id."""

    ticket_digest: str
    at: datetime
    actor: str
    counts: dict[str, int]


class StaffViews(Protocol):
    """Reads across sessions for the staff pages, and the marks erasures leave (erase_ticket)."""

    async def sessions_ended_between(self, since: datetime, until: datetime) -> list[Session]: ...

    async def session_facts(self, created_from: datetime, created_to: datetime) -> list[SessionFacts]: ...

    async def erasures(self, ticket_digest: str) -> list[Erasure]: ...


class OutboxStore(Protocol):
    """Webhook endpoints and the outbox: the subscriber hands each webhook event over once, the
    dispatcher sends what is due, oldest first per session and endpoint."""

    on_enqueue: Callable[[], None] | None

    async def enqueue_deliveries(self, event: Event, type: str, payload: str) -> int: ...

    async def outbox_pending(self, limit: int) -> list[Event]: ...

    async def create_webhook(self, endpoint_id: str, url: str, secret: str, events: list[str]) -> None: ...

    async def ensure_internal_webhook(self, endpoint_id: str, url: str, events: list[str],
                                      enabled: bool) -> None: ...

    async def webhooks(self) -> list[WebhookEndpoint]: ...

    async def disable_webhook(self, endpoint_id: str) -> bool: ...

    async def due_deliveries(self, now: datetime, limit: int) -> list[DueDelivery]: ...

    async def claim_deliveries(self, now: datetime, limit: int, until: datetime) -> list[DueDelivery]:
        """The due deliveries, held until `until` for the caller alone (across nodes)."""
        ...

    async def record_attempt(self, delivery_id: int, at: datetime, status: int | None, error: str | None,
                             duration_ms: int, *, retry_at: datetime | None, give_up: bool) -> None: ...

    async def deliveries(self, endpoint_id: str | None = None, status: str | None = None,
                         limit: int = 100) -> list[Delivery]: ...

    async def redeliver(self, delivery_id: int) -> bool: ...

    async def webhook_backlog(self) -> WebhookBacklog:
        """How far the outbox is behind (for /metrics)."""
        ...


class AccountStore(Protocol):
    """People who sign in, their browser sessions, failed sign-ins, and staff links bound to them."""

    async def create_user(self, user_id: str, email: str, name: str, role: str, password_hash: str,
                          actor: str) -> None: ...

    async def user_by_email(self, email: str) -> User | None: ...

    async def users(self) -> list[User]: ...

    async def has_users(self) -> bool: ...

    async def set_user_disabled(self, user_id: str, disabled: bool, actor: str) -> bool: ...

    async def rehash_password(self, user_id: str, password_hash: str) -> None: ...

    async def create_web_session(self, token_digest: str, user_id: str, csrf: str,
                                 expires_at: datetime) -> None: ...

    async def web_session(self, token_digest: str, now: datetime) -> WebSession | None: ...

    async def end_web_session(self, token_digest: str) -> None: ...

    async def login_failure(self, keys: list[str], at: datetime) -> None: ...

    async def login_failures(self, key: str, since: datetime) -> int: ...

    async def prune_login_failures(self, before: datetime) -> int:
        """Forget failed sign-ins from before `before` (past the rate-limit window); returns how many."""
        ...

    async def bind_participant(self, participant_id: str, user_id: str) -> str: ...


class NodeStore(Protocol):
    """The nodes sharing the database and where sessions are placed (visassist/nodes.py)."""

    async def register_node(self, node_id: str, url: str, capacity: int, at: datetime) -> None: ...

    async def heartbeat(self, node_id: str, load: int, at: datetime) -> NodeState | None: ...

    async def set_node_state(self, node_id: str, state: NodeState) -> bool: ...

    async def nodes(self, now: datetime) -> list[Node]: ...

    async def place(self, now: datetime, alive_since: datetime) -> Node | None: ...

    async def fail_over(self, silent_since: datetime, now: datetime) -> list[Event]: ...

    async def place_session(self, session_id: str, node_id: str) -> bool: ...

    async def event(self, seq: int) -> Event | None: ...


class ApiKeyStore(Protocol):
    async def create_api_key(self, key_id: str, name: str, key_digest: str) -> ApiKey: ...

    async def api_key_by_digest(self, key_digest: str) -> ApiKey | None: ...

    async def touch_api_key(self, key_id: str, at: datetime) -> None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, actor: str) -> bool: ...


class AuditLog(Protocol):
    async def audit(self, actor: str, action: str, target: str, data: dict[str, Any]) -> None: ...

    async def audit_log(self, limit: int = 200) -> list[AuditEntry]: ...


class MediaReads(SessionReads, FieldReads, Protocol):
    """A session's snapshots, recordings and confirmed fields, as webhook bodies show them."""


class OutboxSource(OutboxStore, MediaReads, Protocol):
    """The webhook subscriber: the outbox, and the session it describes in each payload."""


class Store(SessionStore, FieldStore, OutboxStore, AccountStore, ApiKeyStore, AuditLog, NodeStore, StaffViews,
            Protocol):
    """A whole backend."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def prune(self, idempotency_before: datetime, login_failures_before: datetime) -> dict[str, int]:
        """Drop bookkeeping rows that no longer count; {"idempotency_keys": n, "login_failures": n}."""
        ...
