"""Customer invitations through a real local SMTP server and a local SMS relay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller

from tests.utils import free_port, start_app, token_of
from visassist.config import Settings

ClientFactory = Callable[..., Awaitable[TestClient]]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def sms_relay() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    received: list[dict[str, Any]] = []

    async def relay(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer relay-token"
        received.append(await request.json())
        return web.json_response({"queued": True}, status=202)

    app = web.Application()
    app.router.add_post("/sms", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield received, f"http://127.0.0.1:{port}/sms"
    await runner.cleanup()



async def test_email_and_sms_invitations(aiohttp_client: ClientFactory, settings: Settings,
                                         smtp: tuple[Inbox, int],
                                         sms_relay: tuple[list[dict[str, Any]], str]) -> None:
    inbox, port = smtp
    texts, relay_url = sms_relay
    settings = replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                       smtp_from="support@acme.test", sms_url=relay_url, sms_token="relay-token")
    client, auth = await start_app(aiohttp_client, settings)
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-1042", "tier": 2,
                                                                  "customer": {"name": "Ana"}},
                                       headers=auth)).json()
    url = f"/api/v1/sessions/{session['id']}/invitations"
    sent = await client.post(url, json={"email": "ana@example.test"}, headers=auth)
    assert sent.status == 200 and (await sent.json()) == {"sent": "email", "to": "a***@example.test"}
    [mail] = inbox.messages
    assert mail["To"] == "ana@example.test" and mail["From"] == "support@acme.test"
    assert "ZD-1042" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    assert session["customer_url"] in body and "Hello Ana" in body and "No app or account" in body
    # The link in the mail is the customer's, and it opens their page.
    link = next(word for word in body.split() if "/s/" in word)
    assert (await client.get(f"/s/{token_of(link)}")).status == 200

    texted = await client.post(url, json={"phone": "+351912345678"}, headers=auth)
    assert texted.status == 200
    assert texts == [{"to": "+351912345678", "text": texts[0]["text"]}]
    assert session["customer_url"] in texts[0]["text"]

    for bad in ({}, {"email": "not-an-address"}, {"phone": "912345678"},
                {"email": "ana@example.test", "phone": "+351912345678"}):
        assert (await client.post(url, json=bad, headers=auth)).status == 422, bad
    events = (await (await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)).json())["events"]
    assert [e["data"] for e in events if e["type"] == "invitation.sent"] == [
        {"channel": "email", "to": "a***@example.test"}, {"channel": "sms", "to": "***678"}]

    # Ended sessions send nothing: the link would not work anyway.
    await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": "no_show"}, headers=auth)
    late = await client.post(url, json={"email": "ana@example.test"}, headers=auth)
    assert late.status == 409 and len(inbox.messages) == 1


async def test_unconfigured_or_failing_channels_say_so(aiohttp_client: ClientFactory,
                                                       settings: Settings) -> None:
    client, auth = await start_app(aiohttp_client, settings)
    session = await (await client.post("/api/v1/sessions", json={"ticket_id": "ZD-1", "tier": 2},
                                       headers=auth)).json()
    url = f"/api/v1/sessions/{session['id']}/invitations"
    unconfigured = await client.post(url, json={"email": "ana@example.test"}, headers=auth)
    assert unconfigured.status == 422
    assert (await unconfigured.json())["error"]["code"] == "email_not_configured"
    # A mail server that is down: a clear 502, nothing recorded as sent.
    client2, auth2 = await start_app(aiohttp_client, replace(settings, smtp_host="127.0.0.1",
                                                         smtp_port=free_port(), smtp_starttls=False))
    session2 = await (await client2.post("/api/v1/sessions", json={"ticket_id": "ZD-2", "tier": 2},
                                         headers=auth2)).json()
    down = await client2.post(f"/api/v1/sessions/{session2['id']}/invitations",
                              json={"email": "ana@example.test"}, headers=auth2)
    assert down.status == 502 and (await down.json())["error"]["code"] == "invitation_failed"


async def test_the_link_page_sends_the_customer_their_link(
        aiohttp_client: ClientFactory, settings: Settings, smtp: tuple[Inbox, int],
        sms_relay: tuple[list[dict[str, Any]], str]) -> None:
    from tests.test_accounts import add_user, csrf_of, sign_in
    from visassist.context import AppContext

    inbox, port = smtp
    texts, relay_url = sms_relay
    settings = replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                       smtp_from="support@acme.test", sms_url=relay_url, sms_token="relay-token")
    client, _ = await start_app(aiohttp_client, settings)
    await add_user(client, "sam@support.test", "agent")
    await sign_in(client, "sam@support.test")
    csrf = csrf_of(await (await client.get("/")).text())
    made = await client.post("/sessions/new", data={"csrf": csrf, "ticket_id": "ZD-55", "tier": "2",
                                                    "customer_name": "Ana"}, allow_redirects=False)
    link_page = made.headers["Location"]
    page = await (await client.get(link_page)).text()
    assert "Send by e-mail or SMS" in page
    customer_url = page.split('id="customer-url" readonly value="')[1].split('"')[0]
    send = link_page.replace("/link", "/send")

    mailed = await client.post(send, data={"csrf": csrf, "address": "ana@example.test"})
    assert mailed.status == 200 and "Sent by e-mail to a***@example.test" in await mailed.text()
    [mail] = inbox.messages
    assert customer_url in mail.get_payload(decode=True).decode()
    texted = await client.post(send, data={"csrf": csrf, "address": "+44 7700 900123"})
    assert "Sent by SMS to" in await texted.text() and customer_url in texts[0]["text"]
    wrong = await client.post(send, data={"csrf": csrf, "address": "not an address"})
    assert wrong.status == 400 and "country code" in await wrong.text()

    events = await client.app[AppContext.KEY].store.events(link_page.split("/")[2])
    sent = [(e.actor, e.data.public()["channel"]) for e in events if e.type.value == "invitation.sent"]
    assert sent == [("user:sam@support.test", "email"), ("user:sam@support.test", "sms")]
