"""A participant whose page stops reading never stalls the room: they are disconnected, the others
carry on, and they can come back with the same link."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import statistics
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.utils import FakeParticipant, token_of
from visassist.signalling import room

Create = Callable[..., Awaitable[dict[str, Any]]]

TCP_CLOSE = 7  # linux/tcp_states.h: what a socket that got a reset is left in


class DeafClient:
    """A raw WebSocket client that says hello and then never reads another byte, with a tiny receive
    buffer: the server's writes back up at once, as behind a frozen tab or a dead network path."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)

    async def join(self, token: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, self.address)
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(self.sock, (
            f"GET /ws HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(self.sock, 1)  # byte by byte: nothing past the headers
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = f'{{"type": "hello", "protocol": 1, "token": "{token}"}}'.encode()
        mask = os.urandom(4)
        frame = struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask  # FIN + text, masked, < 126
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        await loop.sock_sendall(self.sock, frame)

    def reset(self) -> bool:
        """Whether the server reset the connection (read from the kernel, without reading data)."""
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE

    def close(self) -> None:
        self.sock.close()


def big_drawing(seed: int) -> list[dict[str, Any]]:
    """About 140 KB of JSON: three long freehand strokes."""
    return [{"kind": "freehand", "points": [[((seed + i) % 997) / 997, (i % 991) / 991]
                                           for i in range(2000)]} for _ in range(3)]


async def presence_of(watcher: FakeParticipant, role: str, connected: bool, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            presence = await watcher.expect("presence")
            if any(p["role"] == role and p["connected"] == connected for p in presence["participants"]):
                return


async def supervisor_connected(client: TestClient, session_id: str, auth: dict[str, str],
                               connected: bool, timeout: float) -> float:
    """Wait until the session's record (what the API shows) has the supervisor (dis)connected; when."""
    async with asyncio.timeout(timeout):
        while True:
            body = await (await client.get(f"/api/v1/sessions/{session_id}", headers=auth)).json()
            if any(p["role"] == "supervisor" and p["connected"] == connected for p in body["participants"]):
                return asyncio.get_running_loop().time()
            await asyncio.sleep(0.05)


async def chat_round_trips(customer: FakeParticipant, agent: FakeParticipant, rounds: int,
                           pause: float = 0.05) -> list[float]:
    """Customer says something, the agent sees it, answers, the customer sees that: seconds each way."""
    loop = asyncio.get_running_loop()
    seconds = []
    for index in range(rounds):
        for sender, receiver in ((customer, agent), (agent, customer)):
            text = f"{sender.token[:4]} {index}"
            sent = loop.time()
            await sender.send({"type": "chat", "text": text})
            async with asyncio.timeout(10):
                while (await receiver.expect("chat"))["message"]["text"] != text:
                    pass
            seconds.append(loop.time() - sent)
        await asyncio.sleep(pause)
    return seconds


async def three_in_a_room(client: TestClient, create_session: Create, auth: dict[str, str]
                          ) -> tuple[dict[str, Any], FakeParticipant, FakeParticipant, DeafClient, str]:
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await agent.join()
    await customer.join()
    response = await client.post(f"/api/v1/sessions/{session['id']}/participants",
                                 json={"role": "supervisor", "name": "Sue"}, headers=auth)
    supervisor = token_of((await response.json())["url"])
    deaf = DeafClient(str(client.server.host), int(client.server.port or 0))
    await deaf.join(supervisor)
    await presence_of(agent, "supervisor", True, timeout=5)
    return session, agent, customer, deaf, supervisor


async def supervisor_history(client: TestClient, session_id: str, auth: dict[str, str]
                             ) -> list[tuple[str, Any]]:
    body = await (await client.get(f"/api/v1/sessions/{session_id}", headers=auth)).json()
    return [(e["type"], e["data"].get("rejoin", e["data"].get("reason"))) for e in body["events"]
            if e["type"].startswith("participant.") and e["data"].get("role") == "supervisor"
            and e["type"] != "participant.invited"]


async def test_a_supervisor_who_stops_reading_cannot_stall_the_chat(
        client: TestClient, create_session: Create, auth: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    session, agent, customer, deaf, supervisor = await three_in_a_room(client, create_session, auth)
    loop = asyncio.get_running_loop()
    try:
        # The agent draws and draws (about 14 MB for everyone else to take) while the customer and the
        # agent chat. Before the send queue, the first stalled write froze every handler.
        async def draw() -> None:
            for index in range(100):
                await agent.send({"type": "annotations", "shapes": big_drawing(index)})
                await asyncio.sleep(0.05)  # 20 a second, as a live drawing is mirrored

        started = loop.time()
        drawing = asyncio.create_task(draw())
        dropped = asyncio.create_task(supervisor_connected(client, session["id"], auth, False,
                                                           timeout=room.SEND_TIMEOUT + 5))
        seconds = await chat_round_trips(customer, agent, rounds=30, pause=0.2)  # as long as the drawing
        gone_after = await dropped - started
        await drawing
        assert deaf.reset(), "the stuck socket was reset, not left waiting for a graceful close"
        print(f"\nchat with a stuck supervisor in the room: {len(seconds)} messages, median "
              f"{statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms; "
              f"stuck socket dropped {gone_after:.2f} s after the drawing began")
        assert max(seconds) < 1.0, seconds
        assert any("dropping supervisor" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING)

        # The same link works again.
        again = FakeParticipant(client, supervisor)
        try:
            assert (await again.join())["participant"]["role"] == "supervisor"
            await presence_of(agent, "supervisor", True, timeout=5)
        finally:
            await again.close()
    finally:
        deaf.close()
        await customer.close()
        await agent.close()
    assert await supervisor_history(client, session["id"], auth) == [
        ("participant.joined", False), ("participant.left", "disconnected"),
        ("participant.joined", True), ("participant.left", "disconnected")]


async def test_a_stuck_socket_goes_after_the_send_timeout_even_in_a_quiet_room(
        client: TestClient, create_session: Create, auth: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A burst too small to fill the queue: the message the socket will not take times out."""
    monkeypatch.setattr(room, "SEND_TIMEOUT", 1.0)
    session, agent, customer, deaf, _ = await three_in_a_room(client, create_session, auth)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        for index in range(20):  # ~2.8 MB: past what the kernel holds, within the queue's budget
            await agent.send({"type": "annotations", "shapes": big_drawing(index)})
        await presence_of(agent, "supervisor", False, timeout=10)
        print(f"\nquiet room: stuck socket dropped {loop.time() - started:.2f} s after the burst began")
        assert deaf.reset()
        assert any("took over 1 s to send" in r.getMessage() for r in caplog.records)
        # The others never noticed: chat flows.
        assert max(await chat_round_trips(customer, agent, rounds=3)) < 1.0
    finally:
        deaf.close()
        await customer.close()
        await agent.close()
    assert (await supervisor_history(client, session["id"], auth))[-1] == ("participant.left", "disconnected")


async def test_last_words_reach_a_healthy_client_before_the_close(
        client: TestClient, create_session: Create, auth: dict[str, str]) -> None:
    """Queued messages go out, in order, before the socket closes: a long transcript of chat and then
    `ended` all arrive."""
    session = await create_session()
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    try:
        await agent.join()
        await customer.join()
        for index in range(50):
            await agent.send({"type": "chat", "text": f"step {index}"})
        await agent.send({"type": "end", "outcome": "resolved"})
        texts = []
        async with asyncio.timeout(10):
            while (message := await customer.inbox.get())["type"] != "ended":
                if message["type"] == "chat":
                    texts.append(message["message"]["text"])
        assert texts == [f"step {index}" for index in range(50)]
        assert await customer.closed_by_server() == 1000  # and then the close
    finally:
        await customer.close()
        await agent.close()
