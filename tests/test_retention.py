"""Retention and erasure: media and personal data go when they should, never early; figures stay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.utils import Clock, snapshot_from_a_live_camera, start_app, token_of
from visassist import app
from visassist.config import Settings
from visassist.context import AppContext
from visassist.tokens import digest

ClientFactory = Callable[..., Awaitable[TestClient]]



async def session_with_snapshot_and_chat(client: TestClient, auth: dict[str, str],
                                         ticket: str, end: bool = True,
                                         record: bool = False) -> dict[str, Any]:
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": ticket, "tier": 2,
                                                                  "customer": {"name": "Ana Pereira"},
                                                                  "record": record},
                                       headers=auth)).json()
    live = await snapshot_from_a_live_camera(client, session)
    agent, customer = live["agent"], live["customer"]
    try:
        await customer.send({"type": "chat", "text": "my address is 12 Rua Nova"})
        await agent.expect("chat")
        if end:
            await agent.send({"type": "end", "outcome": "resolved", "notes": "Ana's router, serial 123"})
            await agent.expect("ended")
    finally:
        await customer.close()
        await agent.close()
    return dict(session)


async def test_erasing_a_ticket_keeps_only_anonymous_figures(aiohttp_client: ClientFactory,
                                                             settings: Settings) -> None:
    client, auth = await start_app(aiohttp_client, settings)
    ended = await session_with_snapshot_and_chat(client, auth, "ZD-ERASE")
    live = await session_with_snapshot_and_chat(client, auth, "ZD-ERASE", end=False)
    await session_with_snapshot_and_chat(client, auth, "ZD-KEEP")
    await client.post(f"/s/{token_of(ended['customer_url'])}/rating",
                      json={"rating": 5, "comment": "Ana says hi"})
    before = await (await client.get(f"/api/v1/sessions/{ended['id']}", headers=auth)).json()
    snapshot = before["snapshots"][0]

    response = await client.delete("/api/v1/tickets/ZD-ERASE", headers=auth)
    assert response.status == 200
    assert (await response.json())["erased"] == {"sessions": 2, "snapshots": 2, "recordings": 0,
                                                         "chat_messages": 2}
    assert (await client.get("/api/v1/tickets/ZD-ERASE", headers=auth)).status == 404
    assert (await client.get(snapshot["raw_url"], headers=auth)).status == 404
    data_dir = settings.blob_dir / "sessions"
    assert not (data_dir / ended["id"]).exists() and not (data_dir / live["id"]).exists()

    for session in (ended, live):
        record = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
        text = str(record)
        for personal in ("Ana", "Rua Nova", "serial 123", "ZD-ERASE"):
            assert personal not in text, personal
        assert record["snapshots"] == [] and record["customer"] == {}
        assert record["events"][-1]["type"] == "ticket.erased"
    figures = await (await client.get(f"/api/v1/sessions/{ended['id']}", headers=auth)).json()
    assert figures["outcome"]["outcome"] == "resolved" and figures["duration_seconds"] > 0
    assert figures["tier"] == 2 and figures["rating"]["rating"] == 5
    assert (await client.get(f"/api/v1/sessions/{live['id']}", headers=auth)).status == 200
    assert (await (await client.get(f"/api/v1/sessions/{live['id']}", headers=auth)).json())["status"] == \
        "revoked", "an open session is revoked before it is erased"
    # Another ticket is untouched.
    kept = await (await client.get("/api/v1/tickets/ZD-KEEP", headers=auth)).json()
    assert len(kept["sessions"][0]["snapshots"]) == 1
    assert (await client.delete("/api/v1/tickets/ZD-ERASE", headers=auth)).status == 404


async def test_retention_purges_what_is_due_and_nothing_early(aiohttp_client: ClientFactory,
                                                              settings: Settings) -> None:
    settings = replace(settings, retention_media_days=30, retention_chat_days=7)
    clock = Clock()
    client, auth = await start_app(aiohttp_client, settings, clock)
    # Ended (and chatted in) 31 and 8 days before the purge, and just now.
    old = await session_with_snapshot_and_chat(client, auth, "ZD-OLD", record=True)
    clock.advance(days=23)
    mid = await session_with_snapshot_and_chat(client, auth, "ZD-MID")
    clock.advance(days=8)
    new = await session_with_snapshot_and_chat(client, auth, "ZD-NEW", record=True)
    recordings = {s["id"]: (await (await client.get(f"/api/v1/sessions/{s['id']}/recordings",
                                                    headers=auth)).json())["recordings"] for s in (old, new)}
    assert all(len(r) == 1 for r in recordings.values())
    counts = await client.app[AppContext.KEY].sessions.purge()
    assert counts == {"snapshots": 1, "recordings": 1, "chat_messages": 2}
    assert (await client.get(recordings[old["id"]][0]["url"], headers=auth)).status == 404
    blobs = client.app[AppContext.KEY].blobs
    assert not any(blobs.local_path(f"sessions/{old['id']}/recordings").glob("*/*.webm")), "the file is gone"
    assert (await client.get(recordings[new["id"]][0]["url"], headers=auth)).status == 200, "not due yet"

    def chats(record: dict[str, Any]) -> list[dict[str, Any]]:
        return [e["data"] for e in record["events"] if e["type"] == "chat.message"]

    old_record = await (await client.get(f"/api/v1/sessions/{old['id']}", headers=auth)).json()
    assert old_record["snapshots"] == [] and chats(old_record)[0].get("erased") is True
    assert old_record["events"][-1]["type"] == "retention.purged"
    mid_record = await (await client.get(f"/api/v1/sessions/{mid['id']}", headers=auth)).json()
    assert len(mid_record["snapshots"]) == 1, "media kept: 8 days < 30"
    assert "text" not in chats(mid_record)[0], "chat removed: 8 days > 7"
    new_record = await (await client.get(f"/api/v1/sessions/{new['id']}", headers=auth)).json()
    assert len(new_record["snapshots"]) == 1 and chats(new_record)[0]["text"] == "my address is 12 Rua Nova"
    nothing = {"snapshots": 0, "recordings": 0, "chat_messages": 0}
    assert await client.app[AppContext.KEY].sessions.purge() == nothing


async def test_without_retention_settings_nothing_is_purged(aiohttp_client: ClientFactory,
                                                           settings: Settings) -> None:
    clock = Clock()
    client, auth = await start_app(aiohttp_client, settings, clock)
    old = await session_with_snapshot_and_chat(client, auth, "ZD-ANCIENT")
    clock.advance(days=3650)
    nothing = {"snapshots": 0, "recordings": 0, "chat_messages": 0}
    assert await client.app[AppContext.KEY].sessions.purge() == nothing
    record = await (await client.get(f"/api/v1/sessions/{old['id']}", headers=auth)).json()
    assert len(record["snapshots"]) == 1


async def test_the_purge_loop_prunes_idempotency_keys_and_login_failures_past_their_windows(
        client: TestClient, auth: dict[str, str], api_key: str, clock: Clock) -> None:
    ctx = client.app[AppContext.KEY]
    key = await ctx.store.api_key_by_digest(digest(api_key))
    assert key is not None
    body = {"ticket_id": "ZD-PRUNE", "tier": 2, "customer": {"name": "Ana"}}
    old_failure_at = clock()
    assert (await client.post("/api/v1/sessions", json=body,
                              headers={**auth, "Idempotency-Key": "old"})).status == 201
    await ctx.store.login_failure(["email:ana@example.com"], old_failure_at)
    clock.advance(hours=25)  # past both windows (24 hours, 15 minutes)
    assert (await client.post("/api/v1/sessions", json=body,
                              headers={**auth, "Idempotency-Key": "recent"})).status == 201
    await ctx.store.login_failure(["email:ana@example.com"], clock())

    assert await app.prune(ctx) == {"idempotency_keys": 1, "login_failures": 1}
    ever = old_failure_at - timedelta(days=365)
    assert await ctx.store.idempotent_session(key.id, "old", ever) is None
    assert await ctx.store.idempotent_session(key.id, "recent", ever) is not None
    assert await ctx.store.login_failures("email:ana@example.com", ever) == 1
    assert await app.prune(ctx) == {"idempotency_keys": 0, "login_failures": 0}
