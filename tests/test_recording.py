"""Recording: a session created with record: true ends with a WebM of what the camera showed, in the
ticket's record, downloadable with ranges, in the session.ended webhook, and gone when erased."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import av
import numpy as np
from aiohttp.test_utils import TestClient
from playwright.async_api import BrowserContext, expect

from tests.browser import join_as_customer, new_session, open_console, record, wait_playing
from tests.utils import MARKER_ID, FakeParticipant, MarkerTrack, detect_markers, token_of

Create = Callable[..., Awaitable[dict[str, Any]]]


def decoded(webm: bytes) -> tuple[list[np.ndarray], float, int]:
    """The video frames (BGR), the container's duration in seconds and its audio samples."""
    with av.open(io.BytesIO(webm)) as container:
        duration = (container.duration or 0) / 1_000_000
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    samples = 0
    with av.open(io.BytesIO(webm)) as container:
        if container.streams.audio:
            samples = sum(f.samples for f in container.decode(audio=0))
    return frames, duration, samples


async def test_a_recorded_session_keeps_the_camera_in_its_record(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    session = await create_session(record=True)
    assert session["record"] is True
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await agent.negotiate(receive=True)
        await customer.join()
        await customer.negotiate(send=MarkerTrack(640, 480))
        await agent.media("camera", "live")
        started = time.monotonic()
        await asyncio.sleep(3)
        await agent.send({"type": "end", "outcome": "resolved"})
        await agent.expect("ended")
        seconds = time.monotonic() - started
    finally:
        await customer.close()
        await agent.close()

    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    (recording,) = body["recordings"]
    types = [e["type"] for e in body["events"]]
    assert types.index("recording.started") < types.index("recording.stored") < types.index("session.ended")
    assert (recording["width"], recording["height"]) == (640, 480)
    assert abs(recording["duration_seconds"] - seconds) < 1.0

    response = await client.get(recording["url"], headers=auth)
    assert response.status == 200 and response.content_type == "video/webm"
    webm = await response.read()
    assert len(webm) == recording["size_bytes"]
    frames, duration, _ = decoded(webm)
    assert abs(duration - recording["duration_seconds"]) < 0.5
    assert len(frames) > 30 and frames[0].shape[:2] == (480, 640)
    assert MARKER_ID in detect_markers(frames[len(frames) // 2]), "the recording shows what the camera did"

    ranged = await client.get(recording["url"], headers={**auth, "Range": "bytes=100-199"})
    assert ranged.status == 206 and await ranged.read() == webm[100:200], "a player can seek"
    listing = await (await client.get(f"/api/v1/sessions/{session['id']}/recordings", headers=auth)).json()
    assert listing["recordings"] == [recording]
    assert (await client.get(recording["url"])).status == 401, "only with an API key"

    erased = await client.delete(f"/api/v1/tickets/{session['ticket_id']}", headers=auth)
    assert (await erased.json())["erased"]["recordings"] == 1
    assert (await client.get(recording["url"], headers=auth)).status == 404


async def test_sessions_are_not_recorded_unless_asked(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    session = await create_session()
    assert session["record"] is False
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await customer.join()
        await customer.negotiate(send=MarkerTrack())
        await agent.media("camera", "live")
        await agent.send({"type": "end", "outcome": "resolved"})
        await agent.expect("ended")
    finally:
        await customer.close()
        await agent.close()
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert body["recordings"] == []
    assert "recording.started" not in [e["type"] for e in body["events"]]


async def test_a_session_recorded_in_chromium(
    api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext
) -> None:
    session = await new_session(api, record=True)
    customer_page = await phone.new_page()
    await customer_page.goto(session["customer_url"])
    await expect(customer_page.get_by_test_id("recording-notice")).to_be_visible()
    await customer_page.close()

    agent = await open_console(desktop, session["agent_url"])
    await expect(agent.get_by_test_id("recording-badge")).to_be_visible()
    customer = await join_as_customer(phone, session["customer_url"])
    await expect(customer.get_by_test_id("recording-badge")).to_be_visible()
    await wait_playing(agent, "remote-video")
    await asyncio.sleep(4)
    await agent.get_by_test_id("outcome").select_option("resolved")
    await agent.get_by_test_id("end-session").click()
    await expect(agent.get_by_test_id("connection-state")).to_have_text("Session ended")

    body = await record(api, session["id"])
    (recording,) = body["recordings"]
    async with api.get(recording["url"]) as response:
        webm = await response.read()
    frames, duration, _ = await asyncio.to_thread(decoded, webm)
    assert abs(duration - body["duration_seconds"]) < 2.0, (duration, body["duration_seconds"])
    assert frames and any(MARKER_ID in detect_markers(f) for f in frames[-30:])
