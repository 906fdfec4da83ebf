"""The REST API as a ticket system uses it: create, read, end, the ticket record, and every refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.utils import Clock, FakeParticipant, token_of

Create = Callable[..., Awaitable[dict[str, Any]]]


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["code"])


async def test_create_session_returns_links_and_waiting_status(
    client: TestClient, create_session: Create
) -> None:
    session = await create_session()
    assert session["status"] == "waiting"
    assert session["ticket_id"] == "ZD-1042" and session["tier"] == 2
    assert session["customer"] == {"name": "Ana"}
    assert session["customer_url"].startswith(f"http://{client.host}:{client.port}/s/")
    assert session["agent_url"].startswith(f"http://{client.host}:{client.port}/a/")
    assert token_of(session["customer_url"]) != token_of(session["agent_url"])
    assert len(token_of(session["customer_url"])) >= 40
    assert [e["type"] for e in session["events"]] == ["session.created"]
    roles = sorted(p["role"] for p in session["participants"])
    assert roles == ["agent", "customer"]


async def test_get_session_and_ticket_record(client: TestClient, create_session: Create,
                                             auth: dict[str, str]) -> None:
    first = await create_session()
    second = await create_session()
    await create_session(ticket_id="OTHER-1")
    response = await client.get(f"/api/v1/sessions/{first['id']}", headers=auth)
    assert response.status == 200
    body = await response.json()
    assert body["id"] == first["id"] and body["status"] == "waiting"
    assert (body["customer_url"], body["agent_url"]) == (first["customer_url"], first["agent_url"]), \
        "the same links again while the session is open"
    assert body["snapshots"] == [] and body["outcome"] is None

    response = await client.get("/api/v1/tickets/ZD-1042", headers=auth)
    record = await response.json()
    assert [s["id"] for s in record["sessions"]] == [first["id"], second["id"]]


async def test_end_session_records_outcome_and_refuses_links(client: TestClient, create_session: Create,
                                                             auth: dict[str, str]) -> None:
    session = await create_session()
    response = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=auth,
                                 json={"outcome": "resolved", "notes": "Reseated the cable"})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "ended"
    assert body["outcome"]["outcome"] == "resolved" and body["outcome"]["notes"] == "Reseated the cable"
    assert body["duration_seconds"] == 0
    assert [e["type"] for e in body["events"]] == ["session.created", "session.ended"]
    assert "customer_url" not in body and "agent_url" not in body, "no links once it is over"

    again = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=auth,
                              json={"outcome": "abandoned"})
    assert await error_of(again, 409) == "session_ended"
    still = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert still["outcome"]["outcome"] == "resolved", "a refused end changes nothing"

    page = await client.get(f"/s/{token_of(session['customer_url'])}")
    assert page.status == 410 and "ended" in await page.text()
    page = await client.get(f"/a/{token_of(session['agent_url'])}")
    assert page.status == 410


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer vak_" + "x" * 43},
])
async def test_api_needs_a_valid_key(client: TestClient, headers: dict[str, str]) -> None:
    response = await client.post("/api/v1/sessions", json={"ticket_id": "T-1", "tier": 2}, headers=headers)
    assert await error_of(response, 401) == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/api/v1/sessions/ses_x", "/api/v1/tickets/T-1", "/api/v1/sessions/ses_x/snapshots"):
        assert (await client.get(path, headers=headers)).status == 401


async def test_link_token_is_not_an_api_key(client: TestClient, create_session: Create) -> None:
    session = await create_session()
    for url in (session["agent_url"], session["customer_url"]):
        response = await client.get(f"/api/v1/sessions/{session['id']}",
                                    headers={"Authorization": f"Bearer {token_of(url)}"})
        assert response.status == 401


BAD_BODIES: list[tuple[Any, int, str]] = [
    ({"ticket_id": "T-1", "tier": 7}, 422, "validation_failed"),
    ({"ticket_id": "T-1", "tier": 2, "ttl_seconds": -5}, 422, "validation_failed"),
    ({"ticket_id": "T-1", "tier": "2"}, 422, "validation_failed"),
    ({"ticket_id": 1042, "tier": 2}, 422, "validation_failed"),
    ({"ticket_id": "", "tier": 2}, 422, "validation_failed"),
    ({"ticket_id": "T/1", "tier": 2}, 422, "validation_failed"),
    ({"tier": 2}, 422, "validation_failed"),
    ({"ticket_id": "T-1", "tier": 2, "customer": {"name": 5}}, 422, "validation_failed"),
    ({"ticket_id": "T-1", "tier": 2, "surprise": True}, 422, "validation_failed"),
    ({"ticket_id": "T-1", "tier": 2, "ttl_seconds": 10**9}, 422, "validation_failed"),
    ([1, 2, 3], 422, "validation_failed"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_bad_create_bodies_are_refused_and_change_nothing(
    client: TestClient, auth: dict[str, str], body: Any, status: int, code: str
) -> None:
    response = await client.post("/api/v1/sessions", json=body, headers=auth)
    assert await error_of(response, status) == code
    ticket = await client.get("/api/v1/tickets/T-1", headers=auth)
    assert ticket.status == 404


async def test_validation_error_names_the_field(client: TestClient, auth: dict[str, str]) -> None:
    response = await client.post("/api/v1/sessions", json={"ticket_id": "T-1", "tier": 7}, headers=auth)
    body = await response.json()
    assert body["error"]["message"].startswith("tier")
    assert body["error"]["details"][0]["field"] == "tier"


async def test_malformed_json(client: TestClient, auth: dict[str, str]) -> None:
    response = await client.post("/api/v1/sessions", data=b'{"ticket_id": "T-1", "tier": 2',
                                 headers={**auth, "Content-Type": "application/json"})
    assert await error_of(response, 400) == "invalid_json"


async def test_huge_body(client: TestClient, auth: dict[str, str]) -> None:
    body = b'{"ticket_id": "T-1", "tier": 2, "customer": {"name": "' + b"a" * 2_000_000 + b'"}}'
    response = await client.post("/api/v1/sessions", data=body,
                                 headers={**auth, "Content-Type": "application/json"})
    assert await error_of(response, 413) == "payload_too_large"
    assert (await client.get("/api/v1/tickets/T-1", headers=auth)).status == 404


async def test_unknown_things_are_404_json(client: TestClient, auth: dict[str, str]) -> None:
    assert await error_of(await client.get("/api/v1/sessions/ses_nope", headers=auth), 404) == \
        "session_not_found"
    assert await error_of(await client.get("/api/v1/tickets/NOPE", headers=auth), 404) == "ticket_not_found"
    assert await error_of(await client.post("/api/v1/sessions/ses_nope/end", headers=auth,
                                            json={"outcome": "resolved"}), 404) == "session_not_found"
    assert await error_of(await client.get("/api/v1/nothing-here", headers=auth), 404) == "not_found"
    assert await error_of(await client.delete("/api/v1/sessions", headers=auth), 405) == \
        "method_not_allowed"


@pytest.mark.parametrize("body", [{"outcome": "great"}, {"outcome": "resolved", "notes": "x" * 5000},
                                  {}, {"outcome": "resolved", "extra": 1}])
async def test_bad_end_bodies(client: TestClient, create_session: Create, auth: dict[str, str],
                              body: dict[str, Any]) -> None:
    session = await create_session()
    response = await client.post(f"/api/v1/sessions/{session['id']}/end", json=body, headers=auth)
    assert await error_of(response, 422) == "validation_failed"
    after = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert after["status"] == "waiting"


async def test_expired_session_refuses_links_and_end(client: TestClient, create_session: Create,
                                                     auth: dict[str, str], clock: Clock) -> None:
    session = await create_session(ttl_seconds=60)
    clock.advance(seconds=61)
    body = await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json()
    assert body["status"] == "expired"
    page = await client.get(f"/s/{token_of(session['customer_url'])}")
    assert page.status == 410 and "expired" in await page.text()
    response = await client.post(f"/api/v1/sessions/{session['id']}/end", headers=auth,
                                 json={"outcome": "no_show"})
    assert await error_of(response, 409) == "session_expired"


async def test_unknown_link_shows_a_friendly_page(client: TestClient) -> None:
    for path in ("/s/not-a-real-token-but-long-enough", "/a/x", "/s/" + "a" * 43):
        response = await client.get(path)
        assert response.status == 404
        text = await response.text()
        assert "This link isn&#39;t valid" in text and "Traceback" not in text
        assert response.headers["Content-Type"].startswith("text/html")


async def test_pages_have_security_headers(client: TestClient, create_session: Create) -> None:
    session = await create_session()
    response = await client.get(f"/s/{token_of(session['customer_url'])}")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    # Staff pages hold no tokens in their addresses: same-origin, so their forms' POSTs carry an Origin.
    assert (await client.get("/login")).headers["Referrer-Policy"] == "same-origin"


async def test_pages_render_for_a_session_without_customer_details(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = await client.post("/api/v1/sessions", json={"ticket_id": "T-2", "tier": 3}, headers=auth)
    session = await response.json()
    assert session["customer"] == {} and session["tier"] == 3
    for url in (session["customer_url"], session["agent_url"]):
        page = await client.get(f"/{url.split('/', 3)[3]}")
        assert page.status == 200, await page.text()
    console = await (await client.get(f"/a/{token_of(session['agent_url'])}")).text()
    assert "Customer" in console and "Tier 3" in console


async def test_a_server_failure_is_json_without_a_stack_trace(
    client: TestClient, create_session: Create, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from visassist.context import AppContext

    session = await create_session()

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(client.app[AppContext.KEY].store, "events", broken)
    response = await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)
    assert await error_of(response, 500) == "internal_error"
    assert "disk on fire" not in await response.text()


async def test_invite_participants(client: TestClient, create_session: Create, auth: dict[str, str]) -> None:
    session = await create_session()
    url = f"/api/v1/sessions/{session['id']}/participants"
    response = await client.post(url, json={"role": "expert", "name": "Sam"}, headers=auth)
    assert response.status == 201
    body = await response.json()
    assert body["participant"]["role"] == "expert" and body["url"].split("/")[-2] == "a"
    page = await client.get(f"/a/{token_of(body['url'])}")
    assert page.status == 200 and "Expert" in await page.text()
    for bad in ({"role": "customer"}, {"role": "agent"}, {"role": "expert", "name": ""}, {}):
        assert await error_of(await client.post(url, json=bad, headers=auth), 422) == "validation_failed"
    for _ in range(5):  # 8 at most: customer, agent, the expert and five more
        assert (await client.post(url, json={"role": "supervisor"}, headers=auth)).status == 201
    full = await client.post(url, json={"role": "expert"}, headers=auth)
    assert await error_of(full, 409) == "session_full"
    participants = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json())
    assert len(participants["participants"]) == 8
    await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "resolved"}, headers=auth)
    other = await create_session()
    await client.post(f"/api/v1/sessions/{other['id']}/end", json={"outcome": "resolved"}, headers=auth)
    ended = await client.post(f"/api/v1/sessions/{other['id']}/participants", json={"role": "expert"},
                              headers=auth)
    assert await error_of(ended, 409) == "session_ended"
    assert await error_of(await client.post("/api/v1/sessions/ses_nope/participants", json={"role": "expert"},
                                            headers=auth), 404) == "session_not_found"


async def test_idempotent_create(client: TestClient, auth: dict[str, str]) -> None:
    body = {"ticket_id": "ZD-77", "tier": 2, "customer": {"name": "Ana"}}
    headers = {**auth, "Idempotency-Key": "ticket-ZD-77-escalation-1"}
    first = await client.post("/api/v1/sessions", json=body, headers=headers)
    retry = await client.post("/api/v1/sessions", json=body, headers=headers)
    assert first.status == retry.status == 201
    one, two = await first.json(), await retry.json()
    assert (two["id"], two["customer_url"], two["agent_url"]) == (one["id"], one["customer_url"],
                                                                  one["agent_url"])
    assert retry.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    # Concurrent retries still make one session.
    burst = await asyncio.gather(*(client.post("/api/v1/sessions", json=body,
                                               headers={**auth, "Idempotency-Key": "burst"})
                                   for _ in range(5)))
    assert len({(await r.json())["id"] for r in burst}) == 1
    record = await (await client.get("/api/v1/tickets/ZD-77", headers=auth)).json()
    assert len(record["sessions"]) == 2
    # The same key with another body is a client bug, said plainly; nothing is created.
    other = await client.post("/api/v1/sessions", json={**body, "tier": 3}, headers=headers)
    assert await error_of(other, 422) == "idempotency_key_reused"
    bad = await client.post("/api/v1/sessions", json=body, headers={**auth, "Idempotency-Key": "x" * 300})
    assert await error_of(bad, 400) == "invalid_idempotency_key"
    assert len((await (await client.get("/api/v1/tickets/ZD-77", headers=auth)).json())["sessions"]) == 2


async def test_listing_filters_and_pages(client: TestClient, create_session: Create,
                                         auth: dict[str, str], clock: Clock) -> None:
    made = [await create_session(ticket_id=f"LIST-{n % 2}", ttl_seconds=60 if n == 1 else 3600)
            for n in range(5)]
    await client.post(f"/api/v1/sessions/{made[0]['id']}/end", json={"outcome": "resolved"}, headers=auth)
    clock.advance(seconds=61)  # made[1] expires
    page = await (await client.get("/api/v1/sessions?limit=2", headers=auth)).json()
    assert [s["id"] for s in page["sessions"]] == [made[4]["id"], made[3]["id"]], "newest first"
    seen = [s["id"] for s in page["sessions"]]
    while page["next_cursor"]:
        page = await (await client.get(f"/api/v1/sessions?limit=2&cursor={page['next_cursor']}",
                                       headers=auth)).json()
        seen += [s["id"] for s in page["sessions"]]
    assert seen == [s["id"] for s in reversed(made)], "every session once, across pages"
    by_ticket = await (await client.get("/api/v1/sessions?ticket_id=LIST-1", headers=auth)).json()
    assert {s["id"] for s in by_ticket["sessions"]} == {made[1]["id"], made[3]["id"]}
    for status, expected in (("ended", [made[0]]), ("expired", [made[1]]),
                             ("waiting", [made[4], made[3], made[2]])):
        listed = await (await client.get(f"/api/v1/sessions?status={status}", headers=auth)).json()
        assert [s["id"] for s in listed["sessions"]] == [s["id"] for s in expected], status
    future = await (await client.get("/api/v1/sessions?created_after=2999-01-01T00:00:00Z",
                                     headers=auth)).json()
    assert future == {"sessions": [], "next_cursor": None}
    for bad in ("limit=0", "limit=500", "status=happy", "created_after=yesterday", "cursor=%%%",
                "cursor=bm90LWEtZGF0ZXxzZXM", "colour=blue", "created_after=2024-01-01T00:00:00"):
        response = await client.get(f"/api/v1/sessions?{bad}", headers=auth)
        assert response.status == 422, bad


async def test_etags_and_conditional_end(client: TestClient, create_session: Create,
                                         auth: dict[str, str]) -> None:
    session = await create_session()
    url = f"/api/v1/sessions/{session['id']}"
    first = await client.get(url, headers=auth)
    etag = first.headers["ETag"]
    assert (await client.get(url, headers={**auth, "If-None-Match": etag})).status == 304
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await customer.join()
    await customer.close()
    changed = await client.get(url, headers={**auth, "If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag, "an event changes the ETag"
    stale = await client.post(f"{url}/end", json={"outcome": "resolved"}, headers={**auth, "If-Match": etag})
    assert await error_of(stale, 412) == "precondition_failed"
    assert (await (await client.get(url, headers=auth)).json())["status"] != "ended"
    fresh = changed.headers["ETag"]
    ended = await client.post(f"{url}/end", json={"outcome": "resolved"}, headers={**auth, "If-Match": fresh})
    assert ended.status == 200


async def test_revoke_kills_links_at_once(client: TestClient, create_session: Create,
                                          auth: dict[str, str]) -> None:
    session = await create_session()
    customer = FakeParticipant(client, token_of(session["customer_url"]))
    await customer.join()
    try:
        response = await client.post(f"/api/v1/sessions/{session['id']}/revoke", headers=auth)
        assert response.status == 200 and (await response.json())["status"] == "revoked"
        assert (await customer.expect("ended"))["status"] == "revoked"
    finally:
        await customer.close()
    page = await client.get(f"/s/{token_of(session['customer_url'])}")
    assert page.status == 410 and "withdrawn" in await page.text()
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "protocol": 1, "token": token_of(session["agent_url"])})
    assert (await ws.receive_json())["code"] == "session_revoked"
    await ws.close()
    again = await client.post(f"/api/v1/sessions/{session['id']}/revoke", headers=auth)
    assert await error_of(again, 409) == "session_revoked"
    end = await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "resolved"},
                            headers=auth)
    assert await error_of(end, 409) == "session_revoked"
    events = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json())["events"]
    assert "session.revoked" in [e["type"] for e in events]
