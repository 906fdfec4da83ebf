"""Session use cases shared by the REST API and the signalling socket.

Each use case changes state and records its event in one store transaction, then publishes the event
on the bus (visassist/events.py); the live rooms and the webhook outbox react as subscribers. The only
thing asked of the rooms directly is what a use case must know before it records (LiveRooms)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from av import VideoFrame

from visassist.annotations import Shape, shapes_adapter
from visassist.blobs import BlobStore
from visassist.config import Settings
from visassist.errors import ApiErrorCode, Conflict, NotFound
from visassist.events import (
    Bus,
    ChatMessage,
    Event,
    EventData,
    LeftReason,
    ParticipantJoined,
    ParticipantLeft,
    RecordingStarted,
    SnapshotRead,
)
from visassist.media.compose import Image, compose, decode_photo, encode_png
from visassist.media.pictures import to_bgr
from visassist.media.recorder import Recorded
from visassist.models import (
    FieldStatus,
    Outcome,
    Participant,
    Recording,
    Role,
    Session,
    Snapshot,
    SnapshotField,
    SnapshotSource,
    Status,
    iso,
    utcnow,
)
from visassist.schemas import (
    ChatMessageOut,
    FieldOut,
    RecordingOut,
    SessionSummaryOut,
    SnapshotOut,
    api_folder,
)
from visassist.store.base import Erasure, FieldStore, SessionStore, StaffViews
from visassist.tasks import finish
from visassist.tokens import digest, link_token, new_id, ticket_digest
from visassist.vision import Busy, TimedOut, Vision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Composed:
    width: int
    height: int
    raw_png: bytes
    annotated_png: bytes
    image: Image  # as stored: faces blurred
    faces_blurred: int


def _compose_snapshot(image: Image, shapes: list[Shape], vision: Vision | None) -> Composed:
    """CPU work of a snapshot (blurring faces, drawing, two PNGs); runs in a worker thread. Faces are
    blurred first: the unblurred pixels never reach the blob store, raw or annotated."""
    image, faces = vision.blur(image) if vision is not None else (image, 0)
    annotated = compose(image, shapes)
    return Composed(width=image.shape[1], height=image.shape[0], raw_png=encode_png(image),
                    annotated_png=encode_png(annotated), image=image, faces_blurred=faces)


_CLOSED_CODES = {Status.ENDED: ApiErrorCode.SESSION_ENDED, Status.EXPIRED: ApiErrorCode.SESSION_EXPIRED,
                 Status.REVOKED: ApiErrorCode.SESSION_REVOKED}


def closed_error(status: Status, message: str) -> Conflict:
    """The refusal of a change to a session that is no longer open: its code says why."""
    return Conflict(_CLOSED_CODES[status], message)


class LiveRooms(Protocol):
    """What the use cases ask of the rooms live on this node (the signalling Hub implements it)."""

    def connected(self, session_id: str) -> list[str]: ...

    async def stop_recording(self, session_id: str) -> None: ...


class ServiceStore(SessionStore, FieldStore, StaffViews, Protocol):
    """What the use cases keep: sessions, the values read off their snapshots, and the marks erasures
    leave."""


class SessionService:
    def __init__(self, settings: Settings, store: ServiceStore, blobs: BlobStore, live: LiveRooms, bus: Bus,
                 link_key: bytes, clock: Callable[[], datetime] = utcnow,
                 vision: Vision | None = None) -> None:
        self.vision = vision
        self.link_key = link_key
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.live = live
        self.bus = bus
        self.clock = clock

    async def _published(self, event: Event | None) -> Event | None:
        if event is not None:
            await self.bus.publish(event)
        return event

    # Creation and reading

    async def create(self, *, ticket_id: str, tier: int, customer: dict[str, Any],
                     ttl_seconds: int, actor: str, audio: bool = False, record: bool | None = None,
                     idempotency: tuple[str, str, str] | None = None, node_id: str | None = None) -> Session:
        now = self.clock()
        session = Session(
            id=new_id("ses"), ticket_id=ticket_id, tier=tier, customer=customer,
            status=Status.WAITING, created_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
            audio=audio, record=self.settings.record_by_default if record is None else record,
            node_id=node_id,
        )
        participants = [
            Participant(id=new_id("par"), session_id=session.id, role=Role.CUSTOMER,
                        name=str(customer.get("name") or "Customer"), created_at=now),
            Participant(id=new_id("par"), session_id=session.id, role=Role.AGENT,
                        name=f"Tier {tier} agent", created_at=now),
        ]
        # The links are derived from the participant ids (see links()); the store keeps digests only.
        await self._published(await self.store.create_session(
            session, [(p, digest(link_token(self.link_key, p.id))) for p in participants], actor,
            idempotency))
        log.info("session %s created for ticket %s", session.id, ticket_id)
        return session

    def _require_open(self, session: Session) -> None:
        status = session.effective_status(self.clock())
        if status not in (Status.WAITING, Status.LIVE):
            raise closed_error(status, f"the session is already {status.value}")

    async def get(self, session_id: str) -> Session:
        session = await self.store.get_session(session_id)
        if session is None:
            raise NotFound(ApiErrorCode.SESSION_NOT_FOUND, f"no session with id {session_id!r}")
        return session

    async def invite(self, session_id: str, role: Role, name: str | None, actor: str,
                     base: str) -> tuple[Participant, str]:
        """A new participant (a Tier 3 expert or a supervisor) and the link that admits them; whoever
        is in the session sees them in presence at once (the room subscribes to the invitation)."""
        session = await self.get(session_id)
        self._require_open(session)
        participant_id = new_id("par")
        token = link_token(self.link_key, participant_id)
        participant = Participant(id=participant_id, session_id=session_id, role=role,
                                  name=name or ("Tier 3 expert" if role is Role.EXPERT else "Supervisor"),
                                  created_at=self.clock())
        event = await self.store.add_participant(participant, digest(token), actor,
                                                 self.settings.max_participants_per_session)
        if event is None:
            raise Conflict(ApiErrorCode.SESSION_FULL, "this session has as many participants as it may")
        await self._published(event)
        return participant, f"{base}/a/{token}"

    async def rate(self, session: Session, customer: Participant, rating: int, comment: str) -> None:
        if session.effective_status(self.clock()) is not Status.ENDED:
            raise Conflict(ApiErrorCode.SESSION_NOT_ENDED, "a session can be rated once it has ended")
        if await self._published(await self.store.rate(session.id, rating, comment, customer.id,
                                                       self.clock())) is None:
            raise Conflict(ApiErrorCode.ALREADY_RATED, "this session has been rated already; thank you")

    async def record(self, session_id: str, data: EventData, actor: str) -> Event:
        """A timeline entry for a change that lives in the room (freeze, quality, handover...)."""
        event = await self.store.append_event(session_id, data, actor, self.clock())
        await self.bus.publish(event)
        return event

    async def chat(self, session_id: str, sender: Participant, text: str) -> ChatMessageOut:
        event = await self.record(session_id, ChatMessage(participant_id=sender.id, role=sender.role,
                                                          name=sender.name, text=text), sender.id)
        return ChatMessageOut.of(event)

    async def transcript(self, session_id: str) -> list[ChatMessageOut]:
        return [ChatMessageOut.of(e) for e in await self.store.events(session_id)
                if isinstance(e.data, ChatMessage)]

    async def links(self, session: Session, base: str) -> dict[str, str]:
        """The customer's and the agent's links, rebuilt from the link key; only while open."""
        if session.effective_status(self.clock()) not in (Status.WAITING, Status.LIVE):
            return {}
        links = {}
        for participant in await self.store.participants(session.id):
            if participant.role is Role.CUSTOMER:
                links["customer_url"] = f"{base}/s/{link_token(self.link_key, participant.id)}"
            elif participant.role is Role.AGENT:
                links["agent_url"] = f"{base}/a/{link_token(self.link_key, participant.id)}"
        return links

    async def describe(self, session: Session, *, snapshots: bool = False) -> dict[str, Any]:
        """The session's record as the API shows it (schemas.SessionOut)."""
        connected = set(self.live.connected(session.id))
        participants = await self.store.participants(session.id)
        events = await self.store.events(session.id)
        body = SessionSummaryOut.of(session, self.clock()).model_dump(mode="json")
        body["participants"] = [
            {"id": p.id, "role": p.role.value, "name": p.name, "connected": p.id in connected}
            for p in participants
        ]
        body["events"] = [e.public() for e in events]  # schemas.EventOut's shape
        rating = await self.store.rating(session.id)
        body["rating"] = None if rating is None else {"rating": rating.rating, "comment": rating.comment,
                                                      "at": iso(rating.at)}
        confirmed = [FieldOut.of(f) for f in await self.store.fields(session.id, FieldStatus.CONFIRMED)]
        if snapshots:
            folder = api_folder(session.id, "snapshots")
            body["snapshots"] = [SnapshotOut.of(s, folder, confirmed).model_dump(mode="json")
                                 for s in await self.store.snapshots(session.id)]
        folder = api_folder(session.id, "recordings")
        body["recordings"] = [RecordingOut.of(r, folder).model_dump(mode="json")
                              for r in await self.store.recordings(session.id)]
        body["fields"] = [f.model_dump(mode="json") for f in confirmed]
        return body

    # Recording

    def recording_path(self, session: Session) -> tuple[str, Path]:
        """A new recording's blob key and the file a recorder writes it to."""
        key = f"sessions/{session.id}/recordings/{new_id('rec')}/session.webm"
        return key, self.blobs.local_path(key)

    async def recording_started(self, session_id: str) -> None:
        await self.record(session_id, RecordingStarted(), "system")

    async def recorded(self, session: Session, key: str, done: Recorded) -> Recording:
        recording = Recording(
            id=key.split("/")[3], session_id=session.id, ticket_id=session.ticket_id,
            started_at=done.started_at, ended_at=done.ended_at, duration_seconds=done.duration_seconds,
            size_bytes=done.size_bytes, width=done.width, height=done.height, key=key)
        await self._published(await self.store.add_recording(recording))
        log.info("session %s: recording %s stored (%.1f s, %d bytes)", session.id, recording.id,
                 recording.duration_seconds, recording.size_bytes)
        return recording

    # Ending

    async def end(self, session_id: str, outcome: Outcome, notes: str, actor: str) -> Session:
        session = await self.get(session_id)
        self._require_open(session)
        connected = self.live.connected(session_id)
        await finish(self.live.stop_recording(session_id))  # stored before session.ended, which lists it
        result = await self.store.end_session(session_id, outcome, notes, actor, self.clock(), connected)
        if result is None:  # lost a race with another end or with expiry
            raise Conflict(ApiErrorCode.SESSION_ENDED, "the session is no longer open")
        ended, event = result
        await finish(self.bus.publish(event))  # the room closes as it hears of it
        log.info("session %s ended: %s", session_id, outcome.value)
        return ended

    async def revoke(self, session_id: str, actor: str) -> Session:
        """Withdraw the links at once and disconnect whoever is in."""
        self._require_open(await self.get(session_id))
        event = await self.store.revoke_session(session_id, actor, self.clock())
        if event is None:
            raise Conflict(ApiErrorCode.SESSION_ENDED, "the session is no longer open")
        await finish(self.bus.publish(event))
        log.info("session %s revoked", session_id)
        return await self.get(session_id)

    async def erase_ticket(self, ticket_id: str, actor: str) -> dict[str, int]:
        """Right to erasure: media and personal data go; anonymous outcome figures stay."""
        now = self.clock()
        for session in await self.store.sessions_for_ticket(ticket_id):
            if session.effective_status(now) in (Status.WAITING, Status.LIVE):
                await self.revoke(session.id, actor)
        # The ticket's page says what went (visassist/records.py), without linking the figures back.
        counts, session_ids, events = await self.store.erase_ticket(
            ticket_id, actor, now, mark=ticket_digest(self.link_key, ticket_id))
        if not session_ids:
            raise NotFound(ApiErrorCode.TICKET_NOT_FOUND, f"no sessions for ticket {ticket_id!r}")
        await self.bus.publish(*events)
        for session_id in session_ids:
            await self.blobs.delete_prefix(f"sessions/{session_id}")
        log.info("ticket %s erased: %s", ticket_id, counts)
        return counts

    async def erasures(self, ticket_id: str) -> list[Erasure]:
        return await self.store.erasures(ticket_digest(self.link_key, ticket_id))

    async def purge(self) -> dict[str, int]:
        """The scheduled retention purge; logs what it removed."""
        now = self.clock()
        media = self.settings.retention_media_days
        chat = self.settings.retention_chat_days
        counts, removed, events = await self.store.purge(
            None if media is None else now - timedelta(days=media),
            None if chat is None else now - timedelta(days=chat), now)
        await self.bus.publish(*events)
        for _, prefix in removed:
            await self.blobs.delete_prefix(prefix)
        if any(counts.values()):
            log.info("retention purge removed %d snapshots, %d recordings and %d chat messages",
                     counts["snapshots"], counts["recordings"], counts["chat_messages"])
        return counts

    async def expire_due(self) -> int:
        """Close sessions whose time is up; returns how many were expired."""
        now = self.clock()
        count = 0
        for session in await self.store.open_sessions():
            event = None if session.expires_at > now else await self.store.expire_session(session.id, now)
            if event is not None:
                count += 1
                await finish(self.bus.publish(event))
                log.info("session %s expired", session.id)
        return count

    # Presence

    async def joined(self, session: Session, participant: Participant, rejoin: bool) -> None:
        await self.record(session.id, ParticipantJoined(participant_id=participant.id, role=participant.role,
                                                        name=participant.name, rejoin=rejoin),
                          participant.id)
        if participant.role is Role.CUSTOMER:
            await self.store.mark_live(session.id, self.clock())

    async def left(self, session_id: str, participant: Participant, reason: LeftReason) -> None:
        await self.record(session_id, ParticipantLeft(participant_id=participant.id, role=participant.role,
                                                      reason=reason), participant.id)

    # Snapshots

    async def capture(self, session: Session, taker: Participant, frame: VideoFrame,
                      shapes: list[Shape], source: SnapshotSource = SnapshotSource.CAMERA) -> Snapshot:
        """A snapshot of a live frame: the newest the server received, at the size it was received."""
        image = await to_bgr(frame)
        return await self._store_snapshot(session, taker, image, shapes, source)

    async def store_photo(self, session: Session, taker: Participant, data: bytes) -> Snapshot:
        """A full-resolution photo uploaded by the customer's phone, checked by decoding it."""
        image = await asyncio.to_thread(decode_photo, data)
        return await self._store_snapshot(session, taker, image, [], SnapshotSource.DEVICE_PHOTO)

    async def annotate(self, session: Session, snapshot_id: str, shapes: list[Shape],
                       actor: Participant) -> Snapshot:
        """Draw on a stored snapshot again: the raw image is kept, a new annotated image is made."""
        snapshot = await self.store.snapshot(session.id, snapshot_id)
        raw = None if snapshot is None else await self.blobs.get(snapshot.raw_key)
        if snapshot is None or raw is None:
            raise NotFound(ApiErrorCode.NOT_FOUND, "no such snapshot in this session")
        image = await asyncio.to_thread(decode_photo, raw)
        annotated = await asyncio.to_thread(lambda: encode_png(compose(image, shapes)))
        version = new_id("v")
        prefix = f"sessions/{session.id}/snapshots/{snapshot.id}"
        vectors = shapes_adapter.dump_python(shapes, mode="json")
        key = f"{prefix}/annotated-{version}.png"
        await asyncio.gather(self.blobs.put(key, annotated),
                             self.blobs.put(f"{prefix}/annotations-{version}.json",
                                            json.dumps(vectors).encode()))
        if await self._published(await self.store.annotate_snapshot(
                session.id, snapshot.id, vectors, key, actor.id, self.clock())) is None:
            raise NotFound(ApiErrorCode.NOT_FOUND, "no such snapshot in this session")
        updated = await self.store.snapshot(session.id, snapshot.id)
        assert updated is not None
        return updated

    async def _store_snapshot(self, session: Session, taker: Participant, image: Image,
                              shapes: list[Shape], source: SnapshotSource) -> Snapshot:
        if len(await self.store.snapshots(session.id)) >= self.settings.max_snapshots_per_session:
            raise Conflict(ApiErrorCode.SNAPSHOT_LIMIT, "this session has reached its snapshot limit")
        composed = await asyncio.to_thread(_compose_snapshot, image, shapes, self.vision)
        snapshot_id = new_id("snp")
        prefix = f"sessions/{session.id}/snapshots/{snapshot_id}"
        vectors = shapes_adapter.dump_python(shapes, mode="json")
        snapshot = Snapshot(
            id=snapshot_id, session_id=session.id, ticket_id=session.ticket_id, taken_at=self.clock(),
            taken_by=taker.id, source=source, width=composed.width,
            height=composed.height, annotations=vectors, raw_key=f"{prefix}/raw.png",
            annotated_key=f"{prefix}/annotated.png", faces_blurred=composed.faces_blurred,
        )
        # Blobs first, row second: a row never points at an image that is not on disk.
        await asyncio.gather(
            self.blobs.put(snapshot.raw_key, composed.raw_png),
            self.blobs.put(snapshot.annotated_key, composed.annotated_png),
            self.blobs.put(f"{prefix}/annotations.json", json.dumps(vectors).encode()),
        )
        await self._published(await self.store.add_snapshot(snapshot))
        if self.vision is not None and self.vision.read_labels:
            # Read in the background: the snapshot is stored and listed without waiting for it.
            self.vision.in_background(self._read_snapshot(snapshot, composed.image))
        return snapshot

    # Reading labels

    async def _read_snapshot(self, snapshot: Snapshot, image: Image) -> None:
        """Read a stored snapshot (as stored: faces blurred) and record the fields found as chips."""
        assert self.vision is not None
        fields: list[SnapshotField] = []
        try:
            reading = await self.vision.read(image)
        except (Busy, TimedOut) as exc:
            log.warning("snapshot %s not read: %s", snapshot.id, exc)
            read = SnapshotRead(snapshot_id=snapshot.id, error="busy" if isinstance(exc, Busy) else "timeout")
        except Exception:
            log.exception("snapshot %s: reading failed", snapshot.id)
            read = SnapshotRead(snapshot_id=snapshot.id, error="failed")
        else:
            now = self.clock()
            fields = [SnapshotField(
                id=new_id("fld"), session_id=snapshot.session_id, snapshot_id=snapshot.id, name=f.name,
                value=f.value, read_value=f.value, confidence=f.confidence, source=f.source,
                box=[round(v, 4) for v in f.box], status=FieldStatus.SUGGESTED, created_at=now)
                for f in reading.found]
            read = SnapshotRead(snapshot_id=snapshot.id, fields=[], lines=len(reading.lines),
                                codes=len(reading.codes), duration_ms=reading.duration_ms)
        await self._published(await self.store.add_reading(snapshot.session_id, snapshot.id, fields, read,
                                                           self.clock()))

    async def fields(self, session_id: str) -> list[FieldOut]:
        await self.get(session_id)
        return [FieldOut.of(f) for f in await self.store.fields(session_id)]

    async def decide_field(self, session_id: str, field_id: str, value: str | None, actor: str,
                           *, confirm: bool = True) -> FieldOut:
        """Confirm a field (the value read, or `value` if given: the agent's correction) or dismiss it."""
        session = await self.get(session_id)
        if session.effective_status(self.clock()) in (Status.EXPIRED, Status.REVOKED):
            raise closed_error(session.effective_status(self.clock()), "the session is closed")
        before = await self.store.field(session_id, field_id)
        if before is None:
            raise NotFound(ApiErrorCode.NOT_FOUND, f"no field {field_id!r} in this session")
        decided = await self.store.decide_field(
            session_id, field_id, (value or before.read_value) if confirm else None, actor, self.clock())
        if decided is None:
            raise NotFound(ApiErrorCode.NOT_FOUND, f"no field {field_id!r} in this session")
        field, event = decided
        await self.bus.publish(event)
        return FieldOut.of(field)
