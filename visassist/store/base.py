"""The storage interface the rest of the server codes against."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from visassist.models import (
    ApiKey,
    Event,
    EventType,
    Outcome,
    Participant,
    Session,
    Snapshot,
)


class Store(Protocol):
    public_base: str
    on_enqueue: Callable[[], None] | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # API keys
    async def create_api_key(self, key_id: str, name: str, key_digest: str) -> ApiKey: ...

    async def api_key_by_digest(self, key_digest: str) -> ApiKey | None: ...

    async def touch_api_key(self, key_id: str, at: datetime) -> None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    # Sessions and participants
    async def create_session(
        self, session: Session, participants: list[tuple[Participant, str]], actor: str
    ) -> Event: ...

    async def add_participant(self, participant: Participant, token_digest: str, actor: str,
                              limit: int) -> Event | None: ...

    async def get_session(self, session_id: str) -> Session | None: ...

    async def sessions_for_ticket(self, ticket_id: str) -> list[Session]: ...

    async def open_sessions(self) -> list[Session]: ...

    async def participant_by_token(self, token_digest: str) -> Participant | None: ...

    async def participants(self, session_id: str) -> list[Participant]: ...

    async def mark_live(self, session_id: str, at: datetime) -> bool: ...

    async def end_session(
        self, session_id: str, outcome: Outcome, notes: str, actor: str, at: datetime,
        data: dict[str, Any],
    ) -> tuple[Session, Event] | None: ...

    async def expire_session(self, session_id: str, at: datetime) -> Event | None: ...

    # Timeline
    async def append_event(
        self, session_id: str, type: EventType, actor: str, data: dict[str, Any], at: datetime
    ) -> Event: ...

    async def events(self, session_id: str) -> list[Event]: ...

    # Snapshots
    async def add_snapshot(self, snapshot: Snapshot, event_data: dict[str, Any]) -> Event: ...

    async def annotate_snapshot(self, session_id: str, snapshot_id: str,
                                annotations: list[dict[str, Any]], annotated_key: str, actor: str,
                                at: datetime) -> Event | None: ...

    async def snapshots(self, session_id: str) -> list[Snapshot]: ...

    async def snapshot(self, session_id: str, snapshot_id: str) -> Snapshot | None: ...

    # Webhooks (the outbox is filled by the same transactions that record events)
    async def create_webhook(self, endpoint_id: str, url: str, secret: str, events: list[str]) -> None: ...

    async def webhooks(self) -> list[dict[str, Any]]: ...

    async def disable_webhook(self, endpoint_id: str) -> bool: ...

    async def due_deliveries(self, now: datetime, limit: int) -> list[dict[str, Any]]: ...

    async def record_attempt(self, delivery_id: int, at: datetime, status: int | None, error: str | None,
                             duration_ms: int, *, retry_at: datetime | None, give_up: bool) -> None: ...

    async def deliveries(self, endpoint_id: str | None = None, status: str | None = None,
                         limit: int = 100) -> list[dict[str, Any]]: ...

    async def redeliver(self, delivery_id: int) -> bool: ...
