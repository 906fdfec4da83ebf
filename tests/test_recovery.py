"""The phone's camera or page changes under a live call, and the call recovers by itself."""

from __future__ import annotations

import asyncio

import aiohttp
from playwright.async_api import BrowserContext, expect

from tests.browser import (
    COUNT_FRAMES,
    COUNT_OFFERS,
    console_errors,
    frames_since,
    join_as_customer,
    new_session,
    open_console,
    wait_playing,
)

# Every text the customer's status line shows, in order (what the person read, however briefly).
WATCH_STATUS = """
window.statusTexts = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("[data-testid=connection-state]");
  new MutationObserver(() => window.statusTexts.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
});
"""


async def test_the_camera_starts_again_when_its_track_ends(api: aiohttp.ClientSession, phone: BrowserContext,
                                                            desktop: BrowserContext) -> None:
    """Another app takes the camera (the track ends): the page says so, starts the camera again by itself
    and the agent's picture flows again on the same connection."""
    session = await new_session(api)
    agent = await open_console(desktop, session["agent_url"])
    customer = await join_as_customer(phone, session["customer_url"], WATCH_STATUS + COUNT_OFFERS)
    errors = console_errors(customer)
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await wait_playing(agent, "remote-video")
    await agent.evaluate(COUNT_FRAMES, "remote-video")
    offers = await customer.evaluate("() => window.offersSent")

    # What the browser does when the camera is taken away: the track ends and says so.
    await customer.evaluate("""() => {
      const track = document.querySelector("[data-testid=local-video]").srcObject.getVideoTracks()[0];
      track.stop();
      track.dispatchEvent(new Event("ended"));
    }""")
    ended = float(await agent.evaluate("performance.now()"))
    await expect(customer.get_by_test_id("connection-state")).to_contain_text("Live", timeout=5_000)
    assert "The camera stopped: starting it again…" in await customer.evaluate("() => window.statusTexts")
    assert await customer.evaluate(
        "() => document.querySelector('[data-testid=local-video]').srcObject.getVideoTracks()[0].readyState"
    ) == "live"
    for _ in range(50):
        if await frames_since(agent, ended + 500) >= 15:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the agent's picture did not come back after the camera restarted")
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live")
    assert await customer.evaluate("() => window.offersSent") == offers, "the same connection carries on"
    assert not errors
