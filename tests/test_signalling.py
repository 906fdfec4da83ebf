"""The signalling socket: handshake, token rules, role rules and every kind of bad message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from tests.utils import CHROMIUM_OFFER, Clock, FakeParticipant, token_of

Create = Callable[..., Awaitable[dict[str, Any]]]


async def refused(client: TestClient, hello: Any) -> dict[str, Any]:
    """Send one first message and return the error the server answers with before closing."""
    ws = await client.ws_connect("/ws")
    if isinstance(hello, bytes):
        await ws.send_bytes(hello)
    elif isinstance(hello, str):
        await ws.send_str(hello)
    else:
        await ws.send_json(hello)
    message = await ws.receive(timeout=5)
    assert message.type == WSMsgType.TEXT
    error = message.json()
    assert error["type"] == "error" and error["message"]
    closing = await ws.receive(timeout=5)
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    return dict(error)


@pytest.mark.parametrize(("hello", "code"), [
    ({"type": "hello", "protocol": 1, "token": "x" * 43}, "invalid_token"),
    ({"type": "hello", "protocol": 1, "token": "short"}, "invalid_token"),
    ({"type": "hello", "protocol": 99, "token": "x" * 43}, "unsupported_protocol"),
    ({"type": "offer", "sdp": "v=0"}, "not_authenticated"),
    ({"type": "hello", "protocol": 1}, "invalid_message"),
    ({"type": "bogus"}, "invalid_message"),
    ("not json", "invalid_message"),
    ("[1, 2]", "invalid_message"),
    (b"\x00\x01", "invalid_message"),
])
async def test_bad_hello_is_refused_with_a_code(client: TestClient, hello: Any, code: str) -> None:
    assert (await refused(client, hello))["code"] == code


async def test_welcome_tells_role_and_session(client: TestClient, create_session: Create) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        welcome = await customer.join()
        assert welcome["protocol"] == 1
        assert welcome["participant"]["role"] == "customer"
        assert welcome["participant"]["name"] == "Ana"
        assert welcome["session"]["id"] == session["id"]
        assert welcome["session"]["status"] == "live"
        presence = await customer.expect("presence")
        connected = {p["role"]: p["connected"] for p in presence["participants"]}
        assert connected == {"customer": True, "agent": False}
    finally:
        await customer.close()


async def test_customer_token_cannot_act_as_agent(client: TestClient, create_session: Create,
                                                  auth: dict[str, str]) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await customer.join()
        await customer.send({"type": "end", "outcome": "resolved"})
        error = await customer.expect("error")
        assert (error["code"], error["ref"]) == ("forbidden", "end")
        await customer.send({"type": "snapshot", "request_id": "r1", "annotations": []})
        assert (await customer.expect("error"))["code"] == "forbidden"
    finally:
        await customer.close()
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert body["status"] == "live" and body["snapshots"] == []
    # Nor can a customer link open the console.
    assert (await client.get(f"/a/{token_of(session['customer_url'])}")).status == 404


async def test_tokens_are_scoped_to_their_own_session(client: TestClient, create_session: Create) -> None:
    one, two = await create_session(), await create_session(ticket_id="OTHER-2")
    agent = FakeParticipant(client, token_of(one["agent_url"]))
    try:
        welcome = await agent.join()
        assert welcome["session"]["id"] == one["id"] != two["id"]
        assert welcome["session"]["ticket_id"] == "ZD-1042"
    finally:
        await agent.close()
    response = await client.get(f"/a/{token_of(one['agent_url'])}/snapshots/snp_x/raw.png")
    assert response.status == 404


@pytest.mark.parametrize(("message", "code"), [
    ({"type": "hello", "protocol": 1, "token": "x" * 43}, "invalid_message"),
    ({"type": "ice", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"},
     "invalid_message"),
    ({"type": "snapshot", "request_id": "r", "annotations": []}, "no_video"),
    ({"type": "snapshot", "request_id": "r", "annotations": [{"kind": "arrow", "points": [[0, 0]]}]},
     "invalid_message"),
    ({"type": "snapshot", "request_id": "r", "annotations": [{"kind": "blob", "points": [[0, 0]]}]},
     "invalid_message"),
    ({"type": "snapshot", "request_id": "r",
      "annotations": [{"kind": "arrow", "points": [[0, 0], [2, 0.5]]}]}, "invalid_message"),
    ({"type": "snapshot", "request_id": "r",
      "annotations": [{"kind": "text", "points": [[0.1, 0.1]], "text": "x", "color": "red"}]},
     "invalid_message"),
    ({"type": "end", "outcome": "fixed"}, "invalid_message"),
    ({"type": "offer", "sdp": "this is not sdp"}, "media_failed"),
    ({"type": "offer", "sdp": "v=0\r\n" * 20_000}, "invalid_message"),
])
async def test_bad_messages_get_an_error_and_the_socket_stays_open(
    client: TestClient, create_session: Create, auth: dict[str, str], message: dict[str, Any], code: str
) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        await agent.join()
        await agent.send(message)
        error = await agent.expect("error")
        assert error["code"] == code, error
        # Still in the session: a good message afterwards works.
        await agent.send({"type": "end", "outcome": "no_show"})
        assert (await agent.expect("ended"))["outcome"] == "no_show"
    finally:
        await agent.close()
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert body["snapshots"] == []


@pytest.mark.parametrize("frame", [
    "x" * (256 * 1024 + 1),  # just over the limit
    '{"type": "chat", "text": "' + "x" * (2 * 1024 * 1024) + '"}',  # 2 MiB
    "y" * (16 * 1024 * 1024),  # 16 MiB: read whole by aiohttp, still answered
    b"\x00\x01binary",
    b'{"type": "chat", "text": "a binary frame of good JSON"}',
    b'{"type": "chat", "text": "\xff\xfe not UTF-8"}',  # sent as a text frame below
    "[" * 100_000 + "]" * 100_000,
])
async def test_oversize_binary_and_undecodable_frames_are_answered(
    client: TestClient, create_session: Create, frame: str | bytes
) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        await agent.join()
        assert agent.ws is not None
        if isinstance(frame, str):
            await agent.ws.send_str(frame)
        elif b"\xff" in frame:
            # aiohttp's client refuses to send invalid UTF-8 as text; write the frame itself.
            await agent.ws._writer.send_frame(frame, WSMsgType.TEXT)
        else:
            await agent.ws.send_bytes(frame)
        error = await agent.expect("error")
        assert error["code"] == "invalid_message", error
        await agent.send({"type": "chat", "text": "still here"})
        assert (await agent.expect("chat"))["message"]["text"] == "still here"
    finally:
        await agent.close()


async def test_a_frame_over_the_memory_ceiling_closes_with_1009(aiohttp_client: Any, settings: Any) -> None:
    """The one bad input that closes the socket: aiohttp refuses it before reading it (documented)."""
    from dataclasses import replace

    from tests.utils import start_app

    client, auth = await start_app(aiohttp_client, replace(settings, max_ws_frame_bytes=1024 * 1024))
    response = await client.post("/api/v1/sessions", json={"ticket_id": "T-1", "tier": 2}, headers=auth)
    agent = FakeParticipant(client, token_of((await response.json())["agent_url"]))
    try:
        await agent.join()
        assert agent.ws is not None
        await agent.ws.send_str("x" * (1024 * 1024))
        async with asyncio.timeout(5):
            while not agent.ws.closed:  # noqa: ASYNC110 (the reader task sees the close)
                await asyncio.sleep(0.01)
        assert agent.ws.close_code == 1009
    finally:
        await agent.close()


async def test_reopened_link_replaces_the_old_socket(client: TestClient, create_session: Create,
                                                      auth: dict[str, str]) -> None:
    session = await create_session()
    first = FakeParticipant(client, token_of(session["agent_url"]))
    second = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        await first.join()
        await second.join()
        assert (await first.expect("error"))["code"] == "replaced"
        await second.send({"type": "end", "outcome": "resolved"})
        await second.expect("ended")
    finally:
        await first.close()
        await second.close()
    events = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json())["events"]
    agent_events = [(e["type"], e["data"].get("rejoin"), e["data"].get("reason")) for e in events
                    if e["type"].startswith("participant.")]
    assert agent_events == [
        ("participant.joined", False, None),
        ("participant.left", None, "replaced"),
        ("participant.joined", True, None),
        ("participant.left", None, "ended"),
    ]


async def test_ended_and_expired_sessions_refuse_sockets(client: TestClient, create_session: Create,
                                                         auth: dict[str, str], clock: Clock) -> None:
    ended = await create_session()
    await client.post(f"/api/v1/sessions/{ended['id']}/end", json={"outcome": "no_show"}, headers=auth)
    hello = {"type": "hello", "protocol": 1, "token": token_of(ended["customer_url"])}
    assert (await refused(client, hello))["code"] == "session_ended"

    expired = await create_session()
    clock.advance(seconds=3601)
    hello = {"type": "hello", "protocol": 1, "token": token_of(expired["agent_url"])}
    assert (await refused(client, hello))["code"] == "session_expired"


async def test_api_end_tells_everyone_connected(client: TestClient, create_session: Create,
                                                auth: dict[str, str]) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        await customer.join()
        await agent.join()
        response = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=auth,
                                     json={"outcome": "follow_up", "notes": "Ship a new router"})
        assert response.status == 200
        for participant in (customer, agent):
            ended = await participant.expect("ended")
            assert (ended["status"], ended["outcome"]) == ("ended", "follow_up")
    finally:
        await customer.close()
        await agent.close()


async def test_live_session_expiry_disconnects_with_a_reason(client: TestClient, create_session: Create,
                                                             auth: dict[str, str], clock: Clock) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await customer.join()
        clock.advance(seconds=3601)
        assert (await customer.expect("ended", timeout=5))["status"] == "expired"
    finally:
        await customer.close()
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert body["status"] == "expired"
    assert body["events"][-1]["type"] in ("session.expired", "participant.left")


async def test_socket_without_hello_times_out_politely(client: TestClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from visassist.signalling import handler

    monkeypatch.setattr(handler, "HELLO_TIMEOUT", 0.2)
    ws = await client.ws_connect("/ws")
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.json()["code"] == "not_authenticated"
    await ws.close()


async def test_a_server_failure_is_an_error_message_not_a_dropped_call(
    client: TestClient, create_session: Create, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from visassist.context import AppContext

    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    store = client.app[AppContext.KEY].store

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    try:
        await agent.join()
        monkeypatch.setattr(store, "end_session", broken)
        await agent.send({"type": "end", "outcome": "resolved"})
        error = await agent.expect("error")
        assert (error["code"], error["ref"]) == ("internal_error", "end")
        assert "disk on fire" not in error["message"]
        monkeypatch.undo()
        await agent.send({"type": "end", "outcome": "resolved"})
        assert (await agent.expect("ended"))["outcome"] == "resolved"
    finally:
        await agent.close()


async def test_a_full_node_refuses_new_live_sessions(aiohttp_client: Any, tmp_path: Any) -> None:
    from dataclasses import replace

    from tests.conftest import Settings
    from visassist.app import create_app
    from visassist.context import AppContext
    from visassist.tokens import digest, new_api_key, new_id

    settings = replace(Settings(data_dir=tmp_path), ice_addresses=("127.0.0.1",), max_live_sessions=1)
    client = await aiohttp_client(create_app(settings))
    key = new_api_key()
    await client.app[AppContext.KEY].store.create_api_key(new_id("key"), "t", digest(key))
    links = []
    for ticket in ("A-1", "A-2"):
        response = await client.post("/api/v1/sessions", json={"ticket_id": ticket, "tier": 2},
                                     headers={"Authorization": f"Bearer {key}"})
        links.append(token_of((await response.json())["agent_url"]))
    first = FakeParticipant(client, links[0])
    try:
        await first.join()
        hello = {"type": "hello", "protocol": 1, "token": links[1]}
        assert (await refused(client, hello))["code"] == "server_busy"
    finally:
        await first.close()
    # Once the first room is empty the node has room again.
    async with asyncio.timeout(5):
        while client.app[AppContext.KEY].hub.rooms:  # noqa: ASYNC110 (polling the server's state)
            await asyncio.sleep(0.01)
    second = FakeParticipant(client, links[1])
    try:
        await second.join()
    finally:
        await second.close()


async def test_a_dropped_socket_is_a_recorded_leave(client: TestClient, create_session: Create,
                                                    auth: dict[str, str]) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await customer.join()
        await customer.close()
        while True:
            presence = await agent.expect("presence")
            if not next(p for p in presence["participants"] if p["role"] == "customer")["connected"]:
                break
    finally:
        await agent.close()
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    left = [e["data"] for e in body["events"] if e["type"] == "participant.left"]
    assert {"role": "customer", "reason": "disconnected"}.items() <= left[0].items()


@pytest.mark.parametrize(("role", "message"), [
    ("customer", {"type": "freeze", "frozen": True}),
    ("customer", {"type": "invite", "role": "expert"}),
    ("customer", {"type": "camera", "torch": True}),
    ("customer", {"type": "quality.request", "profile": "low"}),
    ("customer", {"type": "annotations", "shapes": []}),
    ("customer", {"type": "pointer", "point": [0.5, 0.5]}),
    ("customer", {"type": "photo.request"}),
    ("customer", {"type": "watch", "source": "screen"}),
    ("customer", {"type": "handover", "to": "par_x"}),
    ("agent", {"type": "camera.state", "cameras": 1}),
    ("agent", {"type": "quality", "fps": 30}),
    ("supervisor", {"type": "chat", "text": "psst"}),
    ("supervisor", {"type": "annotations", "shapes": []}),
    ("supervisor", {"type": "snapshot", "request_id": "r"}),
    ("supervisor", {"type": "end", "outcome": "resolved"}),
    ("supervisor", {"type": "mute", "muted": False}),
])
async def test_each_role_does_only_its_own_part(client: TestClient, create_session: Create,
                                                auth: dict[str, str], role: str,
                                                message: dict[str, Any]) -> None:
    session = await create_session()
    if role == "supervisor":
        response = await client.post(f"/api/v1/sessions/{session['id']}/participants",
                                     json={"role": "supervisor"}, headers=auth)
        url = (await response.json())["url"]
    else:
        url = session[f"{role}_url"]
    participant = FakeParticipant(client, token_of(url))
    try:
        await participant.join()
        await participant.send(message)
        error = await participant.expect("error")
        assert error["code"] == "forbidden" and role in error["message"]
    finally:
        await participant.close()
    events = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json())["events"]
    assert {e["type"] for e in events} <= {"session.created", "participant.invited", "participant.joined",
                                           "participant.left"}


async def test_relayed_tools_reach_the_right_people(client: TestClient, create_session: Create,
                                                    auth: dict[str, str]) -> None:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await customer.join()
        arrow = {"kind": "arrow", "color": "#ff0000", "width": 0.01, "points": [[0.1, 0.1], [0.4, 0.4]]}
        await agent.send({"type": "annotations", "shapes": [arrow]})
        mirrored = await customer.expect("annotations")
        assert mirrored["shapes"] == [arrow] and mirrored["by"] == agent.welcome["participant"]["id"]
        await agent.send({"type": "pointer", "point": [0.5, 0.25]})
        assert (await customer.expect("pointer"))["point"] == [0.5, 0.25]
        await agent.send({"type": "camera", "facing": "user", "zoom": 2})
        assert (await customer.expect("camera")) == {"type": "camera", "facing": "user", "torch": None,
                                                     "zoom": 2.0}
        await customer.send({"type": "camera.state", "cameras": 2, "zoom": 2.0, "zoom_min": 1.0,
                             "zoom_max": 4.0})
        assert (await agent.expect("camera.state"))["state"]["cameras"] == 2
        await agent.send({"type": "photo.request"})
        await customer.expect("photo.requested")
        await agent.send({"type": "freeze", "frozen": True})
        assert (await agent.expect("error"))["code"] == "no_video", "nothing to freeze without video"
        await customer.send({"type": "chat", "text": "hello"})
        for participant in (agent, customer):
            assert (await participant.expect("chat"))["message"]["text"] == "hello"
        await customer.send({"type": "mute", "muted": False})
        presence = await agent.expect("presence")
        while next(p for p in presence["participants"] if p["role"] == "customer")["muted"]:
            presence = await agent.expect("presence")
        await agent.send({"type": "invite", "role": "expert", "name": "Sam"})
        invited = await agent.expect("invited")
        assert invited["participant"]["name"] == "Sam" and "/a/" in invited["url"]
        expert = FakeParticipant(client, token_of(invited["url"]))
        try:
            welcome = await expert.join()
            assert welcome["participant"]["role"] == "expert"
            assert [m["text"] for m in welcome["chat"]] == ["hello"], "the transcript so far"
            # A late joiner sees what is already drawn.
            assert (await expert.expect("annotations"))["shapes"] == [arrow]
            await agent.send({"type": "handover", "to": welcome["participant"]["id"]})
            presence = await expert.expect("presence")
            while not next(p for p in presence["participants"] if p["role"] == "expert")["lead"]:
                presence = await expert.expect("presence")
        finally:
            await expert.close()
        await agent.send({"type": "handover", "to": "par_nobody"})
        assert (await agent.expect("error"))["code"] == "not_found"
    finally:
        await agent.close()
        await customer.close()
    types = [e["type"] for e in (await (await client.get(f"/api/v1/sessions/{session['id']}",
                                                          headers=auth)).json())["events"]]
    for expected in ("camera.changed", "photo.requested", "chat.message", "participant.invited",
                     "session.handover"):
        assert expected in types


async def test_mdns_candidates_do_not_hold_up_the_next_message(client: TestClient,
                                                                create_session: Create) -> None:
    """A console without camera permission hides its addresses behind <uuid>.local names; resolving each
    took aioice up to a second while the socket's next message (a drawing, a snapshot) waited."""
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        await agent.join()
        assert agent.ws is not None
        started = asyncio.get_running_loop().time()
        await agent.send({"type": "offer", "sdp": CHROMIUM_OFFER})
        for index in range(8):
            await agent.send({"type": "ice", "sdpMid": "0", "sdpMLineIndex": 0, "candidate":
                              f"candidate:{index} 1 udp 2113937151 {index:08x}-2bf3-40e9-b8bf-372a3ab25317"
                              f".local {50000 + index} typ host generation 0 ufrag GHEC network-cost 999"})
        await agent.send({"type": "chat", "text": "can you see this?"})
        await agent.expect("answer")
        assert (await agent.expect("chat"))["message"]["text"] == "can you see this?"
        took = asyncio.get_running_loop().time() - started
        print(f"\noffer + 8 mDNS candidates -> chat echoed after {took * 1000:.0f} ms")
        assert took < 0.5, took
    finally:
        await agent.close()
