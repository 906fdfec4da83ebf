"""The ticket's record page, its images, its ZIP and print view, and who may read them."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any

import cv2
from aiohttp.test_utils import TestClient

from tests.test_accounts import add_user, sign_in
from tests.utils import MARKER_ID, decode_png, detect_markers, marker_image, token_of
from visassist.context import AppContext
from visassist.models import Role
from visassist.timeline import Narrator

Create = Callable[..., Awaitable[dict[str, Any]]]


async def _session_with_a_photo_and_chat(client: TestClient, create_session: Create,
                                         auth: dict[str, str]) -> dict[str, Any]:
    """A session with a photo of the marker, a chat line, an outcome and notes, as the use cases make them."""
    created = await create_session(customer={"name": "Ana"})
    ctx = client.app[AppContext.KEY]
    session = await ctx.sessions.get(created["id"])
    people = await ctx.store.participants(session.id)
    customer = next(p for p in people if p.role is Role.CUSTOMER)
    png = cv2.imencode(".png", marker_image())[1].tobytes()
    await ctx.sessions.store_photo(session, customer, png)
    await ctx.sessions.chat(session.id, customer, "The light blinks red")
    ended = await client.post(f"/api/v1/sessions/{session.id}/end", headers=auth,
                              json={"outcome": "resolved", "notes": "Reseated the cable"})
    assert ended.status == 200
    return created


async def test_the_record_reads_as_sentences_with_the_gallery_and_transcript(
        client: TestClient, create_session: Create, auth: dict[str, str]) -> None:
    created = await _session_with_a_photo_and_chat(client, create_session, auth)
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "lead@support.test")

    page = await client.get("/tickets/ZD-1042")
    html = await page.text()
    assert page.status == 200
    for sentence in ("created the session for a Tier 2 agent",
                     "Ana wrote in the chat: “The light blinks red”", "ended the session as resolved",
                     "phone sent a full-resolution photo"):
        assert sentence in html
    assert "Reseated the cable" in html and "The light blinks red" in html
    assert "session.created" not in html, "sentences, not event codes"
    assert 'href="/tickets/ZD-1042/export.zip"' in html
    # The API points at the page too, for the help desk to show beside the ticket.
    ticket = await (await client.get("/api/v1/tickets/ZD-1042", headers=auth)).json()
    assert ticket["record_url"] == f"{str(client.make_url('')).rstrip('/')}/tickets/ZD-1042"
    single = await (await client.get(f"/api/v1/sessions/{created['id']}", headers=auth)).json()
    assert single["record_url"] == ticket["record_url"]

    snapshot = (await (await client.get(f"/api/v1/sessions/{created['id']}/snapshots", headers=auth)).json()
                )["snapshots"][0]
    for kind in ("raw", "annotated"):
        path = f"/tickets/ZD-1042/sessions/{created['id']}/snapshots/{snapshot['id']}/{kind}.png"
        assert f'src="{path}"' in html
        image = await client.get(path)
        assert image.status == 200 and MARKER_ID in detect_markers(decode_png(await image.read()))


async def test_the_zip_holds_the_images_the_transcript_and_the_json(
        client: TestClient, create_session: Create, auth: dict[str, str]) -> None:
    created = await _session_with_a_photo_and_chat(client, create_session, auth)
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "lead@support.test")
    response = await client.get("/tickets/ZD-1042/export.zip")
    assert response.status == 200 and response.content_type == "application/zip"
    assert 'filename="ticket-ZD-1042.zip"' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    names = archive.namelist()
    record = json.loads(archive.read("record.json"))
    [session] = record["sessions"]
    assert session["id"] == created["id"] and session["outcome"]["notes"] == "Reseated the cable"
    [snapshot] = session["snapshots"]
    for kind in ("raw", "annotated"):
        assert snapshot["files"][kind] in names
        assert MARKER_ID in detect_markers(decode_png(archive.read(snapshot["files"][kind])))
    folder = snapshot["files"]["raw"].split("/")[0]
    assert "Ana (customer): The light blinks red" in archive.read(f"{folder}/transcript.txt").decode()
    timeline = archive.read(f"{folder}/timeline.txt").decode()
    assert "ended the session as resolved" in timeline
    assert f"{folder}/snapshots/{snapshot['id']}/annotations.json" in names


async def test_who_may_read_a_record(client: TestClient, create_session: Create,
                                     auth: dict[str, str]) -> None:
    created = await _session_with_a_photo_and_chat(client, create_session, auth)
    await create_session(ticket_id="ZD-2000")
    for email, role in (("stranger@support.test", "agent"), ("taker@support.test", "agent"),
                        ("boss@support.test", "admin")):
        await add_user(client, email, role)

    anonymous = await client.get("/tickets/ZD-1042", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login?next=")

    await sign_in(client, "stranger@support.test")
    refused = await client.get("/tickets/ZD-1042")
    assert refused.status == 403 and "took part" in await refused.text() and "<html" in await refused.text()
    snapshot_id = (await (await client.get(f"/api/v1/sessions/{created['id']}/snapshots", headers=auth)
                          ).json())["snapshots"][0]["id"]
    image = await client.get(f"/tickets/ZD-1042/sessions/{created['id']}/snapshots/{snapshot_id}/raw.png")
    assert image.status == 403, "the images are behind the same check"
    assert (await client.get("/tickets/ZD-1042/export.zip")).status == 403
    missing = await client.get("/tickets/ZD-404")
    assert missing.status == 404 and "no sessions for ticket" in await missing.text()

    # An agent who opened the ticket's console reads its record.
    await sign_in(client, "taker@support.test")
    other = await create_session(ticket_id="ZD-3000")
    assert (await client.get(f"/a/{token_of(other['agent_url'])}")).status == 200
    assert (await client.get("/tickets/ZD-3000")).status == 200
    assert (await client.get("/tickets/ZD-2000")).status == 403

    await sign_in(client, "boss@support.test")
    assert (await client.get("/tickets/ZD-2000")).status == 200


async def test_an_erased_ticket_says_what_was_erased(client: TestClient, create_session: Create,
                                                     auth: dict[str, str]) -> None:
    await _session_with_a_photo_and_chat(client, create_session, auth)
    assert (await client.delete("/api/v1/tickets/ZD-1042", headers=auth)).status == 200
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "lead@support.test")
    page = await client.get("/tickets/ZD-1042")
    text = await page.text()
    assert page.status == 200
    assert "1 session(s), 1 snapshot(s)" in text and "1 chat message(s)" in text
    assert "The light blinks red" not in text and "Reseated the cable" not in text
    assert (await client.get("/tickets/ZD-9999")).status == 404


async def test_every_event_reads_as_a_sentence_naming_people() -> None:
    from datetime import UTC, datetime

    from visassist.events import EVENT_DATA, CameraFailed, Event, ParticipantLeft
    from visassist.models import Participant

    ana = Participant(id="par_1", session_id="ses_1", role=Role.CUSTOMER, name="Ana",
                      created_at=datetime.now(UTC))
    narrator = Narrator([ana])
    left = Event(seq=1, session_id="ses_1", at=datetime.now(UTC), actor="par_1",
                 data=ParticipantLeft(participant_id="par_1", role=Role.CUSTOMER, reason="disconnected"))
    assert narrator.sentence(left) == "Ana disconnected."
    refused = Event(seq=2, session_id="ses_1", at=datetime.now(UTC), actor="par_1",
                    data=CameraFailed(reason="refused", error="NotAllowedError"))
    assert narrator.sentence(refused) == ("Ana could not start the camera: the camera was refused "
                                          "(NotAllowedError).")
    assert len(EVENT_DATA) >= 28


async def test_the_recording_plays_from_the_record_and_goes_in_the_zip(
        client: TestClient, create_session: Create, auth: dict[str, str]) -> None:
    from datetime import timedelta

    from visassist.models import Recording

    created = await create_session(record=True)
    ctx = client.app[AppContext.KEY]
    session = await ctx.sessions.get(created["id"])
    key, path = ctx.sessions.recording_path(session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x1aE\xdf\xa3" + bytes(range(256)) * 40)  # a WebM's magic, then its bytes
    started = ctx.sessions.clock()
    await ctx.store.add_recording(Recording(
        id=key.split("/")[3], session_id=session.id, ticket_id=session.ticket_id, started_at=started,
        ended_at=started + timedelta(seconds=42), duration_seconds=42.0, size_bytes=path.stat().st_size,
        width=1280, height=720, key=key))
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "lead@support.test")

    html = await (await client.get("/tickets/ZD-1042")).text()
    player = re.search(r'<video controls preload="metadata" src="([^"]+)"', html)
    assert player is not None and "42 s" in html
    part = await client.get(player.group(1), headers={"Range": "bytes=0-3"})
    assert part.status == 206 and await part.read() == b"\x1aE\xdf\xa3", "the player can seek"

    archive = zipfile.ZipFile(io.BytesIO(await (await client.get("/tickets/ZD-1042/export.zip")).read()))
    [recording] = json.loads(archive.read("record.json"))["sessions"][0]["recordings"]
    assert archive.read(recording["file"]) == path.read_bytes()
