"""Session use cases shared by the REST API and the signalling socket."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from av import VideoFrame

from visassist.annotations import Shape, shapes_adapter
from visassist.blobs import BlobStore
from visassist.config import Settings
from visassist.errors import ApiErrorCode, Conflict, NotFound
from visassist.media.compose import Image, compose, decode_photo, encode_png
from visassist.media.recorder import Recorded
from visassist.models import (
    Event,
    EventType,
    Outcome,
    Participant,
    Recording,
    Role,
    Session,
    Snapshot,
    SnapshotSource,
    Status,
    iso,
    utcnow,
)
from visassist.signalling.protocol import Ended, Presence
from visassist.signalling.room import Hub
from visassist.store import Store
from visassist.tasks import finish
from visassist.tokens import digest, link_token, new_id
from visassist.webhooks import recording_view

log = logging.getLogger(__name__)

_CLOSED_CODES = {Status.ENDED: ApiErrorCode.SESSION_ENDED, Status.EXPIRED: ApiErrorCode.SESSION_EXPIRED,
                 Status.REVOKED: ApiErrorCode.SESSION_REVOKED}


def closed_error(session: Session, message: str) -> Conflict:
    """The refusal of a change to a session that is no longer open: its code says why."""
    return Conflict(_CLOSED_CODES[session.effective_status()], message)


@dataclass(frozen=True)
class Composed:
    width: int
    height: int
    raw_png: bytes
    annotated_png: bytes


def _compose_snapshot(image: Image, shapes: list[Shape]) -> Composed:
    """CPU work of a snapshot (drawing, two PNGs); runs in a worker thread."""
    annotated = compose(image, shapes)
    return Composed(width=image.shape[1], height=image.shape[0], raw_png=encode_png(image),
                    annotated_png=encode_png(annotated))


def chat_message(event: Event) -> dict[str, Any]:
    return {"id": event.seq, "from": event.data["participant_id"], "role": event.data["role"],
            "name": event.data["name"], "text": event.data["text"], "at": iso(event.at)}


class SessionService:
    def __init__(self, settings: Settings, store: Store, blobs: BlobStore, hub: Hub,
                 link_key: bytes) -> None:
        self.link_key = link_key
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.hub = hub

    # Creation and reading

    async def create(self, *, ticket_id: str, tier: int, customer: dict[str, Any],
                     ttl_seconds: int, actor: str, audio: bool = False, record: bool | None = None,
                     idempotency: tuple[str, str, str] | None = None) -> Session:
        now = utcnow()
        session = Session(
            id=new_id("ses"), ticket_id=ticket_id, tier=tier, customer=customer,
            status=Status.WAITING, created_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
            audio=audio, record=self.settings.record_by_default if record is None else record,
        )
        participants = [
            Participant(id=new_id("par"), session_id=session.id, role=Role.CUSTOMER,
                        name=str(customer.get("name") or "Customer"), created_at=now),
            Participant(id=new_id("par"), session_id=session.id, role=Role.AGENT,
                        name=f"Tier {tier} agent", created_at=now),
        ]
        # The links are derived from the participant ids (see links()); the store keeps digests only.
        await self.store.create_session(
            session, [(p, digest(link_token(self.link_key, p.id))) for p in participants], actor,
            idempotency)
        log.info("session %s created for ticket %s", session.id, ticket_id)
        return session

    def _require_open(self, session: Session) -> None:
        if not session.is_open:
            raise closed_error(session, f"the session is already {session.effective_status().value}")

    async def get(self, session_id: str) -> Session:
        session = await self.store.get_session(session_id)
        if session is None:
            raise NotFound(ApiErrorCode.SESSION_NOT_FOUND, f"no session with id {session_id!r}")
        return session

    async def invite(self, session_id: str, role: Role, name: str | None, actor: str,
                     base: str) -> tuple[Participant, str]:
        """A new participant (a Tier 3 expert or a supervisor) and the link that admits them; whoever
        is in the session sees them in presence at once."""
        session = await self.get(session_id)
        self._require_open(session)
        participant_id = new_id("par")
        token = link_token(self.link_key, participant_id)
        participant = Participant(id=participant_id, session_id=session_id, role=role,
                                  name=name or ("Tier 3 expert" if role is Role.EXPERT else "Supervisor"),
                                  created_at=utcnow())
        if await self.store.add_participant(participant, digest(token), actor,
                                            self.settings.max_participants_per_session) is None:
            raise Conflict(ApiErrorCode.SESSION_FULL, "this session has as many participants as it may")
        room = self.hub.get(session_id)
        if room is not None:
            room.members[participant.id] = participant
            await room.broadcast(Presence(participants=room.presence()))
        return participant, f"{base}/a/{token}"

    async def rate(self, session: Session, customer: Participant, rating: int, comment: str) -> None:
        if session.effective_status() is not Status.ENDED:
            raise Conflict(ApiErrorCode.SESSION_NOT_ENDED, "a session can be rated once it has ended")
        if await self.store.rate(session.id, rating, comment, customer.id, utcnow()) is None:
            raise Conflict(ApiErrorCode.ALREADY_RATED, "this session has been rated already; thank you")

    async def record(self, session_id: str, type: EventType, actor: str, data: dict[str, Any]) -> Event:
        """A timeline entry for a change that lives in the room (freeze, quality, handover...)."""
        return await self.store.append_event(session_id, type, actor, data, utcnow())

    async def chat(self, session_id: str, sender: Participant, text: str) -> dict[str, Any]:
        event = await self.record(session_id, EventType.CHAT_MESSAGE, sender.id,
                                  {"participant_id": sender.id, "role": sender.role.value,
                                   "name": sender.name, "text": text})
        return chat_message(event)

    async def transcript(self, session_id: str) -> list[dict[str, Any]]:
        return [chat_message(e) for e in await self.store.events(session_id)
                if e.type is EventType.CHAT_MESSAGE]

    async def links(self, session: Session, base: str) -> dict[str, str]:
        """The customer's and the agent's links, rebuilt from the link key; only while open."""
        if not session.is_open:
            return {}
        links = {}
        for participant in await self.store.participants(session.id):
            if participant.role is Role.CUSTOMER:
                links["customer_url"] = f"{base}/s/{link_token(self.link_key, participant.id)}"
            elif participant.role is Role.AGENT:
                links["agent_url"] = f"{base}/a/{link_token(self.link_key, participant.id)}"
        return links

    def snapshot_urls(self, snapshot: Snapshot) -> dict[str, str]:
        path = f"/api/v1/sessions/{snapshot.session_id}/snapshots/{snapshot.id}"
        return {"raw_url": f"{path}/raw.png", "annotated_url": f"{path}/annotated.png"}

    def snapshot_view(self, snapshot: Snapshot) -> dict[str, Any]:
        return {
            "id": snapshot.id, "session_id": snapshot.session_id, "ticket_id": snapshot.ticket_id,
            "taken_at": iso(snapshot.taken_at), "taken_by": snapshot.taken_by,
            "source": snapshot.source.value, "width": snapshot.width, "height": snapshot.height,
            "annotations": snapshot.annotations, **self.snapshot_urls(snapshot),
        }

    def summary(self, session: Session) -> dict[str, Any]:
        return {
            "id": session.id, "ticket_id": session.ticket_id, "tier": session.tier,
            "customer": session.customer, "status": session.effective_status().value,
            "created_at": iso(session.created_at), "expires_at": iso(session.expires_at),
            "started_at": iso(session.started_at), "ended_at": iso(session.ended_at),
            "duration_seconds": session.duration_seconds, "audio": session.audio,
            "record": session.record,
            "outcome": None if session.outcome is None else {
                "outcome": session.outcome.value, "notes": session.notes,
                "ended_by": session.ended_by},
        }

    async def describe(self, session: Session, *, snapshots: bool = False) -> dict[str, Any]:
        room = self.hub.get(session.id)
        participants = await self.store.participants(session.id)
        events = await self.store.events(session.id)
        body = self.summary(session)
        body["participants"] = [
            {"id": p.id, "role": p.role.value, "name": p.name,
             "connected": room is not None and room.connected(p.id)}
            for p in participants
        ]
        body["events"] = [e.public() for e in events]
        rating = await self.store.rating(session.id)
        body["rating"] = None if rating is None else {**rating, "at": iso(rating["at"])}
        if snapshots:
            body["snapshots"] = [self.snapshot_view(s) for s in await self.store.snapshots(session.id)]
        body["recordings"] = [self.recording_view(r) for r in await self.store.recordings(session.id)]
        return body

    def recording_view(self, recording: Recording) -> dict[str, Any]:
        return recording_view(dataclasses.asdict(recording), "")  # a path, like snapshot URLs

    # Recording

    def recording_path(self, session: Session) -> tuple[str, Path]:
        """A new recording's blob key and the file a recorder writes it to."""
        key = f"sessions/{session.id}/recordings/{new_id('rec')}/session.webm"
        return key, self.blobs.local_path(key)

    async def recording_started(self, session_id: str) -> None:
        await self.record(session_id, EventType.RECORDING_STARTED, "system", {})

    async def recorded(self, session: Session, key: str, done: Recorded) -> Recording:
        recording = Recording(
            id=key.split("/")[3], session_id=session.id, ticket_id=session.ticket_id,
            started_at=done.started_at, ended_at=done.ended_at, duration_seconds=done.duration_seconds,
            size_bytes=done.size_bytes, width=done.width, height=done.height, key=key)
        await self.store.add_recording(recording, {
            "recording_id": recording.id, "duration_seconds": recording.duration_seconds,
            "size_bytes": recording.size_bytes})
        log.info("session %s: recording %s stored (%.1f s, %d bytes)", session.id, recording.id,
                 recording.duration_seconds, recording.size_bytes)
        return recording

    # Ending

    async def end(self, session_id: str, outcome: Outcome, notes: str, actor: str) -> Session:
        session = await self.get(session_id)
        self._require_open(session)
        room = self.hub.get(session_id)
        connected = sorted(room.connections) if room else []
        if room is not None:
            await finish(room.stop_recording())  # stored before session.ended, which lists it
        result = await self.store.end_session(session_id, outcome, notes, actor, utcnow(),
                                              {"connected": connected})
        if result is None:  # lost a race with another end or with expiry
            raise Conflict(ApiErrorCode.SESSION_ENDED, "the session is no longer open")
        ended, _ = result
        await finish(self._close_room(session_id, Ended(status="ended", outcome=outcome.value), "ended"))
        log.info("session %s ended: %s", session_id, outcome.value)
        return ended

    async def revoke(self, session_id: str, actor: str) -> Session:
        """Withdraw the links at once and disconnect whoever is in."""
        self._require_open(await self.get(session_id))
        if await self.store.revoke_session(session_id, actor, utcnow()) is None:
            raise Conflict(ApiErrorCode.SESSION_ENDED, "the session is no longer open")
        await finish(self._close_room(session_id, Ended(status="revoked"), "revoked"))
        log.info("session %s revoked", session_id)
        return await self.get(session_id)

    async def erase_ticket(self, ticket_id: str, actor: str) -> dict[str, int]:
        """Right to erasure: media and personal data go; anonymous outcome figures stay."""
        for session in await self.store.sessions_for_ticket(ticket_id):
            if session.is_open:
                await self.revoke(session.id, actor)
        counts, session_ids = await self.store.erase_ticket(ticket_id, actor, utcnow())
        if not session_ids:
            raise NotFound(ApiErrorCode.TICKET_NOT_FOUND, f"no sessions for ticket {ticket_id!r}")
        for session_id in session_ids:
            await self.blobs.delete_prefix(f"sessions/{session_id}")
        log.info("ticket %s erased: %s", ticket_id, counts)
        return counts

    async def purge(self) -> dict[str, int]:
        """The scheduled retention purge; logs what it removed."""
        now = utcnow()
        media = self.settings.retention_media_days
        chat = self.settings.retention_chat_days
        counts, removed = await self.store.purge(
            None if media is None else now - timedelta(days=media),
            None if chat is None else now - timedelta(days=chat), now)
        for _, prefix in removed:
            await self.blobs.delete_prefix(prefix)
        if any(counts.values()):
            log.info("retention purge removed %d snapshots, %d recordings and %d chat messages",
                     counts["snapshots"], counts["recordings"], counts["chat_messages"])
        return counts

    async def expire_due(self) -> int:
        """Close sessions whose time is up; returns how many were expired."""
        now = utcnow()
        count = 0
        for session in await self.store.open_sessions():
            if session.expires_at <= now and await self.store.expire_session(session.id, now):
                count += 1
                await finish(self._close_room(session.id, Ended(status="expired"), "expired"))
                log.info("session %s expired", session.id)
        return count

    async def _close_room(self, session_id: str, message: Ended, reason: str) -> None:
        room = self.hub.detach(session_id)
        if room is None:
            return
        await room.broadcast(message)
        # Taking the connections out of the room claims their "left" events from the socket handlers.
        connections = list(room.connections.values())
        room.connections.clear()
        for connection in connections:
            await self.left(session_id, connection.participant, reason)
        await asyncio.gather(*(c.close() for c in connections))
        await room.close()

    # Presence

    async def joined(self, session: Session, participant: Participant, rejoin: bool) -> None:
        now = utcnow()
        await self.store.append_event(
            session.id, EventType.PARTICIPANT_JOINED, participant.id,
            {"participant_id": participant.id, "role": participant.role.value,
             "name": participant.name, "rejoin": rejoin}, now)
        if participant.role is Role.CUSTOMER:
            await self.store.mark_live(session.id, now)

    async def left(self, session_id: str, participant: Participant, reason: str) -> None:
        await self.store.append_event(
            session_id, EventType.PARTICIPANT_LEFT, participant.id,
            {"participant_id": participant.id, "role": participant.role.value, "reason": reason},
            utcnow())

    # Snapshots

    async def capture(self, session: Session, taker: Participant, frame: VideoFrame,
                      shapes: list[Shape], source: SnapshotSource = SnapshotSource.CAMERA) -> Snapshot:
        """A snapshot of a live frame: the newest the server received, at the size it was received."""
        image = await asyncio.to_thread(lambda: cast(Image, frame.to_ndarray(format="bgr24")))
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
        if await self.store.annotate_snapshot(session.id, snapshot.id, vectors, key, actor.id,
                                              utcnow()) is None:
            raise NotFound(ApiErrorCode.NOT_FOUND, "no such snapshot in this session")
        updated = await self.store.snapshot(session.id, snapshot.id)
        assert updated is not None
        return updated

    async def _store_snapshot(self, session: Session, taker: Participant, image: Image,
                              shapes: list[Shape], source: SnapshotSource) -> Snapshot:
        if len(await self.store.snapshots(session.id)) >= self.settings.max_snapshots_per_session:
            raise Conflict(ApiErrorCode.SNAPSHOT_LIMIT, "this session has reached its snapshot limit")
        composed = await asyncio.to_thread(_compose_snapshot, image, shapes)
        snapshot_id = new_id("snp")
        prefix = f"sessions/{session.id}/snapshots/{snapshot_id}"
        vectors = shapes_adapter.dump_python(shapes, mode="json")
        snapshot = Snapshot(
            id=snapshot_id, session_id=session.id, ticket_id=session.ticket_id, taken_at=utcnow(),
            taken_by=taker.id, source=source, width=composed.width,
            height=composed.height, annotations=vectors, raw_key=f"{prefix}/raw.png",
            annotated_key=f"{prefix}/annotated.png",
        )
        # Blobs first, row second: a row never points at an image that is not on disk.
        await asyncio.gather(
            self.blobs.put(snapshot.raw_key, composed.raw_png),
            self.blobs.put(snapshot.annotated_key, composed.annotated_png),
            self.blobs.put(f"{prefix}/annotations.json", json.dumps(vectors).encode()),
        )
        await self.store.add_snapshot(snapshot, {
            "snapshot_id": snapshot.id, "source": snapshot.source.value,
            "width": snapshot.width, "height": snapshot.height, "shapes": len(vectors)})
        return snapshot
