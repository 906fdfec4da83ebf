"""The staff pages in real headless Chromium: home updating live, the New session QR code, analytics
whose funnel matches what the test's customers did, and the ticket record's gallery."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import cv2
import numpy as np
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page, Playwright, expect

from tests.browser import console_errors, join_as_customer, launch_options, new_session, record, wait_playing
from tests.test_accounts import PASSWORD
from tests.utils import MARKER_ID, Clock, detect_markers
from visassist.accounts import hash_password
from visassist.context import AppContext
from visassist.tokens import new_id

SCREEN = {"width": 1440, "height": 900}


async def add_person(server: TestServer, email: str, name: str, role: str) -> None:
    await server.app[AppContext.KEY].store.create_user(new_id("usr"), email, name, role,
                                                       hash_password(PASSWORD), "tests")


async def signed_in_page(context: BrowserContext, server: TestServer, email: str) -> Page:
    page = await context.new_page()
    await page.goto(str(server.make_url("/login")))
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    return page


async def wait_for_event(api: aiohttp.ClientSession, session_id: str, kind: str, count: int = 1) -> None:
    for _ in range(150):
        if sum(e["type"] == kind for e in (await record(api, session_id))["events"]) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} in session {session_id}")


async def test_home_updates_live_when_a_customer_joins(
        server: TestServer, api: aiohttp.ClientSession, desktop: BrowserContext,
        phone: BrowserContext) -> None:
    await add_person(server, "lead@support.test", "Lee Lead", "supervisor")
    home = await signed_in_page(desktop, server, "lead@support.test")
    errors = console_errors(home)
    await expect(home.get_by_test_id("waiting")).to_contain_text("Nobody is waiting.")

    session = await new_session(api, ticket_id="ZD-4242", customer={"name": "Ana"})
    waiting = home.get_by_test_id("waiting").locator("tr", has_text="ZD-4242")
    await expect(waiting).to_be_visible(timeout=5_000)
    await expect(waiting).to_contain_text("Ana")

    customer = await join_as_customer(phone, session["customer_url"])
    live = home.get_by_test_id("live").locator("tr", has_text="ZD-4242")
    await expect(live).to_contain_text("Ana (customer)", timeout=10_000)
    await expect(home.get_by_test_id("waiting")).to_contain_text("Nobody is waiting.")
    await expect(home.get_by_test_id("live-count")).to_have_text("1")

    # A supervisor joins from here, silently.
    await live.get_by_role("button", name="Join ZD-4242 silently").click()
    await expect(home.get_by_test_id("my-role")).to_have_text("Supervisor", timeout=10_000)
    await wait_playing(home, "remote-video")
    await customer.close()
    assert errors == []


async def test_the_new_session_qr_code_decodes_to_the_customer_link(
        server: TestServer, desktop: BrowserContext, phone: BrowserContext) -> None:
    await add_person(server, "sam@support.test", "Sam Agent", "agent")
    page = await signed_in_page(desktop, server, "sam@support.test")
    errors = console_errors(page)
    await page.get_by_label("Ticket id").fill("ZD-808")
    await page.get_by_label("Customer's name").fill("Bea")
    await page.get_by_label("Record the session").check()
    await page.get_by_test_id("create-session").click()
    await expect(page.get_by_test_id("link-ticket")).to_have_text("ZD-808")
    link = await page.get_by_test_id("customer-url").input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{20,}", link)

    shot = await page.screenshot(full_page=True)
    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    decoded, points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert points is not None and decoded == link, "a phone scanning the code gets the customer's link"

    await page.get_by_test_id("copy-link").click()
    await expect(page.get_by_role("status").first).to_contain_text("copied", ignore_case=True)

    customer = await phone.new_page()
    await customer.goto(decoded)
    await expect(customer.get_by_text("This call is recorded")).to_be_visible()
    await page.get_by_test_id("open-console").click()
    await expect(page.get_by_test_id("ticket-id")).to_have_text("ZD-808")
    assert errors == []


async def test_analytics_funnel_matches_the_sessions_and_the_record_shows_the_snapshot(
        playwright: Playwright, server: TestServer, api: aiohttp.ClientSession, clock: Clock,
        desktop: BrowserContext, phone: BrowserContext) -> None:
    await add_person(server, "boss@support.test", "Bo Boss", "admin")
    connected = [await new_session(api, ticket_id=f"ZD-90{n}") for n in (1, 2)]
    refused = await new_session(api, ticket_id="ZD-903")
    unused = await new_session(api, ticket_id="ZD-904", ttl_seconds=60)

    console = await signed_in_page(desktop, server, "boss@support.test")
    errors = console_errors(console)
    await console.goto(connected[0]["agent_url"])
    customers = [await join_as_customer(phone, s["customer_url"]) for s in connected]
    await wait_playing(console, "remote-video")
    await console.get_by_test_id("snapshot").click()
    await expect(console.get_by_test_id("snapshot-list").locator("> *")).to_have_count(1, timeout=5_000)
    for session in connected:
        await wait_for_event(api, session["id"], "media.started")

    no_camera = await playwright.chromium.launch(**launch_options(None, grant_camera=False))
    try:
        context = await no_camera.new_context(**playwright.devices["Pixel 7"])
        page = await join_as_customer(context, refused["customer_url"])
        await expect(page.get_by_role("alert")).to_contain_text("Camera access is off")
        await wait_for_event(api, refused["id"], "camera.failed")
    finally:
        await no_camera.close()

    clock.advance(seconds=90)  # the connected customers have been in for 90 s; the unused link expires
    await wait_for_event(api, unused["id"], "session.expired")
    for session, outcome in zip(connected, ("resolved", "escalated"), strict=True):
        async with api.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": outcome}) as response:
            assert response.status == 200
    for page in customers:
        await page.close()

    await console.goto(str(server.make_url("/analytics")))
    funnel = console.get_by_test_id("funnel")
    expected = {"created": 4, "link_opened": 3, "camera_allowed": 2, "media_connected": 2, "connected_30s": 2}
    for step, count in expected.items():
        await expect(funnel.locator(f"tr[data-step={step}] td").nth(1)).to_have_text(str(count))
    failures = console.get_by_test_id("failures")
    await expect(failures.locator("tr[data-cause=camera_refused] td").nth(1)).to_have_text("1")
    await expect(failures.locator("tr[data-cause=expired_unused] td").nth(1)).to_have_text("1")
    await expect(failures.locator("tr[data-cause=ice_failure] td").nth(1)).to_have_text("0")
    for chart in ("funnel", "causes", "outcomes", "csat", "agents"):  # ECharts drew every chart
        canvas = console.locator(f"#chart-{chart} canvas")
        await expect(canvas).to_have_count(1)
        assert (await canvas.bounding_box() or {}).get("width", 0) > 100

    await console.goto(str(server.make_url("/tickets/ZD-901")))
    raw = console.get_by_test_id("raw-image")
    await expect(raw).to_have_count(1)
    await raw.scroll_into_view_if_needed()
    await expect(raw).to_have_js_property("complete", True)
    picture = cv2.imdecode(np.frombuffer(await raw.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    assert MARKER_ID in detect_markers(picture), "the gallery shows what the camera saw"
    await expect(console.get_by_test_id("snapshot-source")).to_have_text("The camera")
    await expect(console.get_by_test_id("timeline")).to_contain_text("allowed the camera")
    assert errors == []


