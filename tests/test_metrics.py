"""/metrics after real sessions: the figures match what happened, and only who may read them can;
JSON logs carry the session and participant of a join as fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import BrowserContext, Playwright, expect
from prometheus_client.parser import text_string_to_metric_families

from tests.browser import join_as_customer, launch_options, new_session, open_console, wait_playing
from tests.test_restart import create_key, server
from tests.utils import FakeParticipant, free_port, token_of
from visassist.app import create_app
from visassist.config import Settings
from visassist.context import AppContext

ClientFactory = Callable[..., Awaitable[TestClient]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def scrape(http: aiohttp.ClientSession | TestClient, path: str = "/metrics") -> Samples:
    async with http.get(path) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        return parse(await response.text())


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 (polling what a server exposes)
            await asyncio.sleep(0.1)


async def test_metrics_count_what_happened_in_real_browsers(
    server: TestServer, api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext,
    playwright: Playwright,
) -> None:
    """Two sessions: in one the customer's video reaches the agent, who takes a snapshot; in the
    other the customer blocks the camera. A webhook receiver that is down fails its deliveries."""
    node = server.app[AppContext.KEY].metrics.node
    async with api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/down",
                                                  "events": ["session.created"]}) as response:
        assert response.status == 201
    before = await scrape(api)
    assert value(before, "visassist_live_sessions", node=node) == 0

    working, blocked = await new_session(api), await new_session(api)
    agent = await open_console(desktop, working["agent_url"])
    await join_as_customer(phone, working["customer_url"])
    await wait_playing(agent, "remote-video")
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> li")).to_have_count(1)

    refusing = await playwright.chromium.launch(**launch_options(None, grant_camera=False))
    try:
        page = await (await refusing.new_context(**playwright.devices["Pixel 7"])).new_page()
        await page.goto(blocked["customer_url"])
        await page.get_by_test_id("join").tap()
        await expect(page.get_by_role("alert")).to_contain_text("Camera access is off")

        async def refused_counted() -> bool:
            return value(await scrape(api), "visassist_joins_total", outcome="camera_refused") == 1
        await until(refused_counted)

        samples = await scrape(api)
        assert value(samples, "visassist_joins_total", node=node, outcome="connected", rejoin="false") == 1
        assert value(samples, "visassist_joins_total", outcome="camera_refused", cause="") == 1
        assert value(samples, "visassist_joins_total", outcome="failed") == 0
        assert value(samples, "visassist_join_first_frame_seconds_count", node=node) == 1
        assert 0 < value(samples, "visassist_join_first_frame_seconds_sum") < 15
        assert value(samples, "visassist_snapshot_seconds_count", source="camera") == 1
        assert 0 < value(samples, "visassist_snapshot_seconds_sum") < 10
        assert value(samples, "visassist_live_sessions", node=node) == 2
        assert value(samples, "visassist_participants", role="customer") == 2
        assert value(samples, "visassist_participants", role="agent") == 1
        assert value(samples, "visassist_max_live_sessions") >= 2
        assert value(samples, "visassist_thread_cpu_seconds_total", thread="loop") > 0
        assert value(samples, "process_cpu_seconds_total") > 0
        # Two session.created webhooks to a port nobody listens on: attempted, failed, still waiting.
        assert value(samples, "visassist_webhook_attempts_total", result="failed") >= 2
        assert value(samples, "visassist_webhook_attempts_total", result="delivered") == 0
        assert value(samples, "visassist_webhook_backlog", node=node) == 2
        assert value(samples, "visassist_webhook_backlog_oldest_seconds") > 0
    finally:
        await refusing.close()

    async with api.post(f"/api/v1/sessions/{working['id']}/end", json={"outcome": "resolved"}) as response:
        assert response.status == 200

    async def no_room_left() -> bool:  # one session ended, the other's only customer gone
        return value(await scrape(api), "visassist_live_sessions") == 0
    await until(no_room_left)
    after = await scrape(api)
    assert value(after, "visassist_participants") == 0
    # Leaving after an outcome changes no outcome.
    assert value(after, "visassist_joins_total") == 2


async def test_a_customer_who_leaves_before_any_picture_is_a_failed_join(
    client: TestClient, create_session: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await customer.join()
    await customer.close()

    async def counted() -> bool:
        return value(await scrape(client), "visassist_joins_total", outcome="failed") == 1
    await until(counted)
    samples = await scrape(client)
    assert value(samples, "visassist_joins_total", outcome="failed", cause="disconnected") == 1
    assert value(samples, "visassist_join_first_frame_seconds_count") == 0

    # A link that is not valid is refused before it joins: counted by its code.
    stranger = FakeParticipant(client, "not-a-token")
    with pytest.raises(AssertionError, match="invalid_token"):
        await stranger.join()
    await stranger.close()
    assert value(await scrape(client), "visassist_sockets_refused_total", code="invalid_token") == 1


async def test_metrics_are_for_this_host_unless_a_token_is_set(aiohttp_client: ClientFactory,
                                                               tmp_path: Path) -> None:
    local = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "a")))
    assert (await local.get("/metrics")).status == 200
    # Through a reverse proxy on this host every request comes from loopback: not local.
    proxied = await local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert proxied.status == 403
    assert (await proxied.json())["error"]["code"] == "forbidden"

    guarded = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "b", metrics_token="t0ken")))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = await guarded.get("/metrics", headers=headers)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await refused.json())["error"]["code"] == "unauthorized"
    allowed = await guarded.get("/metrics", headers={"Authorization": "Bearer t0ken",
                                                     "X-Forwarded-For": "203.0.113.7"})
    assert allowed.status == 200 and "visassist_live_sessions" in await allowed.text()


async def test_json_logs_carry_the_session_and_participant_of_a_join(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    key = create_key(data_dir)
    async with server(data_dir, port, args=["--log-format", "json"]) as base, \
            aiohttp.ClientSession(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
        session = await new_session(api)
        customer = FakeParticipant(api, token_of(session["customer_url"]))
        welcome = await customer.join()
        await customer.close()
        log_path = tmp_path / f"serve-{port}.log"

        async def logged() -> bool:
            return "left session" in log_path.read_text()
        await until(logged)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    joined = [line for line in lines
              if line["message"].startswith("customer ") and " joined " in line["message"]]
    assert len(joined) == 1, lines
    assert joined[0]["session_id"] == session["id"]
    assert joined[0]["participant_id"] == welcome["participant"]["id"]
    assert {"time", "level", "logger"} <= set(joined[0]) and joined[0]["level"] == "INFO"
    left = next(line for line in lines if "left session" in line["message"])
    assert left["participant_id"] == welcome["participant"]["id"], "the socket's ids, to its last line"
    # Lines about no participant have no ids.
    assert all("session_id" not in line for line in lines if "no user accounts" in line["message"])
