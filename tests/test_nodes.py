"""Two real `visassist serve` nodes on one PostgreSQL (and one shared data directory): sessions are
placed on the least-loaded node and work end to end in Chromium there, any node's API ends them at
once, webhooks go out once, a drained node takes nothing new, and a killed node's sessions move."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import BrowserContext, expect

from tests.browser import (
    COUNT_FRAMES,
    frames_in,
    join_as_customer,
    new_session,
    open_console,
    wait_playing,
)
from tests.test_restart import VISASSIST, server
from tests.utils import free_port


def cli(url: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([VISASSIST, *args, "--database-url", url], capture_output=True, text=True,
                            check=True, input=stdin)
    return result.stdout.strip()


@dataclass
class Received:
    deliveries: list[dict[str, str]] = field(default_factory=list)
    more: asyncio.Event = field(default_factory=asyncio.Event)

    async def at_least(self, count: int, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while len(self.deliveries) < count:
                await self.more.wait()
                self.more.clear()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, Received]]:
    """A webhook receiver on loopback, keeping each delivery's headers."""
    received = Received()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        received.deliveries.append({k: request.headers[k] for k in (
            "Visassist-Event-Id", "Visassist-Event-Type", "Visassist-Signature")})
        received.more.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


def node(tmp_path: Path, database: str, name: str, port: int,
         stop: signal.Signals = signal.SIGTERM) -> contextlib.AbstractAsyncContextManager[str]:
    return server(tmp_path / "data", port, stop, args=[
        "--database-url", database, "--node-id", name, "--node-url", f"http://127.0.0.1:{port}"])


@contextlib.asynccontextmanager
async def signing_in(base: str, email: str,
                     password: str) -> AsyncIterator[tuple[aiohttp.ClientSession, int]]:
    """A browser-like client that signed in through a node's form (its own CSRF cookie), and the
    sign-in's status."""
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get("/login") as form:
            found = re.search(r'name="csrf" value="([^"]+)"', await form.text())
            assert found is not None
        async with browser.post("/login", data={"email": email, "password": password, "csrf": found[1]},
                                allow_redirects=False) as response:
            status = response.status
        yield browser, status


async def sign_in(base: str, email: str, password: str) -> int:
    async with signing_in(base, email, password) as (_, status):
        return status


async def board_updates(stream: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The `data:` of each server-sent event of the home board's stream."""
    async for line in stream.content:
        if line.startswith(b"data: "):
            yield line[6:].decode()


async def events_of(api: aiohttp.ClientSession, session_id: str) -> list[dict[str, Any]]:
    async with api.get(f"/api/v1/sessions/{session_id}") as response:
        return list((await response.json())["events"])


async def test_two_nodes_share_the_work_and_the_record(tmp_path: Path, postgres_url: str,
                                                      phone: BrowserContext, desktop: BrowserContext) -> None:
    cli(postgres_url, "db", "upgrade")
    key = cli(postgres_url, "api-key", "create", "--name", "nodes test")
    port_a, port_b = free_port(), free_port()
    async with receiver() as (hook_url, received):
        cli(postgres_url, "webhook", "add", "--url", hook_url, "--events",
            "session.created,session.ended")
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(node(tmp_path, postgres_url, "a", port_a))
            b = await stack.enter_async_context(node(tmp_path, postgres_url, "b", port_b))
            auth = {"Authorization": f"Bearer {key}"}
            api_a = await stack.enter_async_context(aiohttp.ClientSession(base_url=a, headers=auth))
            api_b = await stack.enter_async_context(aiohttp.ClientSession(base_url=b, headers=auth))
            await asyncio.sleep(1.2)  # both have beaten at least once
            sessions = [await new_session(api_a, ticket_id=f"ZD-{i}") for i in range(4)]
            homes = Counter(s["customer_url"].split("/s/")[0] for s in sessions)
            assert homes == {a: 2, b: 2}, f"spread evenly over both nodes: {homes}"
            on_b = next(s for s in sessions if s["customer_url"].startswith(b))

            # Opened through node A, the link is sent on to node B, where the call happens.
            wrong_door = on_b["agent_url"].replace(b, a)
            agent = await open_console(desktop, wrong_door)
            assert agent.url.startswith(b), agent.url
            customer = await join_as_customer(phone, on_b["customer_url"])
            await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
            await wait_playing(agent, "remote-video")
            await agent.evaluate(COUNT_FRAMES, "remote-video")
            assert await frames_in(agent, 1) >= 15, "video flows on node B"

            # Ended through node A's API: the call on node B ends at once.
            async with api_a.post(f"/api/v1/sessions/{on_b['id']}/end",
                                  json={"outcome": "resolved", "notes": "fixed"}) as response:
                assert response.status == 200, await response.text()
            await expect(customer.get_by_text("ended", exact=False).first).to_be_visible(timeout=3_000)
            record = await events_of(api_b, on_b["id"])
            assert [e["type"] for e in record].count("session.ended") == 1

            # One database: a retried create is recognised on the other node, and failed sign-ins
            # count on every node.
            twice = {"Idempotency-Key": "create-once"}
            async with api_a.post("/api/v1/sessions", json={"ticket_id": "ZD-I", "tier": 2},
                                  headers=twice) as response:
                once = await response.json()
            async with api_b.post("/api/v1/sessions", json={"ticket_id": "ZD-I", "tier": 2},
                                  headers=twice) as response:
                assert response.headers.get("Idempotent-Replayed") == "true"
                assert (await response.json())["id"] == once["id"]
            sessions.append(once)
            cli(postgres_url, "user", "create", "--email", "lead@example.com", "--name", "Lead", "--role",
                "supervisor", "--password-stdin", stdin="a long enough password\n")
            statuses = [await sign_in(base, "lead@example.com", "wrong password") for base in (a, b) * 3]
            assert statuses == [401] * 5 + [429], statuses

            # Staff home on node A shows, at once, what happens on node B (the relay wakes its board).
            cli(postgres_url, "user", "create", "--email", "sup@example.com", "--name", "Sup", "--role",
                "supervisor", "--password-stdin", stdin="another long password\n")
            async with signing_in(a, "sup@example.com", "another long password") as (staff, status):
                assert status == 303, status
                async with staff.get("/home/events") as stream:
                    first = await anext(board_updates(stream))
                    assert "ZD-B-HOME" not in first
                    async with api_b.post("/api/v1/sessions", json={"ticket_id": "ZD-B-HOME",
                                                                    "tier": 2}) as response:
                        sessions.append(await response.json())
                    async with asyncio.timeout(5):
                        async for update in board_updates(stream):
                            if "ZD-B-HOME" in update:
                                break

            # A drained node takes no new sessions.
            cli(postgres_url, "node", "drain", "a")
            later = [await new_session(api_a, ticket_id=f"ZD-D{i}") for i in range(3)]
            assert all(s["customer_url"].startswith(b) for s in later), "all placed on node B"
            listing = cli(postgres_url, "node", "list")
            assert "\tdraining\t" in listing and "\tactive\t" in listing, listing

            expected = 1 + len(sessions) + len(later)  # session.created each, and one session.ended
            await received.at_least(expected, 15)
            await asyncio.sleep(2)  # time for any duplicate to arrive
    ids = Counter(r["Visassist-Event-Id"] for r in received.deliveries)
    assert len(received.deliveries) == expected and max(ids.values()) == 1, f"each webhook once: {ids}"
    assert Counter(r["Visassist-Event-Type"] for r in received.deliveries)["session.ended"] == 1


async def test_a_killed_nodes_call_moves_to_the_other_node(tmp_path: Path, postgres_url: str,
                                                          phone: BrowserContext,
                                                          desktop: BrowserContext) -> None:
    cli(postgres_url, "db", "upgrade")
    key = cli(postgres_url, "api-key", "create", "--name", "nodes test")
    auth = {"Authorization": f"Bearer {key}"}
    port_a, port_b = free_port(), free_port()
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(node(tmp_path, postgres_url, "a", port_a))
        api = await stack.enter_async_context(aiohttp.ClientSession(base_url=a, headers=auth))
        doomed = contextlib.AsyncExitStack()
        b = await doomed.enter_async_context(node(tmp_path, postgres_url, "b", port_b, signal.SIGKILL))
        await asyncio.sleep(1.2)
        first = await new_session(api, ticket_id="ZD-A")
        session = await new_session(api, ticket_id="ZD-B")
        assert first["customer_url"].startswith(a) and session["customer_url"].startswith(b)
        agent = await open_console(desktop, session["agent_url"])
        customer = await join_as_customer(phone, session["customer_url"])
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        await wait_playing(agent, "remote-video")

        await doomed.aclose()  # SIGKILL: no goodbye to anyone
        killed = asyncio.get_running_loop().time()
        for page in (agent, customer):
            await page.wait_for_url(f"{a}/**", timeout=30_000)
        await expect(customer.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        await wait_playing(agent, "remote-video")
        await agent.evaluate(COUNT_FRAMES, "remote-video")
        assert await frames_in(agent, 1) >= 15, "video flows on node A"
        seconds = asyncio.get_running_loop().time() - killed - 1
        print(f"\nnode killed: the call's video was back on the other node {seconds:.1f} s later")

        moved = [e for e in await events_of(api, session["id"]) if e["type"] == "session.moved"]
        assert [(e["data"]["from_node"], e["data"]["to_node"]) for e in moved] == [("b", "a")]
        listing = cli(postgres_url, "node", "list")
        assert any(line.startswith("b\t") and "\tdead\t" in line for line in listing.splitlines()), listing
