"""Accounts: sign-in, rate limits, CSRF, roles on staff links, the admin page and its audit log."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient

from tests.utils import FakeParticipant, token_of
from visassist.accounts import hash_password
from visassist.context import AppContext
from visassist.tokens import new_id

Create = Callable[..., Awaitable[dict[str, Any]]]
PASSWORD = "correct horse battery staple"


async def add_user(client: TestClient, email: str, role: str) -> None:
    await client.app[AppContext.KEY].store.create_user(new_id("usr"), email, email.split("@")[0], role,
                                                       hash_password(PASSWORD), "tests")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


async def sign_in(client: TestClient, email: str, password: str = PASSWORD, next: str = "/") -> Any:
    client.session.cookie_jar.clear()
    form = await (await client.get(f"/login?next={next}")).text()
    return await client.post("/login", data={"email": email, "password": password, "csrf": csrf_of(form),
                                             "next": next}, allow_redirects=False)


async def test_sign_in_sets_a_safe_cookie(client: TestClient) -> None:
    await add_user(client, "ana@support.test", "agent")
    wrong = await sign_in(client, "ana@support.test", "not the password")
    assert wrong.status == 401 and "don&#39;t match" in await wrong.text()
    unknown = await sign_in(client, "nobody@support.test")
    assert unknown.status == 401
    right = await sign_in(client, "ana@support.test", next="/a/whatever")
    assert right.status == 303 and right.headers["Location"] == "/a/whatever"
    cookie = right.headers["Set-Cookie"]
    assert "visassist_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    elsewhere = await sign_in(client, "ana@support.test", next="https://evil.test/")
    assert elsewhere.headers["Location"] == "/", "never an open redirect"


async def test_sign_in_is_rate_limited(client: TestClient) -> None:
    await add_user(client, "bo@support.test", "agent")
    for _ in range(5):
        assert (await sign_in(client, "bo@support.test", "guess guess guess")).status == 401
    blocked = await sign_in(client, "bo@support.test")
    assert blocked.status == 429 and "Too many attempts" in await blocked.text()


async def test_forms_need_their_csrf_token(client: TestClient) -> None:
    await add_user(client, "admin@support.test", "admin")
    no_token = await client.post("/login", data={"email": "admin@support.test", "password": PASSWORD})
    assert no_token.status == 403
    await sign_in(client, "admin@support.test")
    page = await (await client.get("/admin")).text()
    token = csrf_of(page)
    assert (await client.post("/admin/api-key-create", data={"name": "x"})).status == 403
    cross = await client.post("/admin/api-key-create", data={"name": "x", "csrf": token},
                              headers={"Origin": "https://evil.test"})
    assert cross.status == 403
    assert "api_key.create" not in await (await client.get("/admin")).text()


async def test_staff_links_need_a_fitting_signed_in_person(client: TestClient, create_session: Create,
                                                          auth: dict[str, str]) -> None:
    session = await create_session()
    agent_path = f"/a/{token_of(session['agent_url'])}"
    # Before any account exists, links work on their own (a fresh install).
    assert (await client.get(agent_path)).status == 200
    for email, role in (("ana@support.test", "agent"), ("cy@support.test", "agent"),
                        ("sup@support.test", "supervisor"), ("tier3@support.test", "expert")):
        await add_user(client, email, role)
    client.session.cookie_jar.clear()
    redirect = await client.get(agent_path, allow_redirects=False)
    assert redirect.status == 303
    assert unquote(redirect.headers["Location"]) == f"/login?next={agent_path}", "sign in, then back"
    await sign_in(client, "sup@support.test")
    assert (await client.get(agent_path)).status == 403, "a supervisor cannot open an agent's link"
    await sign_in(client, "ana@support.test")
    assert (await client.get(agent_path)).status == 200
    await sign_in(client, "cy@support.test")
    other = await client.get(agent_path)
    assert other.status == 403 and "belongs to another agent" in await other.text()
    # An expert link is for experts; the customer link needs no account at all.
    invited = await (await client.post(f"/api/v1/sessions/{session['id']}/participants",
                                       json={"role": "expert"}, headers=auth)).json()
    assert (await client.get(f"/a/{token_of(invited['url'])}")).status == 403
    await sign_in(client, "tier3@support.test")
    assert (await client.get(f"/a/{token_of(invited['url'])}")).status == 200
    client.session.cookie_jar.clear()
    assert (await client.get(f"/s/{token_of(session['customer_url'])}")).status == 200


async def test_the_socket_checks_the_person_and_the_origin(client: TestClient,
                                                           create_session: Create) -> None:
    session = await create_session()
    await add_user(client, "ana@support.test", "agent")
    client.session.cookie_jar.clear()
    hello = {"type": "hello", "protocol": 1, "token": token_of(session["agent_url"])}
    ws = await client.ws_connect("/ws")
    await ws.send_json(hello)
    assert (await ws.receive_json())["code"] == "sign_in_required"
    await ws.close()
    await sign_in(client, "ana@support.test")
    agent = FakeParticipant(client, token_of(session["agent_url"]))
    try:
        assert (await agent.join())["participant"]["role"] == "agent"
    finally:
        await agent.close()
    ws = await client.ws_connect("/ws", headers={"Origin": "https://evil.test"})
    await ws.send_json(hello)
    assert (await ws.receive_json())["code"] == "forbidden", "cross-site sockets are refused"
    await ws.close()


async def test_admin_page_manages_keys_and_webhooks_and_keeps_an_audit_log(client: TestClient) -> None:
    await add_user(client, "agent@support.test", "agent")
    await add_user(client, "admin@support.test", "admin")
    await sign_in(client, "agent@support.test")
    assert (await client.get("/admin")).status == 403
    await sign_in(client, "admin@support.test")
    token = csrf_of(await (await client.get("/admin")).text())
    created = await client.post("/admin/api-key-create", data={"name": "zendesk", "csrf": token})
    page = await created.text()
    key = re.search(r"<code>(vak_[^<]+)</code>", page)
    assert key, "the new key is shown once"
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    assert (await client.get("/api/v1/webhooks", headers=headers)).status == 200
    assert key.group(1) not in await (await client.get("/admin")).text(), "and only once"
    key_id = re.search(r'data-key-id="(key_[^"]+)"', page)
    assert key_id
    revoked = await client.post("/admin/api-key-revoke", data={"id": key_id.group(1), "csrf": token},
                                allow_redirects=False)
    assert revoked.status == 303
    assert (await client.get("/api/v1/webhooks", headers=headers)).status == 401
    hook = await client.post("/admin/webhook-create", data=[("url", "http://127.0.0.1:9/hook"),
                                                            ("events", "session.ended"), ("csrf", token)])
    assert "whsec_" in await hook.text()
    audit = await (await client.get("/admin")).text()
    for action in ("api_key.create", "api_key.revoke", "webhook.create"):
        assert action in audit
    bad = await client.post("/admin/user-create", data={"email": "x@support.test", "name": "X",
                                                        "role": "agent", "password": "short", "csrf": token})
    assert bad.status == 400 and "12 characters" in await bad.text()


def test_cli_manages_people_keys_and_webhooks(tmp_path: Path) -> None:
    visassist = str(Path(sys.executable).with_name("visassist"))

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([visassist, *args, "--data-dir", str(tmp_path)], input=stdin,
                              capture_output=True, text=True, timeout=60)

    made = run("user", "create", "--email", "lee@support.test", "--name", "Lee", "--role", "supervisor",
               "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert "lee@support.test" in run("user", "list").stdout
    short = run("user", "create", "--email", "x@support.test", "--name", "X", "--role", "agent",
                "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "12 characters" in short.stderr
    run("api-key", "create", "--name", "ci")
    key_id = run("api-key", "list").stdout.split("\t")[0]
    assert run("api-key", "revoke", key_id).returncode == 0
    assert "REVOKED" in run("api-key", "list").stdout
    hook = run("webhook", "add", "--url", "https://helpdesk.test/hook", "--events", "session.ended")
    hook_id, secret = hook.stdout.strip().split("\t")
    assert secret.startswith("whsec_")
    assert run("webhook", "add", "--url", "https://x.test", "--events", "nope").returncode == 2
    assert run("webhook", "remove", hook_id).returncode == 0
    assert "REMOVED" in run("webhook", "list").stdout
    assert run("user", "disable", "--email", "lee@support.test").returncode == 0
    assert "DISABLED" in run("user", "list").stdout


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
