"""The typed event stream: models that drive the docs, erasure and webhooks; a bus whose subscribers
cannot hurt each other; an outbox that catches up on events recorded just before a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

from aiohttp.test_utils import TestClient

from visassist import events
from visassist.context import AppContext
from visassist.events import (
    EVENT_DATA,
    Bus,
    ChatMessage,
    Event,
    ParticipantJoined,
    SessionHandover,
    parse_data,
)
from visassist.models import EventType, Role, utcnow
from visassist.schemas import WebhookType

DOC = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()


def test_the_events_document_is_generated_from_the_models() -> None:
    start, end = DOC.index("<!-- events:start -->\n"), DOC.index("<!-- events:end -->")
    assert DOC[start + len("<!-- events:start -->\n"):end] == events.markdown(), (
        "docs/events.md is out of date: paste events.markdown() between the markers")
    for type in EventType:
        assert f"| `{type.value}` |" in DOC


def test_every_event_round_trips_through_its_stored_form() -> None:
    joined = ParticipantJoined(participant_id="par_1", role=Role.AGENT, name="Ana", rejoin=False)
    assert joined.public() == {"participant_id": "par_1", "role": "agent", "name": "Ana", "rejoin": False}
    assert parse_data(EventType.PARTICIPANT_JOINED, json.loads(json.dumps(joined.public()))) == joined
    handover = SessionHandover(from_=None, to="par_2", role=Role.EXPERT)
    assert handover.public() == {"from": None, "to": "par_2", "role": "expert"}, "a null lead is kept"
    assert parse_data(EventType.SESSION_HANDOVER, handover.public()) == handover
    assert set(EVENT_DATA) == set(EventType)


def test_erasure_drops_exactly_the_personal_fields() -> None:
    chat = ChatMessage(participant_id="par_1", role=Role.CUSTOMER, name="Ana", text="my address is ...")
    assert chat.erase().public() == {"participant_id": "par_1", "role": "customer", "erased": True}
    joined = ParticipantJoined(participant_id="par_1", role=Role.CUSTOMER, name="Ana", rejoin=True)
    assert joined.erase().public() == {"participant_id": "par_1", "role": "customer", "rejoin": True,
                                       "erased": True}
    # Rows written before erasure existed in this form still read.
    assert parse_data(EventType.CHAT_MESSAGE, {"participant_id": "p", "role": "agent", "erased": True}).erased


async def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus = Bus()
    heard: list[int] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    async def listener(event: Event) -> None:
        heard.append(event.seq)

    bus.subscribe("broken", broken)
    bus.subscribe("listener", listener)
    first = Event(seq=1, session_id="ses_1", at=utcnow(), actor="system", data=events.SessionExpired())
    second = Event(seq=2, session_id="ses_1", at=utcnow(), actor="system", data=events.TicketErased())
    await bus.publish(first, second)
    assert heard == [1, 2]


async def test_webhook_events_recorded_before_a_crash_are_delivered_at_the_next_start(
        client: TestClient, auth: dict[str, str], create_session: Any) -> None:
    """The outbox marks an event until its deliveries are enqueued; one recorded with no subscriber
    listening (the process died in between) is enqueued by catch_up, once."""
    ctx = client.app[AppContext.KEY]
    response = await client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth)
    assert response.status == 201
    endpoint = (await response.json())["id"]
    session = await create_session()
    # Recorded straight in the store, as if the process stopped before publishing.
    event = await ctx.store.append_event(
        session["id"], ParticipantJoined(participant_id="par_x", role=Role.AGENT, name="Sam", rejoin=False),
        "par_x", utcnow())
    assert [e.seq for e in await ctx.store.outbox_pending(10)] == [event.seq]
    assert await ctx.outbox.catch_up() == 1
    assert await ctx.outbox.catch_up() == 0, "handed over once"
    deliveries = await ctx.store.deliveries(endpoint)
    joined = [d for d in deliveries if d.event_id == f"evt_{event.seq}"]
    assert len(joined) == 1 and joined[0].type == "participant.joined"
    created = [d for d in deliveries if d.type == "session.created"]
    assert len(created) == 1, "published events were enqueued as they happened, not again"


def test_receivers_can_subscribe_to_exactly_the_webhook_events() -> None:
    assert set(get_args(WebhookType)) == {t.value for t in events.WEBHOOK_TYPES}
