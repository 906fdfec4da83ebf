"""What every storage backend must do, whatever it is built on.

Each test runs against every backend in BACKENDS through the `store` fixture: adding one (PostgreSQL)
is one more entry there. Times are passed in explicitly (no sleeping) and nothing reaches under the
interface (no SQL), so a test failing on a new backend is a difference in behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from visassist.events import (
    ChatMessage,
    FieldConfirmed,
    FieldRejected,
    ParticipantInvited,
    RecordingStored,
    RetentionPurged,
    SessionCreated,
    SessionEnded,
    SessionExpired,
    SessionMoved,
    SessionRated,
    SessionRevoked,
    SnapshotAnnotated,
    SnapshotCaptured,
    SnapshotRead,
    TicketErased,
)
from visassist.models import (
    FieldStatus,
    NodeState,
    Outcome,
    Participant,
    Rating,
    Recording,
    Role,
    Session,
    Snapshot,
    SnapshotField,
    SnapshotSource,
    Status,
    utcnow,
)
from visassist.store import DuplicateKey, IdempotencyConflict, SqlStore, Store


async def _sqlite(tmp_path: Path) -> Store:
    return SqlStore(f"sqlite:///{tmp_path / 'contract.sqlite3'}")


async def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return SqlStore(request.getfixturevalue("postgres_url"))


# One entry per backend: a factory for an unopened, empty store.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Awaitable[Store]]] = {
    "sqlite": lambda request, tmp_path: _sqlite(tmp_path), "postgresql": _postgresql}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = await BACKENDS[request.param](request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_ids = iter(range(1, 1_000_000))


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


async def _create(store: Store, ticket: str = "ZD-1", at: datetime = T0, ttl: timedelta = timedelta(hours=1),
                  idempotency: tuple[str, str, str] | None = None) -> tuple[Session, list[Participant]]:
    session = Session(id=_id("ses"), ticket_id=ticket, tier=2, customer={"name": "Ana"},
                      status=Status.WAITING, created_at=at, expires_at=at + ttl)
    people = [Participant(id=_id("par"), session_id=session.id, role=role, name=name, created_at=at)
              for role, name in ((Role.CUSTOMER, "Ana"), (Role.AGENT, "Sam"))]
    await store.create_session(session, [(p, f"digest-{p.id}") for p in people], "api:key_1", idempotency)
    return session, people


def _snapshot(session: Session, at: datetime) -> Snapshot:
    snapshot_id = _id("snp")
    folder = f"sessions/{session.id}/snapshots/{snapshot_id}"
    return Snapshot(id=snapshot_id, session_id=session.id, ticket_id=session.ticket_id, taken_at=at,
                    taken_by="par_x", source=SnapshotSource.CAMERA, width=640, height=480,
                    annotations=[], raw_key=f"{folder}/raw.jpg", annotated_key=f"{folder}/raw.jpg")


def _recording(session: Session, at: datetime) -> Recording:
    recording_id = _id("rec")
    return Recording(id=recording_id, session_id=session.id, ticket_id=session.ticket_id, started_at=at,
                     ended_at=at + timedelta(minutes=2), duration_seconds=120.0, size_bytes=1000, width=640,
                     height=480, key=f"sessions/{session.id}/recordings/{recording_id}/session.webm")


def _field(snapshot: Snapshot, name: str, value: str, at: datetime) -> SnapshotField:
    return SnapshotField(id=_id("fld"), session_id=snapshot.session_id, snapshot_id=snapshot.id, name=name,
                         value=value, read_value=value, confidence=0.93, source="text",
                         box=[0.1, 0.2, 0.4, 0.3], status=FieldStatus.SUGGESTED, created_at=at)


def _chat(participant: Participant, text: str) -> ChatMessage:
    return ChatMessage(participant_id=participant.id, role=participant.role, name=participant.name, text=text)


# Sessions and participants

async def test_a_created_session_reads_back_whole(store: Store) -> None:
    session, people = await _create(store)
    assert await store.get_session(session.id) == session
    assert await store.get_session("ses_missing") is None
    assert await store.participants(session.id) == people
    assert await store.participant_by_token(f"digest-{people[1].id}") == people[1]
    assert await store.participant_by_token("digest-unknown") is None
    assert await store.sessions_for_ticket("ZD-1") == [session]
    assert await store.open_sessions() == [session]


async def test_sessions_list_newest_first_by_page_and_filter(store: Store) -> None:
    sessions = [(await _create(store, "ZD-L", T0 + timedelta(minutes=i)))[0] for i in range(3)]
    other, _ = await _create(store, "ZD-OTHER", T0 + timedelta(minutes=5), ttl=timedelta(minutes=1))
    now = T0 + timedelta(minutes=10)
    page = await store.list_sessions(ticket_id="ZD-L", status=None, created_after=None, created_before=None,
                                     before=None, limit=2, now=now)
    assert [s.id for s in page] == [sessions[2].id, sessions[1].id]
    last = page[-1]
    rest = await store.list_sessions(ticket_id="ZD-L", status=None, created_after=None, created_before=None,
                                     before=(last.created_at.isoformat(timespec="microseconds"), last.id),
                                     limit=2, now=now)
    assert [s.id for s in rest] == [sessions[0].id]
    expired = await store.list_sessions(ticket_id=None, status="expired", created_after=None,
                                        created_before=None, before=None, limit=10, now=now)
    assert [s.id for s in expired] == [other.id], "expiry is read off the clock given"
    waiting = await store.list_sessions(ticket_id=None, status="waiting",
                                        created_after=T0 + timedelta(minutes=1),
                                        created_before=T0 + timedelta(minutes=2), before=None, limit=10,
                                        now=now)
    assert [s.id for s in waiting] == [sessions[1].id]


async def test_invitations_stop_at_the_limit(store: Store) -> None:
    session, _ = await _create(store)
    expert = Participant(id=_id("par"), session_id=session.id, role=Role.EXPERT, name="Kim", created_at=T0)
    event = await store.add_participant(expert, "digest-expert", "par_x", limit=3)
    assert event is not None and isinstance(event.data, ParticipantInvited)
    assert event.data.participant_id == expert.id
    fourth = Participant(id=_id("par"), session_id=session.id, role=Role.EXPERT, name="Lee", created_at=T0)
    assert await store.add_participant(fourth, "digest-fourth", "par_x", limit=3) is None
    assert [p.id for p in await store.participants(session.id)][-1] == expert.id


async def test_events_come_back_in_order_and_typed(store: Store) -> None:
    session, people = await _create(store)
    first = await store.append_event(session.id, _chat(people[0], "hello"), people[0].id,
                                     T0 + timedelta(seconds=1))
    second = await store.append_event(session.id, _chat(people[1], "hi"), people[1].id,
                                      T0 + timedelta(seconds=2))
    events = await store.events(session.id)
    assert [type(e.data) for e in events] == [SessionCreated, ChatMessage, ChatMessage]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[1:] == [first, second]
    assert isinstance(events[2].data, ChatMessage) and events[2].data.text == "hi"
    assert await store.last_event_seq(session.id) == second.seq
    assert await store.last_event_seq("ses_missing") == 0


async def test_going_live_happens_once(store: Store) -> None:
    session, _ = await _create(store)
    assert await store.mark_live(session.id, T0 + timedelta(seconds=5))
    assert not await store.mark_live(session.id, T0 + timedelta(seconds=6))
    live = await store.get_session(session.id)
    assert live is not None and live.status is Status.LIVE and live.started_at == T0 + timedelta(seconds=5)


async def test_ending_wins_once_and_later_endings_get_none(store: Store) -> None:
    session, people = await _create(store)
    at = T0 + timedelta(minutes=10)
    ended = await store.end_session(session.id, Outcome.RESOLVED, "fixed", "par_a", at, [people[0].id])
    assert ended is not None
    stored, event = ended
    assert stored.status is Status.ENDED and stored.outcome is Outcome.RESOLVED and stored.ended_at == at
    assert stored.duration_seconds == 0.0, "never live: zero, not none"
    assert isinstance(event.data, SessionEnded) and event.data.connected == [people[0].id]
    assert await store.end_session(session.id, Outcome.ESCALATED, "", "par_b", at, []) is None
    assert await store.revoke_session(session.id, "api:key_1", at) is None
    assert await store.expire_session(session.id, at + timedelta(hours=2)) is None
    assert await store.open_sessions() == []


async def test_expiry_and_revocation_win_once(store: Store) -> None:
    expiring, _ = await _create(store, ttl=timedelta(minutes=5))
    assert await store.expire_session(expiring.id, T0 + timedelta(minutes=4)) is None, "not due yet"
    event = await store.expire_session(expiring.id, T0 + timedelta(minutes=5))
    assert event is not None and isinstance(event.data, SessionExpired)
    assert await store.expire_session(expiring.id, T0 + timedelta(minutes=6)) is None
    revoked, _ = await _create(store)
    event = await store.revoke_session(revoked.id, "api:key_1", T0 + timedelta(minutes=1))
    assert event is not None and isinstance(event.data, SessionRevoked)
    assert await store.revoke_session(revoked.id, "api:key_1", T0 + timedelta(minutes=2)) is None
    assert await store.end_session(revoked.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(minutes=3),
                                   []) is None
    gone = await store.get_session(revoked.id)
    assert gone is not None and gone.status is Status.REVOKED


async def test_an_expired_session_cannot_be_ended(store: Store) -> None:
    session, _ = await _create(store, ttl=timedelta(minutes=5))
    assert await store.end_session(session.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(minutes=5),
                                   []) is None


# Snapshots, recordings, ratings

async def test_snapshots_and_annotations(store: Store) -> None:
    session, _ = await _create(store)
    snapshot = _snapshot(session, T0 + timedelta(minutes=1))
    event = await store.add_snapshot(snapshot)
    assert isinstance(event.data, SnapshotCaptured) and event.data.snapshot_id == snapshot.id
    assert await store.snapshots(session.id) == [snapshot]
    assert await store.snapshot(session.id, snapshot.id) == snapshot
    assert await store.snapshot("ses_other", snapshot.id) is None
    shapes = [{"kind": "arrow", "points": [[0.1, 0.2], [0.3, 0.4]]}]
    annotated = await store.annotate_snapshot(session.id, snapshot.id, shapes, "annotated.png", "par_a",
                                              T0 + timedelta(minutes=2))
    assert annotated is not None and isinstance(annotated.data, SnapshotAnnotated)
    assert annotated.data.shapes == 1
    again = await store.snapshot(session.id, snapshot.id)
    assert again is not None and again.annotations == shapes and again.annotated_key == "annotated.png"
    assert await store.annotate_snapshot(session.id, "snp_missing", [], "x", "par_a", T0) is None


async def test_fields_read_off_a_snapshot_are_confirmed_corrected_or_dismissed(store: Store) -> None:
    session, _ = await _create(store)
    snapshot = _snapshot(session, T0)
    snapshot = Snapshot(**{**snapshot.__dict__, "faces_blurred": 2})
    captured = await store.add_snapshot(snapshot)
    assert isinstance(captured.data, SnapshotCaptured) and captured.data.faces_blurred == 2
    assert (await store.snapshots(session.id))[0].faces_blurred == 2
    at = T0 + timedelta(seconds=1)
    serial = _field(snapshot, "serial_number", "VX-2231-A", at)
    model = _field(snapshot, "model", "XR-5OO", at)
    ean = _field(snapshot, "ean", "4006381333931", at)
    read = await store.add_reading(session.id, snapshot.id, [serial, model, ean], SnapshotRead(
        snapshot_id=snapshot.id, lines=3, codes=1, duration_ms=900), at)
    assert read is not None and isinstance(read.data, SnapshotRead) and read.actor == "system"
    assert [(f.id, f.value) for f in read.data.fields or []] == [
        (serial.id, "VX-2231-A"), (model.id, "XR-5OO"), (ean.id, "4006381333931")]
    assert await store.fields(session.id) == [serial, model, ean]
    missing = SnapshotRead(snapshot_id="snp_missing")
    assert await store.add_reading(session.id, "snp_missing", [], missing, at) is None

    later = T0 + timedelta(minutes=1)
    confirmed = await store.decide_field(session.id, serial.id, "VX-2231-A", "par_a", later)
    assert confirmed is not None
    field, event = confirmed
    assert (field.status, field.confirmed_by, field.confirmed_at) == (FieldStatus.CONFIRMED, "par_a", later)
    assert isinstance(event.data, FieldConfirmed) and not event.data.corrected and event.actor == "par_a"
    corrected = await store.decide_field(session.id, model.id, "XR-500", "par_a", later)
    assert corrected is not None and isinstance(corrected[1].data, FieldConfirmed)
    assert corrected[1].data.corrected
    assert (corrected[0].value, corrected[0].read_value) == ("XR-500", "XR-5OO")
    rejected = await store.decide_field(session.id, ean.id, None, "par_a", later)
    assert rejected is not None and isinstance(rejected[1].data, FieldRejected)
    assert rejected[0].status is FieldStatus.REJECTED
    assert [(f.name, f.value) for f in await store.fields(session.id, FieldStatus.CONFIRMED)] == [
        ("serial_number", "VX-2231-A"), ("model", "XR-500")]
    assert await store.field(session.id, ean.id) == rejected[0]
    assert await store.decide_field(session.id, "fld_missing", "x", "par_a", later) is None
    assert await store.decide_field("ses_other", serial.id, "x", "par_a", later) is None


async def test_fields_go_with_their_snapshot(store: Store) -> None:
    erased, _ = await _create(store, "ZD-FIELDS-ERASE")
    old, _ = await _create(store, "ZD-FIELDS-OLD")
    for session in (erased, old):
        snapshot = _snapshot(session, T0)
        await store.add_snapshot(snapshot)
        field = _field(snapshot, "serial_number", "VX-2231-A", T0)
        await store.add_reading(session.id, snapshot.id, [field], SnapshotRead(snapshot_id=snapshot.id), T0)
        await store.decide_field(session.id, field.id, "VX-2231-A", "par_a", T0)
    await store.erase_ticket("ZD-FIELDS-ERASE", "api:key_1", T0 + timedelta(hours=1))
    assert await store.fields(erased.id) == []
    values = [e.data.value for e in await store.events(erased.id) if isinstance(e.data, FieldConfirmed)]
    assert values == [None], "the value read is erased with the ticket"
    reads = [e.data.fields for e in await store.events(erased.id) if isinstance(e.data, SnapshotRead)]
    assert reads == [None]
    assert await store.end_session(old.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(minutes=5), [])
    await store.purge(T0 + timedelta(minutes=10), None, T0 + timedelta(days=1))
    assert await store.fields(old.id) == []


async def test_recordings(store: Store) -> None:
    session, _ = await _create(store)
    first, second = _recording(session, T0), _recording(session, T0 + timedelta(minutes=5))
    event = await store.add_recording(second)
    assert isinstance(event.data, RecordingStored) and event.at == second.ended_at
    await store.add_recording(first)
    assert await store.recordings(session.id) == [first, second], "in the order they were made"
    assert await store.recording(session.id, first.id) == first
    assert await store.recording(session.id, "rec_missing") is None


async def test_a_session_is_rated_once(store: Store) -> None:
    session, _ = await _create(store)
    assert await store.rating(session.id) is None
    event = await store.rate(session.id, 5, "great", "par_c", T0 + timedelta(minutes=3))
    assert event is not None and isinstance(event.data, SessionRated)
    assert await store.rate(session.id, 1, "changed my mind", "par_c", T0 + timedelta(minutes=4)) is None
    assert await store.rating(session.id) == Rating(rating=5, comment="great", at=T0 + timedelta(minutes=3))


# Idempotency

async def test_an_idempotency_key_is_stored_once_and_pruned_by_age(store: Store) -> None:
    old, _ = await _create(store, at=T0, idempotency=("key_1", "k-old", "digest-a"))
    recent, _ = await _create(store, at=T0 + timedelta(hours=30), idempotency=("key_1", "k-new", "digest-b"))
    with pytest.raises(IdempotencyConflict):
        await _create(store, at=T0 + timedelta(hours=30), idempotency=("key_1", "k-new", "digest-c"))
    assert await store.idempotent_session("key_1", "k-old", T0) == ("digest-a", old.id)
    assert await store.idempotent_session("key_1", "k-old", T0 + timedelta(hours=1)) is None, "too old"
    assert await store.idempotent_session("key_2", "k-new", T0) is None, "per API key"
    assert await store.prune_idempotency_keys(T0 + timedelta(hours=24)) == 1
    assert await store.idempotent_session("key_1", "k-old", T0) is None
    assert await store.idempotent_session("key_1", "k-new", T0) == ("digest-b", recent.id)


async def test_prune_drops_only_rows_past_their_windows(store: Store) -> None:
    await _create(store, at=T0, idempotency=("key_1", "old", "d"))
    await _create(store, at=T0 + timedelta(hours=2), idempotency=("key_1", "new", "d"))
    await store.login_failure(["email:a@example.com", "ip:10.0.0.1"], T0)
    await store.login_failure(["email:a@example.com"], T0 + timedelta(hours=2))
    cutoff = T0 + timedelta(hours=1)
    assert await store.prune(cutoff, cutoff) == {"idempotency_keys": 1, "login_failures": 2}
    assert await store.login_failures("email:a@example.com", T0 - timedelta(days=1)) == 1
    assert await store.login_failures("ip:10.0.0.1", T0 - timedelta(days=1)) == 0
    assert await store.idempotent_session("key_1", "new", T0) is not None
    assert await store.prune(cutoff, cutoff) == {"idempotency_keys": 0, "login_failures": 0}


# The webhook outbox

async def test_webhook_events_wait_in_the_outbox_until_enqueued(store: Store) -> None:
    woken: list[bool] = []
    store.on_enqueue = lambda: woken.append(True)
    await store.create_webhook("whk_a", "https://example.com/a", "secret-a", ["session.created"])
    await store.create_webhook("whk_b", "https://example.com/b", "secret-b", ["session.ended"])
    session, people = await _create(store)
    await store.append_event(session.id, _chat(people[0], "not a webhook event"), people[0].id, T0)
    pending = await store.outbox_pending(10)
    assert [type(e.data) for e in pending] == [SessionCreated]
    assert await store.enqueue_deliveries(pending[0], "session.created", '{"n":1}') == 1
    assert woken == [True]
    assert await store.outbox_pending(10) == []
    due = await store.due_deliveries(T0, 10)
    assert [(d.endpoint_id, d.event_seq, d.payload, d.url, d.secret, d.attempts) for d in due] == [
        ("whk_a", pending[0].seq, '{"n":1}', "https://example.com/a", "secret-a", 0)]
    assert [w.id for w in await store.webhooks()] == ["whk_a", "whk_b"]


async def test_due_deliveries_keep_each_sessions_order_and_retry_times(store: Store) -> None:
    await store.create_webhook("whk_a", "https://example.com/a", "s", ["session.created", "session.ended"])
    one, _ = await _create(store, at=T0)
    two, _ = await _create(store, at=T0)
    for event in await store.outbox_pending(10):
        await store.enqueue_deliveries(event, event.type.value, "{}")
    ended = await store.end_session(one.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(seconds=1), [])
    assert ended is not None
    await store.enqueue_deliveries(ended[1], "session.ended", "{}")

    due = await store.due_deliveries(T0 + timedelta(seconds=1), 10)
    assert [(d.session_id, d.type) for d in due] == [(one.id, "session.created"), (two.id, "session.created")]
    first = due[0]
    retry_at = T0 + timedelta(minutes=1)
    await store.record_attempt(first.id, T0 + timedelta(seconds=2), 500, "HTTP 500", 12, retry_at=retry_at,
                               give_up=False)
    assert [d.session_id for d in await store.due_deliveries(T0 + timedelta(seconds=3), 10)] == [two.id], \
        "the session's next delivery waits behind the one being retried"
    await store.record_attempt(first.id, retry_at, 200, None, 8, retry_at=None, give_up=False)
    later = await store.due_deliveries(retry_at, 10)
    assert [(d.session_id, d.type) for d in later] == [(two.id, "session.created"), (one.id, "session.ended")]

    listed = {d.id: d for d in await store.deliveries("whk_a")}
    assert [d.id for d in await store.deliveries("whk_a")] == sorted(listed, reverse=True), "newest first"
    done = listed[first.id]
    assert done.status == "delivered" and done.event_id == f"evt_{first.event_seq}"
    assert [(a.status_code, a.error, a.duration_ms) for a in done.attempts] == [(500, "HTTP 500", 12),
                                                                                (200, None, 8)]
    assert done.attempts[0].at == T0 + timedelta(seconds=2) and done.delivered_at == retry_at
    assert len(await store.deliveries("whk_a", status="pending")) == 2


async def test_failed_deliveries_can_be_redelivered_and_a_removed_endpoint_cancels_its_queue(
        store: Store) -> None:
    await store.create_webhook("whk_a", "https://example.com/a", "s", ["session.created"])
    await _create(store)
    await _create(store)
    for event in await store.outbox_pending(10):
        await store.enqueue_deliveries(event, "session.created", "{}")
    first, second = await store.due_deliveries(T0, 10)
    await store.record_attempt(first.id, T0, None, "timeout", 10000, retry_at=None, give_up=True)
    assert [d.status for d in await store.deliveries("whk_a", status="failed")] == ["failed"]
    assert await store.redeliver(first.id)
    assert {d.id for d in await store.due_deliveries(utcnow(), 10)} == {first.id, second.id}
    assert await store.disable_webhook("whk_a")
    assert not await store.disable_webhook("whk_a")
    assert {d.status for d in await store.deliveries("whk_a")} == {"cancelled"}
    assert not await store.redeliver(first.id), "not to a removed endpoint"
    assert await store.due_deliveries(utcnow(), 10) == []
    removed = (await store.webhooks())[0]
    assert removed.disabled_at is not None


async def test_claimed_deliveries_go_to_one_claimer_and_wait_out_their_hold(store: Store) -> None:
    await store.create_webhook("whk_a", "https://example.com/a", "s", ["session.created", "session.ended"])
    sessions = [(await _create(store, at=T0))[0] for _ in range(6)]
    for event in await store.outbox_pending(20):
        await store.enqueue_deliveries(event, event.type.value, "{}")
    ended = await store.end_session(sessions[0].id, Outcome.RESOLVED, "", "par_a", T0, [])
    assert ended is not None
    await store.enqueue_deliveries(ended[1], "session.ended", "{}")
    hold = T0 + timedelta(minutes=2)
    # Several nodes claiming at the same moment: each delivery goes to one of them.
    claims = await asyncio.gather(*(store.claim_deliveries(T0, 3, hold) for _ in range(4)))
    claimed = [d.id for claim in claims for d in claim]
    assert len(claimed) == len(set(claimed)) == 6, "one claimer each, and each session's first only"
    assert await store.claim_deliveries(T0 + timedelta(minutes=1), 10, hold) == [], "held"
    first = next(d for claim in claims for d in claim if d.session_id == sessions[0].id)
    await store.record_attempt(first.id, T0, 204, None, 5, retry_at=None, give_up=False)
    after = await store.claim_deliveries(T0 + timedelta(minutes=1), 10, hold)
    assert [(d.session_id, d.type) for d in after] == [(sessions[0].id, "session.ended")], \
        "the session's next delivery, once the one before it was sent"
    again = await store.claim_deliveries(hold, 10, hold + timedelta(minutes=2))
    assert len(again) == 6, "a claim whose sender died is due again after its hold"


async def test_the_webhook_backlog_counts_waiting_and_given_up_deliveries(store: Store) -> None:
    empty = await store.webhook_backlog()
    assert (empty.pending, empty.oldest_pending_at, empty.failed) == (0, None, 0)
    await store.create_webhook("whk_a", "https://example.com/a", "s", ["session.created"])
    for _ in range(3):
        await _create(store)
    for event in await store.outbox_pending(10):
        await store.enqueue_deliveries(event, "session.created", "{}")
    first, second, _ = await store.due_deliveries(utcnow(), 10)
    await store.record_attempt(first.id, T0, None, "timeout", 10000, retry_at=None, give_up=True)
    await store.record_attempt(second.id, T0, 204, None, 5, retry_at=None, give_up=False)
    backlog = await store.webhook_backlog()
    assert (backlog.pending, backlog.failed) == (1, 1)
    assert backlog.oldest_pending_at is not None and backlog.oldest_pending_at <= utcnow()


async def test_an_internal_webhook_is_kept_in_step_with_its_adapter(store: Store) -> None:
    await store.ensure_internal_webhook("whk_zendesk", "zendesk:", ["session.ended"], enabled=True)
    await store.ensure_internal_webhook("whk_zendesk", "zendesk:", ["session.ended"], enabled=True)
    [hook] = await store.webhooks()
    assert (hook.id, hook.url, hook.events) == ("whk_zendesk", "zendesk:", ["session.ended"])
    assert hook.disabled_at is None
    await store.ensure_internal_webhook("whk_zendesk", "zendesk:", ["session.ended"], enabled=False)
    [hook] = await store.webhooks()
    assert hook.disabled_at is not None


# API keys, accounts, the audit log

async def test_api_keys(store: Store) -> None:
    key = await store.create_api_key("key_1", "zendesk", "digest-1")
    assert await store.api_key_by_digest("digest-1") == key
    assert await store.api_key_by_digest("digest-2") is None
    with pytest.raises(DuplicateKey):
        await store.create_api_key("key_2", "again", "digest-1")
    await store.touch_api_key("key_1", T0)
    [listed] = await store.list_api_keys()
    assert listed.last_used_at == T0 and listed.revoked_at is None
    assert await store.revoke_api_key("key_1", "cli")
    assert not await store.revoke_api_key("key_1", "cli")
    revoked = await store.api_key_by_digest("digest-1")
    assert revoked is not None and revoked.revoked_at is not None
    entries = await store.audit_log()
    assert [(a.actor, a.action, a.target) for a in entries] == [("cli", "api_key.revoke", "key_1")]


async def test_users_and_their_web_sessions(store: Store) -> None:
    assert not await store.has_users()
    await store.create_user("usr_1", "Ana@Example.com", "Ana", "admin", "hash-1", "cli")
    assert await store.has_users()
    user = await store.user_by_email("ana@example.com")
    assert user is not None and (user.id, user.email, user.role, user.disabled_at) == (
        "usr_1", "Ana@Example.com", "admin", None), "e-mail matches whatever its case"
    with pytest.raises(DuplicateKey):
        await store.create_user("usr_2", "ana@example.com", "Other", "agent", "hash-2", "cli")
    await store.rehash_password("usr_1", "hash-new")
    assert [u.password_hash for u in await store.users()] == ["hash-new"]

    now = utcnow()
    await store.create_web_session("cookie-1", "usr_1", "csrf-1", now + timedelta(hours=12))
    signed_in = await store.web_session("cookie-1", now)
    assert signed_in is not None and signed_in.user.id == "usr_1" and signed_in.csrf == "csrf-1"
    assert signed_in.expires_at == now + timedelta(hours=12)
    assert await store.web_session("cookie-1", now + timedelta(hours=13)) is None, "expired"
    await store.end_web_session("cookie-1")
    assert await store.web_session("cookie-1", now) is None

    await store.create_web_session("cookie-2", "usr_1", "csrf-2", now + timedelta(hours=12))
    assert await store.set_user_disabled("usr_1", True, "user:admin@example.com")
    assert await store.web_session("cookie-2", now) is None, "disabling signs out"
    disabled = await store.user_by_email("ana@example.com")
    assert disabled is not None and disabled.disabled_at is not None
    assert [(a.action, a.target, a.data) for a in await store.audit_log()] == [
        ("user.disable", "usr_1", {}),
        ("user.create", "usr_1", {"email": "Ana@Example.com", "role": "admin"})]


async def test_login_failures_count_within_the_window(store: Store) -> None:
    await store.login_failure(["email:a@example.com", "ip:10.0.0.1"], T0)
    await store.login_failure(["email:a@example.com"], T0 + timedelta(minutes=10))
    assert await store.login_failures("email:a@example.com", T0 - timedelta(minutes=1)) == 2
    assert await store.login_failures("email:a@example.com", T0) == 1, "strictly after `since`"
    assert await store.login_failures("ip:10.0.0.1", T0 - timedelta(minutes=1)) == 1
    assert await store.login_failures("ip:10.0.0.2", T0 - timedelta(minutes=1)) == 0


async def test_a_staff_link_binds_to_the_first_person(store: Store) -> None:
    await store.create_user("usr_1", "a@example.com", "A", "agent", "h", "cli")
    await store.create_user("usr_2", "b@example.com", "B", "agent", "h", "cli")
    _, people = await _create(store)
    assert await store.bind_participant(people[1].id, "usr_1") == "usr_1"
    assert await store.bind_participant(people[1].id, "usr_2") == "usr_1"
    [_, agent] = await store.participants(people[1].session_id)
    assert agent.user_id == "usr_1"


async def test_the_audit_log_is_newest_first(store: Store) -> None:
    await store.audit("cli", "webhook.create", "whk_1", {"url": "https://example.com"})
    await store.audit("api:key_1", "webhook.remove", "whk_1", {})
    entries = await store.audit_log()
    assert [(e.actor, e.action, e.data) for e in entries] == [
        ("api:key_1", "webhook.remove", {}), ("cli", "webhook.create", {"url": "https://example.com"})]
    assert entries[0].id > entries[1].id and entries[0].at.tzinfo is not None
    assert len(await store.audit_log(limit=1)) == 1


# Erasure and retention

async def test_erasing_a_ticket_counts_and_keeps_only_anonymous_figures(store: Store) -> None:
    await store.create_webhook("whk_a", "https://example.com/a", "s", ["session.created"])
    session, people = await _create(store, "ZD-ERASE")
    kept, _ = await _create(store, "ZD-KEEP")
    await store.add_snapshot(_snapshot(session, T0))
    await store.add_recording(_recording(session, T0))
    await store.append_event(session.id, _chat(people[0], "my address"), people[0].id, T0)
    await store.rate(session.id, 4, "Ana says hi", people[0].id, T0)
    for event in await store.outbox_pending(10):
        await store.enqueue_deliveries(event, event.type.value, '{"customer":"Ana"}')

    counts, ids, events = await store.erase_ticket("ZD-ERASE", "api:key_1", T0 + timedelta(hours=1))
    assert counts == {"sessions": 1, "snapshots": 1, "recordings": 1, "chat_messages": 1}
    assert ids == [session.id] and [type(e.data) for e in events] == [TicketErased]
    assert await store.erase_ticket("ZD-ERASE", "api:key_1", T0) == ({}, [], [])
    erased = await store.get_session(session.id)
    assert erased is not None and erased.ticket_id != "ZD-ERASE" and erased.customer == {}
    assert erased.tier == 2 and erased.created_at == T0
    assert await store.snapshots(session.id) == [] and await store.recordings(session.id) == []
    assert [p.name for p in await store.participants(session.id)] == ["customer", "agent"]
    chats = [e.data for e in await store.events(session.id) if isinstance(e.data, ChatMessage)]
    assert [(c.text, c.name) for c in chats] == [(None, None)]
    rating = await store.rating(session.id)
    assert rating is not None and (rating.rating, rating.comment) == (4, "")
    assert await store.sessions_for_ticket("ZD-KEEP") == [kept]


async def test_purging_removes_old_media_and_chat_and_reports_counts(store: Store) -> None:
    old, people = await _create(store, "ZD-OLD")
    recent, _ = await _create(store, "ZD-NEW")
    await store.add_snapshot(_snapshot(old, T0))
    recording = _recording(old, T0)
    await store.add_recording(recording)
    await store.add_snapshot(_snapshot(recent, T0))
    await store.append_event(old.id, _chat(people[0], "early"), people[0].id, T0)
    await store.append_event(old.id, _chat(people[0], "late"), people[0].id, T0 + timedelta(days=2))
    assert await store.end_session(old.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(minutes=30), [])
    assert await store.end_session(recent.id, Outcome.RESOLVED, "", "par_a", T0 + timedelta(minutes=50), [])

    cutoff = T0 + timedelta(minutes=40)
    counts, removed, events = await store.purge(cutoff, T0 + timedelta(days=1), T0 + timedelta(days=3))
    assert counts == {"snapshots": 1, "recordings": 1, "chat_messages": 1}
    snapshot_id = await _only_id(store, old.id)
    assert sorted(removed) == sorted([(old.id, f"sessions/{old.id}/snapshots/{snapshot_id}"),
                                      (old.id, f"sessions/{old.id}/recordings/{recording.id}")])
    assert [(e.session_id, type(e.data)) for e in events] == [(old.id, RetentionPurged)]
    assert isinstance(events[0].data, RetentionPurged)
    assert (events[0].data.snapshots, events[0].data.recordings) == (1, 1)
    assert await store.snapshots(old.id) == [] and len(await store.snapshots(recent.id)) == 1
    texts = [e.data.text for e in await store.events(old.id) if isinstance(e.data, ChatMessage)]
    assert texts == [None, "late"]
    assert (await store.purge(cutoff, T0 + timedelta(days=1), T0 + timedelta(days=3)))[0] == {
        "snapshots": 0, "recordings": 0, "chat_messages": 0}


async def _only_id(store: Store, session_id: str) -> str:
    """The id of the snapshot a purge removed, from its timeline event (the row itself is gone)."""
    [captured] = [e.data for e in await store.events(session_id) if isinstance(e.data, SnapshotCaptured)]
    return captured.snapshot_id


# Nodes

async def test_sessions_are_placed_on_the_least_loaded_live_node(store: Store) -> None:
    for name in ("a", "b", "c"):
        await store.register_node(name, f"https://{name}.example.com", 2, T0)
    await store.heartbeat("c", 2, T0)  # full
    await store.set_node_state("b", NodeState.DRAINING)
    alive = T0 - timedelta(seconds=5)
    placed = await store.place(T0, alive)
    assert placed is not None and placed.id == "a", "b drains, c is full"
    await store.set_node_state("b", NodeState.ACTIVE)
    session = Session(id=_id("ses"), ticket_id="ZD-N", tier=2, customer={}, status=Status.WAITING,
                      created_at=T0, expires_at=T0 + timedelta(hours=1), node_id="a")
    await store.create_session(session, [], "api:key_1")
    placed = await store.place(T0, alive)
    assert placed is not None and placed.id == "b", "a has an open session, b none"
    assert await store.place(T0 + timedelta(seconds=10), T0 + timedelta(seconds=5)) is None, \
        "nobody beat since"
    listed = {n.id: (n.state, n.sessions, n.load) for n in await store.nodes(T0)}
    assert listed == {"a": (NodeState.ACTIVE, 1, 0), "b": (NodeState.ACTIVE, 0, 0),
                      "c": (NodeState.ACTIVE, 0, 2)}


async def test_a_silent_nodes_sessions_move_once_to_a_live_node(store: Store) -> None:
    for name in ("a", "b"):
        await store.register_node(name, f"https://{name}.example.com", 5, T0)
    sessions = []
    for _ in range(2):
        session = Session(id=_id("ses"), ticket_id="ZD-F", tier=2, customer={}, status=Status.WAITING,
                          created_at=T0, expires_at=T0 + timedelta(hours=1), node_id="b")
        await store.create_session(session, [], "api:key_1")
        sessions.append(session)
    later = T0 + timedelta(seconds=10)
    await store.heartbeat("a", 0, later)  # a beats on; b fell silent at T0
    moved = await store.fail_over(later - timedelta(seconds=5), later)
    assert [(e.session_id, e.data) for e in moved] == [
        (s.id, SessionMoved(from_node="b", to_node="a")) for s in sessions]
    assert [getattr(await store.get_session(s.id), "node_id", None) for s in sessions] == ["a", "a"]
    assert {n.id: n.state for n in await store.nodes(later)} == {"a": NodeState.ACTIVE, "b": NodeState.DEAD}
    assert await store.fail_over(later - timedelta(seconds=5), later) == [], "done once"
    assert (await store.event(moved[0].seq)) == moved[0]

    # A node stopped and not back: its sessions move too; one that came back keeps them.
    await store.set_node_state("a", NodeState.STOPPED)
    await store.register_node("b", "https://b.example.com", 5, later)
    much_later = later + timedelta(seconds=10)
    await store.heartbeat("b", 0, much_later)
    moved = await store.fail_over(much_later - timedelta(seconds=5), much_later)
    assert [e.data for e in moved] == [SessionMoved(from_node="a", to_node="b")] * 2


# Staff views: the home board, analytics, erasure marks


async def test_session_facts_hold_each_sessions_funnel_rating_and_agent(store: Store) -> None:
    from visassist.events import CameraAllowed, LinkOpened

    before, _ = await _create(store, "ZD-OLD", at=T0 - timedelta(days=2))
    first, people = await _create(store, "ZD-1", at=T0)
    second, _ = await _create(store, "ZD-2", at=T0 + timedelta(hours=1))
    await store.create_user("usr_9", "sam@example.com", "Sam Agent", "agent", "hash", "cli")
    await store.bind_participant(people[1].id, "usr_9")
    await store.append_event(first.id, LinkOpened(browser="Chrome 120"), people[0].id, T0)
    await store.append_event(first.id, CameraAllowed(), people[0].id, T0)
    await store.append_event(first.id, _chat(people[0], "not a fact"), people[0].id, T0)
    await store.end_session(first.id, Outcome.RESOLVED, "", "api", T0 + timedelta(minutes=5), [])
    await store.rate(first.id, 5, "", people[0].id, T0 + timedelta(minutes=6))

    facts = await store.session_facts(T0, T0 + timedelta(days=1))
    assert [f.session.id for f in facts] == [first.id, second.id], "created in the window, oldest first"
    one = facts[0]
    assert [e.type.value for e in one.events] == ["link.opened", "camera.allowed", "session.ended"], \
        "the steps analytics reads, in order (no chat)"
    assert one.rating is not None and one.rating.rating == 5 and one.agent == "Sam Agent"
    assert facts[1].rating is None and facts[1].agent is None
    assert await store.session_facts(T0 + timedelta(days=3), T0 + timedelta(days=4)) == []
    assert before.id not in [f.session.id for f in await store.session_facts(T0 - timedelta(hours=1),
                                                                              T0 + timedelta(days=1))]

    ended = await store.sessions_ended_between(T0, T0 + timedelta(days=1))
    assert [s.id for s in ended] == [first.id]


async def test_an_erasure_leaves_its_mark_in_the_same_write(store: Store) -> None:
    from visassist.store.base import Erasure

    for _ in range(2):
        session, _ = await _create(store, "ZD-MARK")
        await store.add_snapshot(_snapshot(session, T0))
    counts, _, _ = await store.erase_ticket("ZD-MARK", "api:key_1", T0, mark="digest-1")
    assert await store.erasures("digest-1") == [Erasure("digest-1", T0, "api:key_1", counts)]
    assert counts["sessions"] == 2 and counts["snapshots"] == 2
    assert await store.erase_ticket("ZD-NONE", "api:key_1", T0, mark="digest-2") == ({}, [], [])
    assert await store.erasures("digest-2") == [], "nothing erased, no mark"
