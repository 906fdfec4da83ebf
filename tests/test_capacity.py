"""A full node refuses clearly (503 on the API, server_busy on the socket, a page for a person) and
never overshoots its limit, even when joins race; it raises its open-file limit and does not spin
when it runs out of them."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType

from tests.utils import FakeParticipant, free_port, start_app, token_of, wait_until_healthy
from visassist.capacity import FileBudget, open_files, raise_open_file_limit
from visassist.config import Settings
from visassist.context import AppContext

ROOT = Path(__file__).resolve().parent.parent


async def hello(client: Any, token: str) -> dict[str, Any]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "protocol": 1, "token": token})
    message = await ws.receive(timeout=10)
    assert message.type == WSMsgType.TEXT
    return dict(message.json()) | {"ws": ws}


async def test_racing_joins_never_overshoot_the_limit(aiohttp_client: Any, settings: Settings) -> None:
    client, auth = await start_app(aiohttp_client, replace(settings, max_live_sessions=3))
    tokens = []
    for index in range(7):
        response = await client.post("/api/v1/sessions", json={"ticket_id": f"T-{index}", "tier": 2},
                                     headers=auth)
        tokens.append(token_of((await response.json())["agent_url"]))
    answers = await asyncio.gather(*(hello(client, token) for token in tokens))
    kinds = sorted(a["type"] if a["type"] == "welcome" else a["code"] for a in answers)
    assert kinds == ["server_busy"] * 4 + ["welcome"] * 3
    assert len(client.app[AppContext.KEY].hub.rooms) == 3
    for answer in answers:
        await answer["ws"].close()


async def test_a_full_node_refuses_new_sessions_and_pages_plainly(
    aiohttp_client: Any, settings: Settings
) -> None:
    client, auth = await start_app(aiohttp_client, replace(settings, max_live_sessions=1))
    body = {"ticket_id": "T-1", "tier": 2}
    live = await (await client.post("/api/v1/sessions", json=body, headers=auth)).json()
    waiting = await (await client.post("/api/v1/sessions", json=body, headers=auth)).json()
    agent = FakeParticipant(client, token_of(live["agent_url"]))
    try:
        await agent.join()
        refused = await client.post("/api/v1/sessions", json=body, headers=auth)
        assert refused.status == 503
        assert (await refused.json())["error"]["code"] == "capacity_exhausted"
        listing = await (await client.get("/api/v1/sessions", headers=auth)).json()
        assert len(listing["sessions"]) == 2, "nothing was stored for the refused session"

        page = await client.get(f"/s/{token_of(waiting['customer_url'])}")
        assert page.status == 503 and page.content_type == "text/html"
        assert "busy" in await page.text()
        assert (await client.get(f"/s/{token_of(live['customer_url'])}")).status == 200, \
            "the live session's own customer still gets in"
    finally:
        await agent.close()


def test_no_descriptors_to_spare_means_no_room() -> None:
    budget = FileBudget()
    assert budget.room_for_session()
    budget.limit = open_files() + 10
    assert not budget.room_for_session()


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_out_of_files_the_server_rests_instead_of_spinning(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"

    def low_limit() -> None:  # in the child: a hard limit it cannot raise
        resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

    with log_path.open("w") as log:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "visassist", "serve", "--port", str(port), "--data-dir",
            str(tmp_path / "data"), "--ice-address", "127.0.0.1",
            cwd=ROOT, stdout=log, stderr=log, preexec_fn=low_limit)
    clients: list[socket.socket] = []
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}")
        for _ in range(150):  # more connections than the server has descriptors for
            clients.append(socket.create_connection(("127.0.0.1", port)))
        await asyncio.sleep(1)
        before, started = _cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(3)
        busy = (_cpu_seconds(server.pid) - before) / (time.monotonic() - started)
        assert busy < 0.25, f"the server spins at {busy:.0%} of a core while out of files"
        for client in clients:
            client.close()
        clients.clear()
        await wait_until_healthy(f"http://127.0.0.1:{port}", 10)  # serving again
    finally:
        for client in clients:
            client.close()
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
    text = log_path.read_text()
    assert text.count("out of open files") <= 2, "logged once, not in a loop"
    assert "Traceback" not in text
