"""Webhooks to a real local receiver: signed, at least once, in order per session, through outages
and restarts, every attempt recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.utils import (
    MARKER_ID,
    FakeParticipant,
    decode_png,
    detect_markers,
    free_port,
    snapshot_from_a_live_camera,
    start_app,
    token_of,
)
from visassist import webhooks
from visassist.config import Settings
from visassist.schemas import DeliveryListOut, WebhookCreatedOut

ClientFactory = Callable[..., Awaitable[TestClient]]


@dataclass
class Receiver:
    """A help desk's webhook endpoint that can go down (port closed) and come back."""

    port: int
    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/visassist"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not webhooks.verify(self.secret, body, request.headers.get(webhooks.SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        assert request.headers["Visassist-Event-Id"] == event["id"]
        self.received.append(event)
        return web.Response(status=204)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/visassist", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def wait_for(self, count: int, seconds: float = 15) -> None:
        async with asyncio.timeout(seconds):
            while len({e["id"] for e in self.received}) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port())
    yield receiver
    await receiver.down()


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return replace(settings, webhook_retry_base=0.05, webhook_retry_cap=0.3)



async def register(client: TestClient, auth: dict[str, str], receiver: Receiver,
                   events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": receiver.url}
    if events is not None:
        body["events"] = events
    response = await client.post("/api/v1/webhooks", json=body, headers=auth)
    assert response.status == 201, await response.text()
    created = dict(await response.json())
    assert created["secret"].startswith("whsec_")
    receiver.secret = created["secret"]
    return created


async def test_a_receiver_down_for_a_while_gets_everything_in_order(
    aiohttp_client: ClientFactory, fast_settings: Settings, receiver: Receiver
) -> None:
    client, auth = await start_app(aiohttp_client, fast_settings)
    hook = await register(client, auth, receiver)
    sessions = []
    for ticket in ("ZD-1", "ZD-2"):  # receiver is down: nothing can be delivered
        response = await client.post("/api/v1/sessions", json={"ticket_id": ticket, "tier": 2}, headers=auth)
        sessions.append(await response.json())
    for session in sessions:
        customer = FakeParticipant(client, token_of(session["customer_url"]))
        await customer.join()
        await customer.close()
    for session in sessions:
        await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "resolved",
                                                                          "notes": "fixed"}, headers=auth)
    await asyncio.sleep(0.8)  # several failed attempts, backing off
    listing = await (await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth)).json()
    assert listing["deliveries"] and all(d["status"] == "pending" for d in listing["deliveries"])
    heads = [d for d in listing["deliveries"] if d["attempts"]]
    assert heads and all("ClientConnectorError" in d["attempts"][0]["error"] for d in heads)
    # Only the head of each session's queue is tried: later events wait their turn.
    assert {d["type"] for d in heads} == {"session.created"}

    await receiver.up()
    expected = 2 * 4  # created, joined, left, ended for each session
    await receiver.wait_for(expected)
    assert receiver.bad_signatures == 0
    for session in sessions:
        mine = [e for e in receiver.received if e["session_id"] == session["id"]]
        assert [e["type"] for e in mine] == ["session.created", "participant.joined", "participant.left",
                                             "session.ended"]
        seqs = [int(e["id"].removeprefix("evt_")) for e in mine]
        assert seqs == sorted(seqs), "in order within a session"
        ended = mine[-1]
        assert ended["ticket_id"] == session["ticket_id"]
        assert all(e["record_url"].endswith(f"/tickets/{session['ticket_id']}") for e in mine)
        assert ended["data"]["outcome"] == "resolved" and ended["data"]["notes"] == "fixed"
        assert ended["data"]["duration_seconds"] >= 0 and ended["data"]["snapshots"] == []
    async with asyncio.timeout(5):  # the dispatcher records an answer just after the receiver got it
        while True:
            delivered = await (await client.get(
                f"/api/v1/webhooks/{hook['id']}/deliveries?status=delivered", headers=auth)).json()
            if len(delivered["deliveries"]) >= expected:
                break
            await asyncio.sleep(0.05)
    assert len(delivered["deliveries"]) == expected
    retried = [d for d in delivered["deliveries"] if len(d["attempts"]) > 1]
    assert retried and all(d["attempts"][-1]["status_code"] == 204 for d in retried)


async def test_pending_webhooks_survive_a_restart(aiohttp_client: ClientFactory, fast_settings: Settings,
                                                  receiver: Receiver) -> None:
    client, auth = await start_app(aiohttp_client, fast_settings)
    await register(client, auth, receiver, ["session.created", "session.ended"])
    created = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-9", "tier": 3},
                                       headers=auth)).json()
    await client.post(f"/api/v1/sessions/{created['id']}/end", json={"outcome": "no_show"}, headers=auth)
    await client.close()  # the server stops with both events undelivered

    await receiver.up()
    await start_app(aiohttp_client, fast_settings)  # same data directory
    await receiver.wait_for(2)
    assert [e["type"] for e in receiver.received] == ["session.created", "session.ended"]


async def test_snapshot_webhooks_link_to_the_images(aiohttp_client: ClientFactory, fast_settings: Settings,
                                                    receiver: Receiver) -> None:
    client, auth = await start_app(aiohttp_client, fast_settings)
    await receiver.up()
    await register(client, auth, receiver, ["snapshot.captured", "session.ended"])
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-5", "tier": 2},
                                       headers=auth)).json()
    live = await snapshot_from_a_live_camera(client, session)
    try:
        await live["agent"].send({"type": "end", "outcome": "resolved"})
        await live["agent"].expect("ended")
    finally:
        await live["customer"].close()
        await live["agent"].close()
    await receiver.wait_for(2)
    captured, ended = receiver.received[:2]
    snapshot = captured["data"]["snapshot"]
    assert ended["data"]["snapshots"] == [snapshot]
    assert snapshot["raw_url"].startswith("http://")
    path = snapshot["raw_url"].split("/", 3)[3]
    image = await client.get(f"/{path}", headers=auth)
    assert MARKER_ID in detect_markers(decode_png(await image.read()))



async def test_redeliver_and_remove(aiohttp_client: ClientFactory, fast_settings: Settings,
                                    receiver: Receiver) -> None:
    client, auth = await start_app(aiohttp_client, fast_settings)
    await receiver.up()
    hook = await register(client, auth, receiver, ["session.created"])
    await client.post("/api/v1/sessions", json={"ticket_id": "ZD-3", "tier": 2}, headers=auth)
    await receiver.wait_for(1)
    WebhookCreatedOut.model_validate(hook)
    listing = await (await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=auth)).json()
    DeliveryListOut.model_validate(listing)
    [delivery] = listing["deliveries"]
    response = await client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=auth)
    assert response.status == 202
    async with asyncio.timeout(5):
        while len(receiver.received) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert receiver.received[0]["id"] == receiver.received[1]["id"], "same event id: receivers de-duplicate"

    listed = await (await client.get("/api/v1/webhooks", headers=auth)).json()
    assert "secret" not in listed["webhooks"][0]
    assert (await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth)).status == 204
    await client.post("/api/v1/sessions", json={"ticket_id": "ZD-4", "tier": 2}, headers=auth)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 2, "a removed webhook receives nothing more"
    assert (await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth)).status == 404


@pytest.mark.parametrize("body", [{"url": "ftp://example.com/x"}, {"url": "not a url"},
                                  {"url": "http://127.0.0.1/x", "events": ["session.exploded"]},
                                  {"url": "http://127.0.0.1/x", "events": []}, {}])
async def test_bad_webhook_registrations(client: TestClient, auth: dict[str, str],
                                         body: dict[str, Any]) -> None:
    response = await client.post("/api/v1/webhooks", json=body, headers=auth)
    assert response.status == 422
    assert (await (await client.get("/api/v1/webhooks", headers=auth)).json())["webhooks"] == []


def test_signature_verification_refuses_tampering_and_replays() -> None:
    body = b'{"id":"evt_1"}'
    header = webhooks.sign("whsec_x", body, 1_700_000_000)
    assert webhooks.verify("whsec_x", body, header, now=1_700_000_100)
    assert not webhooks.verify("whsec_x", body + b" ", header, now=1_700_000_100)
    assert not webhooks.verify("whsec_y", body, header, now=1_700_000_100)
    assert not webhooks.verify("whsec_x", body, header, now=1_700_000_000 + 301), "replayed too late"
    assert not webhooks.verify("whsec_x", body, "garbage", now=1_700_000_000)


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    backoff = webhooks.Backoff(base=1, cap=60)
    delays = [backoff.delay(n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1 and 4 <= delays[3] <= 8
    assert all(d <= 60 for d in delays) and delays[-1] >= 30


async def test_customer_rating_once_after_the_end_and_as_a_webhook(
    aiohttp_client: ClientFactory, fast_settings: Settings, receiver: Receiver
) -> None:
    client, auth = await start_app(aiohttp_client, fast_settings)
    await receiver.up()
    await register(client, auth, receiver, ["session.rated"])
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-8", "tier": 2},
                                       headers=auth)).json()
    rate = f"/s/{token_of(session['customer_url'])}/rating"
    early = await client.post(rate, json={"rating": 5})
    assert early.status == 409 and (await early.json())["error"]["code"] == "session_not_ended"
    await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "resolved"}, headers=auth)
    for bad in ({"rating": 0}, {"rating": 6}, {"rating": "5"}, {"rating": 3, "comment": "x" * 1001}):
        assert (await client.post(rate, json=bad)).status == 422
    agent_rating = await client.post(f"/s/{token_of(session['agent_url'])}/rating", json={"rating": 1})
    assert agent_rating.status == 404
    assert (await client.post(rate, json={"rating": 2, "comment": "slow"})).status == 201
    again = await client.post(rate, json={"rating": 5})
    assert again.status == 409 and (await again.json())["error"]["code"] == "already_rated"
    await receiver.wait_for(1)
    assert receiver.received[0]["type"] == "session.rated"
    assert receiver.received[0]["data"] == {"rating": 2, "comment": "slow"}
    record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert record["rating"]["rating"] == 2


def test_the_readme_verification_snippet_works() -> None:
    """The snippet help desks copy must accept our signatures and refuse forgeries and replays."""
    import re
    import textwrap
    import time

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [snippet] = re.findall(r"```python\n(.*?)```", readme, re.S)
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(snippet), namespace)
    verified = namespace["verified"]
    body = b'{"id":"evt_9","type":"session.ended"}'
    header = webhooks.sign("whsec_abc", body, int(time.time()))
    assert verified("whsec_abc", body, header)
    assert not verified("whsec_abc", body.replace(b"9", b"8"), header)
    assert not verified("whsec_other", body, header)
    assert not verified("whsec_abc", body, webhooks.sign("whsec_abc", body, int(time.time()) - 600))
    assert not verified("whsec_abc", body, "nonsense")
