"""The real signalling and media path with aiortc participants: a fake phone camera in, an agent out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from aiohttp.test_utils import TestClient
from aiortc.mediastreams import MediaStreamTrack

from tests.utils import (
    MARKER_ID,
    FakeParticipant,
    MarkerTrack,
    decode_png,
    detect_markers,
    marker_image,
    red_fraction,
    token_of,
)

Create = Callable[..., Awaitable[dict[str, Any]]]
ARROW = {"kind": "arrow", "color": "#ff0000", "width": 0.01, "points": [[0.6, 0.2], [0.9, 0.5]]}


async def first_frame(track: MediaStreamTrack, timeout: float = 15) -> np.ndarray:
    frame = await asyncio.wait_for(track.recv(), timeout)
    return np.asarray(frame.to_ndarray(format="bgr24"))


async def test_customer_video_reaches_agent_and_snapshot_holds_marker(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        # The agent is connected before the customer joins, as in a real escalation.
        welcome = await agent.join()
        assert welcome["participant"]["role"] == "agent"
        assert welcome["ice_servers"] == []
        assert (await agent.media("camera"))["state"] == "none"
        await agent.negotiate(receive=True)

        await customer.join()
        await customer.negotiate(send=MarkerTrack(640, 480))
        media = await agent.media("camera")
        assert (media["state"], media["width"], media["height"]) == ("live", 640, 480)

        image = await first_frame(await agent.track())
        assert image.shape[:2] == (480, 640)
        assert MARKER_ID in detect_markers(image), "the agent sees the customer's camera"

        await agent.send({"type": "snapshot", "request_id": "r1", "annotations": [ARROW]})
        stored = (await agent.expect("snapshot.stored"))["snapshot"]
        assert (stored["width"], stored["height"], stored["source"]) == (640, 480, "camera")
        assert stored["annotations"] == [ARROW]

        raw = await client.get(stored["raw_url"], headers=auth)
        assert raw.status == 200 and raw.content_type == "image/png"
        raw_image = decode_png(await raw.read())
        annotated = decode_png(await (await client.get(stored["annotated_url"], headers=auth)).read())
        assert raw_image.shape == (480, 640, 3)
        assert MARKER_ID in detect_markers(raw_image)
        # The arrow runs from (0.6, 0.2) to (0.9, 0.5): red along it in the annotated image only.
        assert red_fraction(annotated, 0.72, 0.30, 0.78, 0.40) > 0.05
        assert red_fraction(raw_image, 0.55, 0.15, 0.95, 0.55) == 0
        assert red_fraction(annotated, 0.05, 0.6, 0.4, 0.95) == 0, "nothing drawn elsewhere"

        listing = await (await client.get(f"/api/v1/sessions/{session['id']}/snapshots", headers=auth)).json()
        assert [s["id"] for s in listing["snapshots"]] == [stored["id"]]

        await agent.send({"type": "end", "outcome": "resolved", "notes": "Cable reseated"})
        assert (await customer.expect("ended"))["outcome"] == "resolved"
        assert (await agent.expect("ended"))["status"] == "ended"
    finally:
        await customer.close()
        await agent.close()

    record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert record["status"] == "ended" and record["outcome"]["outcome"] == "resolved"
    types = [e["type"] for e in record["events"]]
    assert types[0] == "session.created"
    for expected in ("participant.joined", "media.started", "snapshot.captured", "session.ended",
                     "participant.left"):
        assert expected in types, types
    assert types.index("snapshot.captured") < types.index("session.ended")
    joined = [e["data"]["role"] for e in record["events"] if e["type"] == "participant.joined"]
    assert joined == ["agent", "customer"]
    assert record["duration_seconds"] > 0


async def test_customer_reconnects_and_agent_keeps_receiving(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    first = FakeParticipant(client, token_of(session["customer_url"]))
    second = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        assert (await agent.media("camera"))["state"] == "none"
        await agent.negotiate(receive=True)
        await first.join()
        await first.negotiate(send=MarkerTrack())
        track = await agent.track()
        await first_frame(track)

        # The phone drops off the network; the same link brings it back into the same session.
        await first.close()
        assert (await agent.media("camera"))["state"] == "live"
        assert (await agent.media("camera"))["state"] == "none"
        await second.join()
        await second.negotiate(send=MarkerTrack(320, 240))
        media = await agent.media("camera", "live")
        assert (media["width"], media["height"]) == (320, 240)
        # Same agent connection, same track: frames of the new size arrive without renegotiating.
        async with asyncio.timeout(15):
            while (await first_frame(track)).shape[:2] != (240, 320):
                pass
    finally:
        await second.close()
        await agent.close()
    record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    customer_joins = [e["data"] for e in record["events"]
                      if e["type"] == "participant.joined" and e["data"]["role"] == "customer"]
    assert [j["rejoin"] for j in customer_joins] == [False, True]
    assert record["status"] == "live"


async def test_a_new_picture_size_is_told_but_is_no_new_start(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    """Phones change resolution as bandwidth estimation ramps up: staff hear of every size, the timeline
    keeps one media.started for the stream."""
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await customer.join()
        camera = MarkerTrack(320, 240)
        await customer.negotiate(send=camera)
        first = await agent.media("camera", "live")
        camera.image = marker_image(640, 480)
        second = await agent.media("camera", "live")
        assert [(m["width"], m["height"]) for m in (first, second)] == [(320, 240), (640, 480)]
    finally:
        await customer.close()
        await agent.close()
    record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    media = [(e["type"], e["data"]["source"], e["data"].get("width")) for e in record["events"]
             if e["type"].startswith("media.")]
    assert media == [("media.started", "camera", 320), ("media.stopped", "camera", None)]


async def test_a_freeze_ends_when_the_frozen_camera_goes(client: TestClient, create_session: Create) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await agent.negotiate(receive=True)
        await customer.join()
        await customer.negotiate(send=MarkerTrack())
        await agent.media("camera", "live")
        await agent.send({"type": "freeze", "frozen": True})
        assert (await agent.expect("frozen"))["frozen"] is True
        assert (await customer.expect("frozen"))["frozen"] is True
        held = await client.get(f"/s/{token_of(session['customer_url'])}/frozen.png")
        assert held.status == 200 and MARKER_ID in detect_markers(decode_png(await held.read()))
        await customer.close()
        assert (await agent.expect("frozen"))["frozen"] is False
        assert (await client.get(f"/a/{token_of(session['agent_url'])}/frozen.png")).status == 404
    finally:
        await agent.close()


async def test_viewers_get_the_phones_own_resolution_and_a_late_one_a_picture_within_a_second(
    client: TestClient, create_session: Create, auth: dict[str, str]
) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    response = await client.post(f"/api/v1/sessions/{session['id']}/participants",
                                 json={"role": "expert", "name": "Tier 3"}, headers=auth)
    expert = FakeParticipant(client, token_of((await response.json())["url"]))
    try:
        await agent.join()
        await agent.negotiate(receive=True)
        await customer.join()
        await customer.negotiate(send=MarkerTrack(1280, 720))
        image = await first_frame(await agent.track())
        assert image.shape[:2] == (720, 1280), "forwarded at the resolution the phone sent"
        await asyncio.sleep(2)  # the phone sends no keyframe by itself meanwhile

        await expert.join()
        started = asyncio.get_running_loop().time()
        await expert.negotiate(receive=True)
        late = await first_frame(await expert.track(), timeout=5)
        waited = asyncio.get_running_loop().time() - started
        assert late.shape[:2] == (720, 1280) and MARKER_ID in detect_markers(late)
        assert waited < 1.0, f"the late viewer waited {waited:.2f} s for a picture"
    finally:
        await expert.close()
        await customer.close()
        await agent.close()
