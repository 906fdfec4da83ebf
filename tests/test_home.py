"""Home for signed-in staff: the board, the New session form and its link page, joining silently."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.test_accounts import add_user, csrf_of, sign_in
from tests.utils import FakeParticipant, token_of
from visassist.context import AppContext

Create = Callable[..., Awaitable[dict[str, Any]]]


async def test_the_front_page_is_home_once_signed_in(client: TestClient) -> None:
    anonymous = await (await client.get("/")).text()
    assert "Staff sign-in" in anonymous and "New session" not in anonymous
    await add_user(client, "sam@support.test", "agent")
    await sign_in(client, "sam@support.test")
    home = await (await client.get("/")).text()
    assert "New session" in home and 'action="/sessions/new"' in home and "Analytics" not in home


async def test_a_new_session_by_hand_shows_its_link_and_qr_code(client: TestClient) -> None:
    await add_user(client, "sam@support.test", "agent")
    await sign_in(client, "sam@support.test")
    csrf = csrf_of(await (await client.get("/")).text())
    made = await client.post("/sessions/new", allow_redirects=False, data={
        "csrf": csrf, "ticket_id": "ZD-77", "tier": "3", "customer_name": "Bea", "ttl": "14400",
        "audio": "on", "record": "on"})
    assert made.status == 303
    link_page = made.headers["Location"]
    session_id = link_page.split("/")[2]
    session = await client.app[AppContext.KEY].sessions.get(session_id)
    assert (session.ticket_id, session.tier, session.customer, session.audio, session.record) == (
        "ZD-77", 3, {"name": "Bea"}, True, True)
    assert (session.expires_at - session.created_at).total_seconds() == 14400
    events = await client.app[AppContext.KEY].store.events(session_id)
    assert events[0].actor == "user:sam@support.test"

    page = await (await client.get(link_page)).text()
    url = re.search(r'id="customer-url" readonly value="([^"]+)"', page)
    assert url is not None and "/s/" in url.group(1)
    assert '<svg role="img" aria-label="QR code' in page
    assert "--smtp-host" in page, "says how to turn sending on when it is off"
    customer = await client.get(url.group(1).split(str(client.make_url("")).rstrip("/"))[-1])
    assert customer.status == 200, "the link shown opens the customer's page"

    assert 'data-testid="open-console"' in page, "the console link for the person who made the session"
    await add_user(client, "kim@support.test", "agent")
    await sign_in(client, "kim@support.test")
    colleague = await (await client.get(link_page)).text()
    assert url.group(1) in colleague and 'data-testid="open-console"' not in colleague, \
        "a colleague sees the customer's link but cannot take the console (it binds to its first opener)"
    await sign_in(client, "sam@support.test")
    csrf = csrf_of(await (await client.get("/")).text())

    refused = await client.post(f"/sessions/{session_id}/send",
                                data={"csrf": csrf, "address": "bea@example.com"})
    assert refused.status == 422 and "not configured" in await refused.text()

    bad = await client.post("/sessions/new",
                            data={"csrf": csrf, "ticket_id": "no spaces please", "tier": "2"})
    assert bad.status == 400 and "letters, digits" in await bad.text()
    forged = await client.post("/sessions/new", data={"csrf": "wrong", "ticket_id": "ZD-1", "tier": "2"})
    assert forged.status == 403 and (await forged.json())["error"]["code"] == "csrf_failed"


async def test_the_board_lists_waiting_and_live_sessions_and_who_is_in(
        client: TestClient, create_session: Create) -> None:
    waiting = await create_session(ticket_id="ZD-1")
    live = await create_session(ticket_id="ZD-2", customer={"name": "Cy"})
    assert (await client.get("/home/board")).status == 401, "JSON, not a page, for the page's own call"
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "lead@support.test")
    customer = FakeParticipant(client, token_of(live["customer_url"]))
    await customer.join()
    try:
        board = await (await client.get("/home/board")).json()
        assert [s["ticket_id"] for s in board["waiting"]] == ["ZD-1"]
        [row] = board["live"]
        assert row["ticket_id"] == "ZD-2" and row["can_watch"] is True
        assert [(p["name"], p["role"]) for p in row["people"]] == [("Cy", "customer")]
        assert row["people"][0]["since"] and row["record_url"] == "/tickets/ZD-2"
        assert waiting["id"] == board["waiting"][0]["id"]

        csrf = csrf_of(await (await client.get("/")).text())
        watched = await client.post(f"/sessions/{live['id']}/watch", data={"csrf": csrf},
                                    allow_redirects=False)
        assert watched.status == 303 and watched.headers["Location"].startswith("/a/")
        console = await client.get(watched.headers["Location"])
        assert console.status == 200 and "Supervisor" in await console.text()
    finally:
        await customer.close()


async def test_only_supervisors_and_admins_join_silently(client: TestClient, create_session: Create) -> None:
    live = await create_session()
    await add_user(client, "sam@support.test", "agent")
    await sign_in(client, "sam@support.test")
    csrf = csrf_of(await (await client.get("/")).text())
    refused = await client.post(f"/sessions/{live['id']}/watch", data={"csrf": csrf})
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "supervisors_only"
