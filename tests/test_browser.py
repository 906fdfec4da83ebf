"""The whole product in real headless Chromium: a phone customer with a fake camera, an agent console."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from playwright.async_api import BrowserContext, Playwright, expect

from tests.browser import (
    console_errors,
    drag,
    get_png,
    launch_options,
    new_session,
    record,
    wait_playing,
)
from tests.utils import MARKER_ID, detect_markers, red_fraction


async def test_escalation_end_to_end(api: aiohttp.ClientSession, phone: BrowserContext,
                                     desktop: BrowserContext) -> None:
    session = await new_session(api)

    agent = await desktop.new_page()
    agent_errors = console_errors(agent)
    await agent.goto(session["agent_url"])
    await expect(agent.get_by_test_id("ticket-id")).to_have_text("ZD-1042")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Waiting for the customer")
    await expect(agent.get_by_test_id("snapshot")).to_be_disabled()

    customer = await phone.new_page()
    customer_errors = console_errors(customer)
    await customer.goto(session["customer_url"])
    await expect(customer.get_by_role("heading", name="Show your support agent")).to_be_visible()
    await expect(customer.get_by_text("saved with your support ticket")).to_be_visible()
    await customer.get_by_test_id("join").tap()
    await expect(customer.get_by_test_id("local-video")).to_be_visible()
    await wait_playing(customer, "local-video")
    await expect(customer.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)

    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await wait_playing(agent, "remote-video")
    await expect(agent.get_by_test_id("snapshot")).to_be_enabled()

    # Default tool is the arrow: drag from the upper middle to the right, away from the marker.
    await drag(agent, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> *")).to_have_count(1, timeout=5_000)
    thumbnail = agent.get_by_test_id("snapshot-list").locator("img")
    await expect(thumbnail).to_have_js_property("complete", True)
    assert await thumbnail.evaluate("img => img.naturalWidth") > 0

    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        snapshots = (await response.json())["snapshots"]
    assert len(snapshots) == 1
    snapshot = snapshots[0]
    [arrow] = snapshot["annotations"]
    assert arrow["kind"] == "arrow"
    (tx, ty), (hx, hy) = arrow["points"]
    assert abs(tx - 0.6) < 0.03 and abs(ty - 0.2) < 0.03 and abs(hx - 0.9) < 0.03 and abs(hy - 0.5) < 0.03

    raw = await get_png(api, snapshot["raw_url"])
    annotated = await get_png(api, snapshot["annotated_url"])
    assert raw.shape[:2] == (snapshot["height"], snapshot["width"])
    assert MARKER_ID in detect_markers(raw), "the snapshot holds what the camera showed"
    assert MARKER_ID in detect_markers(annotated), "the drawing does not cover the marker"
    assert red_fraction(annotated, 0.71, 0.29, 0.79, 0.41) > 0.05, "the arrow is where it was drawn"
    assert red_fraction(raw, 0.55, 0.15, 0.95, 0.55) < 0.001
    assert red_fraction(annotated, 0.0, 0.6, 0.5, 1.0) < 0.001

    await agent.get_by_test_id("outcome").select_option("resolved")
    await agent.locator("#notes").fill("Reseated the HDMI cable")
    await agent.get_by_test_id("end-session").click()
    await expect(customer.get_by_role("heading", name="The session has ended")).to_be_visible()
    await expect(agent.get_by_test_id("connection-state")).to_have_text("Session ended")

    # Customer satisfaction, once the session has ended.
    await customer.get_by_text("4", exact=True).tap()
    await customer.get_by_label("Anything to add?").fill("Quick and clear")
    await customer.get_by_role("button", name="Send feedback").tap()
    await expect(customer.get_by_text("Thank you for your feedback.")).to_be_visible()

    async with api.get(f"/api/v1/tickets/{session['ticket_id']}") as response:
        record = (await response.json())["sessions"][0]
    assert record["status"] == "ended"
    assert record["outcome"]["outcome"] == "resolved"
    assert record["outcome"]["notes"] == "Reseated the HDMI cable"
    assert record["duration_seconds"] > 0
    assert (record["rating"]["rating"], record["rating"]["comment"]) == (4, "Quick and clear")
    assert [s["id"] for s in record["snapshots"]] == [snapshot["id"]]
    types = [e["type"] for e in record["events"]]
    assert types[0] == "session.created"
    assert [t for t in types if t == "participant.joined"][:2] == ["participant.joined"] * 2
    for expected in ("link.opened", "camera.allowed", "media.started", "snapshot.captured", "session.ended",
                     "participant.left", "session.rated"):
        assert expected in types

    # The links stop working once the session has ended.
    await customer.reload()
    await expect(customer.get_by_role("heading", name="This session has ended")).to_be_visible()
    assert agent_errors == [] and customer_errors == []


@pytest.mark.parametrize(("fake_devices", "grant_camera", "title", "reason"), [
    (True, False, "Camera access is off", "refused"),
    (False, True, "No camera found", "missing"),
])
async def test_customer_told_plainly_when_camera_is_refused_or_missing(
    playwright: Playwright, api: aiohttp.ClientSession, fake_devices: bool, grant_camera: bool, title: str,
    reason: str,
) -> None:
    session = await new_session(api)
    browser = await playwright.chromium.launch(
        **launch_options(None, fake_devices=fake_devices, grant_camera=grant_camera))
    try:
        context = await browser.new_context(**playwright.devices["Pixel 7"])
        page = await context.new_page()
        await page.goto(session["customer_url"])
        await page.get_by_test_id("join").tap()
        await expect(page.get_by_role("alert")).to_contain_text(title)
        await expect(page.get_by_role("button", name="Try again")).to_be_visible()
        # The agent can see the customer arrived without a camera, and talk them through it; the
        # timeline says where the customer got to, and why they stopped (the join funnel). The page
        # says so once its socket (opened as the camera was asked for) is welcomed.
        for _ in range(50):
            body = await record(api, session["id"])
            customer = next(p for p in body["participants"] if p["role"] == "customer")
            failed = [e["data"] for e in body["events"] if e["type"] == "camera.failed"]
            if customer["connected"] and failed:
                break
            await asyncio.sleep(0.1)
        assert customer["connected"] is True
        assert "media.started" not in [e["type"] for e in body["events"]]
        opened = next(e for e in body["events"] if e["type"] == "link.opened")
        assert opened["data"]["browser"].startswith("Chrome Mobile") and opened["data"]["mobile"] is True
        assert failed and failed[0]["reason"] == reason and failed[0]["error"]
        assert [e["actor"] for e in body["events"] if e["type"] == "camera.failed"] == [customer["id"]]
    finally:
        await browser.close()


async def test_reload_brings_both_sides_back_into_the_session(
    api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext
) -> None:
    session = await new_session(api)
    agent = await desktop.new_page()
    await agent.goto(session["agent_url"])
    customer = await phone.new_page()
    await customer.goto(session["customer_url"])
    await customer.get_by_test_id("join").tap()
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)

    # The phone's page reloads (a tap on refresh, a browser that dropped the tab): same link, same session.
    await customer.reload()
    await expect(agent.get_by_test_id("connection-state")).not_to_contain_text("Live", timeout=15_000)
    await customer.get_by_test_id("join").tap()
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)

    # The agent's console reloads: it comes back to the live picture and its snapshot list.
    await agent.get_by_test_id("snapshot").click()
    await expect(agent.get_by_test_id("snapshot-list").locator("> *")).to_have_count(1)
    await agent.reload()
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await expect(agent.get_by_test_id("snapshot-list").locator("> *")).to_have_count(1)
    await wait_playing(agent, "remote-video")

    async with api.get(f"/api/v1/sessions/{session['id']}") as response:
        events = (await response.json())["events"]
    joins = [(e["data"]["role"], e["data"]["rejoin"]) for e in events if e["type"] == "participant.joined"]
    assert joins == [("agent", False), ("customer", False), ("customer", True), ("agent", True)]


# Times the console's socket traffic: when its offer went out, and when the server echoed a chat that was
# sent just after its first mDNS candidate (every console: it has no camera permission, so it hides).
SOCKET_TIMES = """
(() => {
  window.socketTimes = {mdns: 0};
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const message = JSON.parse(data);
    if (message.type === "offer" && !window.socketTimes.offer) {
      window.socketTimes.offer = performance.now();
      this.addEventListener("message", (event) => {
        const reply = JSON.parse(event.data);
        if (reply.type === "chat" && reply.message.text === "first words") {
          window.socketTimes.chat = performance.now();
        }
      });
    }
    if (message.type === "ice" && (message.candidate || "").includes(".local")) {
      if (window.socketTimes.mdns++ === 0) {
        setTimeout(() => send.call(this, JSON.stringify({type: "chat", text: "first words"})), 20);
      }
    }
    return send.call(this, data);
  };
})();
"""


async def test_a_console_hiding_its_addresses_acts_at_once(api: aiohttp.ClientSession,
                                                           playwright: Playwright) -> None:
    # No camera permission (the prompt is dismissed): the page hides its addresses, as consoles do.
    browser = await playwright.chromium.launch(**launch_options(None, grant_camera=False, mdns=True))
    try:
        session = await new_session(api)
        page = await browser.new_page()
        await page.add_init_script(SOCKET_TIMES)
        await page.goto(session["agent_url"])
        await page.wait_for_function("() => window.socketTimes.chat !== undefined", timeout=10_000)
        times = await page.evaluate("() => window.socketTimes")
        took = (times["chat"] - times["offer"]) / 1000
        print(f"\nconsole with mDNS names: {times['mdns']} .local candidates; offer -> chat echoed "
              f"{took * 1000:.0f} ms")
        assert times["mdns"] >= 1 and took < 0.5, times
    finally:
        await browser.close()
