"""The ticket's record as a page for staff (/tickets/{ticket_id}): every session with its timeline in
sentences, the snapshot gallery, recordings, chat, outcome and rating; a ZIP of all of it; a print view.

Who may read it: supervisors and administrators every record, agents and experts the records of
tickets they took part in (a staff link of the ticket bound to them). Its images and recordings are
served under the same path with the same check, never by an unguessable URL alone.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web

from visassist.accounts import OVERSEERS, UserRole, staff_member
from visassist.api import snapshot_image
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, Forbidden, NotFound
from visassist.events import ChatMessage, Event
from visassist.models import Participant, Rating, Recording, Session, Snapshot, WebSession, iso
from visassist.pages import render
from visassist.schemas import TICKET_ID_PATTERN
from visassist.store.base import Erasure
from visassist.timeline import SOURCES, Narrator, duration

routes = web.RouteTableDef()


@dataclass
class SessionRecord:
    session: Session
    participants: list[Participant]
    events: list[Event]
    snapshots: list[Snapshot]
    recordings: list[Recording]
    rating: Rating | None
    lines: list[tuple[Event, str]] = field(default_factory=list)  # the timeline as sentences
    chat: list[Event] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.session.status.value

    def who(self, participant_id: str) -> str:
        return Narrator(self.participants, self.users).who(participant_id)


@dataclass
class TicketRecord:
    ticket_id: str
    sessions: list[SessionRecord]
    erasures: list[Erasure]


def record_path(ticket_id: str) -> str:
    return f"/tickets/{quote(ticket_id, safe='')}"


async def read_record(request: web.Request, ticket_id: str) -> tuple[WebSession, TicketRecord]:
    """The ticket's record, for a signed-in person allowed to read it (see the module's docstring)."""
    signed_in = await staff_member(request)
    ctx = request.app[AppContext.KEY]
    sessions = await ctx.store.sessions_for_ticket(ticket_id)
    erasures = await ctx.sessions.erasures(ticket_id)
    if not sessions and not erasures:
        raise NotFound(ApiErrorCode.TICKET_NOT_FOUND, f"no sessions for ticket {ticket_id}")
    records = []
    users = {u.id: u.name for u in await ctx.store.users()}
    for session in sessions:
        participants = await ctx.store.participants(session.id)
        events = await ctx.store.events(session.id)
        narrator = Narrator(participants, users)
        records.append(SessionRecord(
            session=session, participants=participants, events=events,
            snapshots=await ctx.store.snapshots(session.id),
            recordings=await ctx.store.recordings(session.id),
            rating=await ctx.store.rating(session.id), lines=[(e, narrator.sentence(e)) for e in events],
            chat=[e for e in events if isinstance(e.data, ChatMessage)], users=users))
    took_part = any(p.user_id == signed_in.user.id for r in records for p in r.participants)
    if sessions and UserRole(signed_in.user.role) not in OVERSEERS and not took_part:
        raise Forbidden(ApiErrorCode.NOT_YOUR_TICKET, "this ticket's record is for the staff who took part "
                        "in it, supervisors and administrators")
    return signed_in, TicketRecord(ticket_id, records, erasures)


def _ticket_id(request: web.Request) -> str:
    ticket_id = request.match_info["ticket_id"]
    if not re.match(TICKET_ID_PATTERN, ticket_id):
        raise NotFound(ApiErrorCode.TICKET_NOT_FOUND, "that is not a ticket id")
    return ticket_id


@routes.get("/tickets")
async def find_ticket(request: web.Request) -> web.Response:
    """The home page's search box: straight to the ticket's record."""
    await staff_member(request)
    wanted = request.query.get("ticket_id", "").strip()
    raise web.HTTPSeeOther(record_path(wanted) if wanted else "/")


@routes.get("/tickets/{ticket_id}")
async def ticket_page(request: web.Request) -> web.Response:
    ticket_id = _ticket_id(request)
    signed_in, record = await read_record(request, ticket_id)
    return render("staff/ticket.html", page="ticket", user=signed_in.user, csrf=signed_in.csrf, record=record,
                  base=record_path(ticket_id), sources=SOURCES, duration=duration, iso=iso)


def _session_of(record: TicketRecord, session_id: str) -> SessionRecord:
    for entry in record.sessions:
        if entry.session.id == session_id:
            return entry
    raise NotFound(ApiErrorCode.SESSION_NOT_FOUND, "no such session in this ticket")


@routes.get(r"/tickets/{ticket_id}/sessions/{session_id}/snapshots/{snapshot_id}/{kind:(raw|annotated)}.png")
async def record_image(request: web.Request) -> web.Response:
    _, record = await read_record(request, _ticket_id(request))
    entry = _session_of(record, request.match_info["session_id"])
    snapshot = next((s for s in entry.snapshots if s.id == request.match_info["snapshot_id"]), None)
    if snapshot is None:
        raise NotFound(ApiErrorCode.SNAPSHOT_NOT_FOUND, "no such snapshot in this session")
    return await snapshot_image(request.app[AppContext.KEY], snapshot, request.match_info["kind"])


@routes.get("/tickets/{ticket_id}/sessions/{session_id}/recordings/{recording_id}")
async def record_video(request: web.Request) -> web.StreamResponse:
    """The WebM file for the page's player (HTTP Range, so it can seek)."""
    _, record = await read_record(request, _ticket_id(request))
    entry = _session_of(record, request.match_info["session_id"])
    recording = next((r for r in entry.recordings if r.id == request.match_info["recording_id"]), None)
    if recording is None:
        raise NotFound(ApiErrorCode.RECORDING_NOT_FOUND, "no such recording in this session")
    path = request.app[AppContext.KEY].blobs.local_path(recording.key)
    if not path.is_file():
        raise NotFound(ApiErrorCode.RECORDING_MISSING, "the file of this recording is missing from storage")
    return web.FileResponse(path, headers={"Content-Type": "video/webm",
                                           "Cache-Control": "private, no-cache"})


# The export


def _stamp(event: Event) -> str:
    return iso(event.at) or ""


def _timeline_text(entry: SessionRecord) -> str:
    return "".join(f"{_stamp(event)}  {line}\n" for event, line in entry.lines)


def _transcript_text(entry: SessionRecord) -> str:
    lines = []
    for event in entry.chat:
        data = event.data
        assert isinstance(data, ChatMessage)
        text = data.text if data.text is not None else "(message erased)"
        lines.append(f"{_stamp(event)}  {entry.who(data.participant_id)} ({data.role.value}): {text}\n")
    return "".join(lines) or "No chat messages.\n"


def _write_zip(entries: list[tuple[str, bytes | Path]]) -> IO[bytes]:
    """CPU and disk work, in a worker thread; images and video are stored as they are (already
    compressed), text is deflated."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (the caller streams it, then closes it)
    with zipfile.ZipFile(handle, "w") as archive:
        for name, content in entries:
            packed = name.endswith((".png", ".webm"))
            method = zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED
            if isinstance(content, Path):
                archive.write(content, name, compress_type=method)
            else:
                archive.writestr(name, content, compress_type=method)
    handle.seek(0)
    return handle


@routes.get("/tickets/{ticket_id}/export.zip")
async def export_zip(request: web.Request) -> web.StreamResponse:
    ticket_id = _ticket_id(request)
    _, record = await read_record(request, ticket_id)
    ctx = request.app[AppContext.KEY]
    described: list[dict[str, Any]] = []
    entries: list[tuple[str, bytes | Path]] = []
    for number, entry in enumerate(record.sessions, start=1):
        folder = f"session-{number}-{entry.session.id}"
        view = await ctx.sessions.describe(entry.session, snapshots=True)
        for snapshot in view.get("snapshots") or []:  # paths inside the archive, beside the API's
            snapshot["files"] = {kind: f"{folder}/snapshots/{snapshot['id']}/{kind}.png"
                                 for kind in ("raw", "annotated")}
        for recording in view["recordings"]:
            recording["file"] = f"{folder}/recordings/{recording['id']}.webm"
        described.append(view)
        entries.append((f"{folder}/timeline.txt", _timeline_text(entry).encode()))
        entries.append((f"{folder}/transcript.txt", _transcript_text(entry).encode()))
        for snapshot in entry.snapshots:
            for kind, key in (("raw", snapshot.raw_key), ("annotated", snapshot.annotated_key)):
                data = await ctx.blobs.get(key)
                if data is not None:
                    entries.append((f"{folder}/snapshots/{snapshot.id}/{kind}.png", data))
            entries.append((f"{folder}/snapshots/{snapshot.id}/annotations.json",
                            json.dumps(snapshot.annotations, indent=2).encode()))
        for recording in entry.recordings:
            path = ctx.blobs.local_path(recording.key)
            if path.is_file():
                entries.append((f"{folder}/recordings/{recording.id}.webm", path))
    body = {"ticket_id": ticket_id, "exported_at": iso(ctx.sessions.clock()), "sessions": described,
            "erasures": [{"at": iso(e.at), "by": e.actor, "erased": e.counts} for e in record.erasures]}
    entries.insert(0, ("record.json", json.dumps(body, indent=2, ensure_ascii=False).encode()))
    handle = await asyncio.to_thread(_write_zip, entries)
    try:
        size = handle.seek(0, 2)
        handle.seek(0)
        response = web.StreamResponse(headers={
            "Content-Type": "application/zip", "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="ticket-{ticket_id}.zip"'})
        response.content_length = size
        await response.prepare(request)
        while chunk := await asyncio.to_thread(handle.read, 256 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        handle.close()
