"""The Zendesk adapter against a local server that implements Zendesk's documented endpoints and
checks what it receives."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.utils import (
    MARKER_ID,
    decode_png,
    detect_markers,
    free_port,
    snapshot_from_a_live_camera,
)
from visassist.app import create_app
from visassist.config import Settings
from visassist.context import AppContext
from visassist.tokens import digest, new_api_key, new_id

ClientFactory = Callable[..., Awaitable[TestClient]]
EMAIL, TOKEN = "agent@acme.test", "zd-api-token"


@dataclass
class FakeZendesk:
    """POST /api/v2/uploads.json and PUT /api/v2/tickets/{id}.json, as Zendesk documents them."""

    port: int
    uploads: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # token -> files
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_updates: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def upload(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"error": "Couldn't authenticate you"}, status=401)
        filename = request.query.get("filename")
        body = await request.read()
        if not filename or not body or request.content_type != "image/png":
            return web.json_response({"error": "RecordInvalid"}, status=422)
        token = request.query.get("token") or f"tok{len(self.uploads) + 1}"
        self.uploads.setdefault(token, []).append((filename, body))
        attachments = [{"file_name": name, "content_type": "image/png", "size": len(data)}
                       for name, data in self.uploads[token]]
        return web.json_response({"upload": {"token": token, "attachment": attachments[-1],
                                             "attachments": attachments}}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response({"error": "Couldn't authenticate you"}, status=401)
        ticket_id = request.match_info["ticket_id"]
        if ticket_id != "1042":
            return web.json_response({"error": "RecordNotFound"}, status=404)
        if self.fail_updates:
            self.fail_updates -= 1
            return web.json_response({"error": "TooManyRequests"}, status=429)
        body = await request.json()
        comment = body["ticket"]["comment"]
        assert isinstance(comment["body"], str) and comment["public"] is False
        assert all(token in self.uploads for token in comment.get("uploads", []))
        self.updates.append((ticket_id, body))
        return web.json_response({"ticket": {"id": int(ticket_id)}, "audit": {"events": []}})

    async def up(self) -> None:
        app = web.Application(client_max_size=50 * 2**20)
        app.router.add_post("/api/v2/uploads.json", self.upload)
        app.router.add_put("/api/v2/tickets/{ticket_id}.json", self.update)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


@pytest.fixture
async def zendesk() -> AsyncIterator[FakeZendesk]:
    server = FakeZendesk(free_port())
    await server.up()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def test_a_finished_session_becomes_an_internal_note_with_the_snapshots(
    aiohttp_client: ClientFactory, settings: Settings, zendesk: FakeZendesk
) -> None:
    import asyncio

    zendesk.fail_updates = 1  # Zendesk rate-limits the first try: the outbox retries
    settings = replace(settings, zendesk_url=zendesk.url, zendesk_email=EMAIL, zendesk_token=TOKEN,
                       webhook_retry_base=0.05, webhook_retry_cap=0.2)
    client = await aiohttp_client(create_app(settings))
    key = new_api_key()
    await client.app[AppContext.KEY].store.create_api_key(new_id("key"), "t", digest(key))
    auth = {"Authorization": f"Bearer {key}"}
    session = await (await client.post("/api/v1/sessions", headers=auth, json={
        "ticket_id": "ZD-1042", "tier": 2, "record": True})).json()
    other = await (await client.post("/api/v1/sessions", json={"ticket_id": "SN-INC0001", "tier": 2},
                                     headers=auth)).json()
    arrow = {"kind": "arrow", "color": "#ff0000", "points": [[0.6, 0.2], [0.9, 0.5]]}
    live = await snapshot_from_a_live_camera(client, session, [arrow])
    agent, customer = live["agent"], live["customer"]
    try:
        read = await agent.expect("snapshot.read", timeout=30)
        serial = next(f for f in read["fields"] if f["name"] == "serial_number")
        await agent.send({"type": "field.confirm", "field_id": serial["id"]})
        assert (await agent.expect("field"))["field"]["status"] == "confirmed"
        await agent.send({"type": "end", "outcome": "resolved", "notes": "Reseated the cable"})
        await agent.expect("ended")
    finally:
        await customer.close()
        await agent.close()
    await client.post(f"/api/v1/sessions/{other['id']}/end", json={"outcome": "no_show"}, headers=auth)

    async with asyncio.timeout(10):
        while not zendesk.updates:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    [(ticket, body)] = zendesk.updates
    comment = body["ticket"]["comment"]
    assert ticket == "1042" and comment["public"] is False
    assert "ended: resolved" in comment["body"] and "Reseated the cable" in comment["body"]
    assert "Duration:" in comment["body"] and "1 attached" in comment["body"]
    assert "Serial number: VX-2231-A (confidence" in comment["body"], "the confirmed field is in the note"
    assert f"/api/v1/sessions/{session['id']}" in comment["body"]
    assert "/tickets/ZD-1042" in comment["body"], "the note links the ticket's record page"
    recordings = (await (await client.get(f"/api/v1/sessions/{session['id']}/recordings",
                                          headers=auth)).json())["recordings"]
    assert len(recordings) == 1 and f"{recordings[0]['url']}" in comment["body"], \
        "the session.ended webhook carries the recording, and the note links it"
    [token] = comment["uploads"]
    files = dict(zendesk.uploads[token])
    snapshot_id = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
                   )["snapshots"][0]["id"]
    assert sorted(files) == [f"snapshot-{snapshot_id}-annotated.png", f"snapshot-{snapshot_id}-original.png"]
    for data in files.values():
        assert MARKER_ID in detect_markers(decode_png(data)), "the attachments are the snapshot's images"
    # The failed first try and the retry are on record; the non-Zendesk ticket was left alone.
    listing = await (await client.get("/api/v1/webhooks/whk_zendesk/deliveries", headers=auth)).json()
    done = {d["session_id"]: d for d in listing["deliveries"]}
    assert done[session["id"]]["status"] == "delivered"
    assert [a["status_code"] for a in done[session["id"]]["attempts"]] == [429, 200]
    assert done[other["id"]]["status"] == "delivered" and len(zendesk.updates) == 1
