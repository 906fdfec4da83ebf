"""The agent console where agents use it: the snapshot strip in view at 1440x900, the selected colour shown
as it is, and a working console at 1280x720 and on a tablet (real Chromium, the phone's real video)."""

from __future__ import annotations

from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, expect

from tests.browser import console_errors, drag, join_as_customer, new_session, record, wait_playing

RED, BLUE = (255, 59, 48), (10, 132, 255)


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in css.removeprefix("rgb(").removesuffix(")").split(", ")[:3])


async def _swatch(page: Page, name: str) -> tuple[tuple[int, ...], str]:
    swatch = page.get_by_role("button", name=name, exact=True)
    colour = await swatch.evaluate("b => getComputedStyle(b).backgroundColor")
    return _rgb(colour), str(await swatch.get_attribute("aria-pressed"))


async def _pixel(page: Page, name: str) -> tuple[int, ...]:
    """What a person sees at the swatch's centre (the screenshot, not the style sheet)."""
    box = await page.get_by_role("button", name=name, exact=True).bounding_box()
    assert box is not None
    shot = cv2.imdecode(np.frombuffer(await page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    b, g, r = shot[int(box["y"] + 6), int(box["x"] + 6)]  # off the centre's tick mark
    return int(r), int(g), int(b)


async def _in_view(page: Page, testid: str) -> dict[str, float]:
    box = await page.get_by_test_id(testid).bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"] + 1, f"{testid} is off screen"
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 1, f"{testid} is off screen"
    return box


async def _console_with_a_customer(api: aiohttp.ClientSession, context: BrowserContext,
                                   phone: BrowserContext) -> tuple[dict[str, Any], Page]:
    session = await new_session(api)
    agent = await context.new_page()
    await agent.goto(session["agent_url"])
    await join_as_customer(phone, session["customer_url"])
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await wait_playing(agent, "remote-video")
    return session, agent


@pytest.mark.parametrize("size", [(1440, 900), (1280, 720)])
async def test_snapshots_in_view_and_the_colour_shown_truly(
        browser: Browser, api: aiohttp.ClientSession, phone: BrowserContext, size: tuple[int, int]) -> None:
    context = await browser.new_context(viewport={"width": size[0], "height": size[1]})
    try:
        session, agent = await _console_with_a_customer(api, context, phone)
        errors = console_errors(agent)
        stage = await _in_view(agent, "annotation-canvas")
        assert stage["height"] >= 0.45 * size[1], "the picture keeps most of the screen"

        # The selected colour is the one shown: red, ringed and ticked; then blue.
        assert await _swatch(agent, "Red") == (RED, "true")
        assert await _pixel(agent, "Red") == pytest.approx(RED, abs=12)
        await agent.get_by_role("button", name="Blue", exact=True).click()
        assert await _swatch(agent, "Blue") == (BLUE, "true")
        assert await _swatch(agent, "Red") == (RED, "false")
        assert await _pixel(agent, "Red") == pytest.approx(RED, abs=12)

        await drag(agent, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
        await agent.get_by_test_id("snapshot").click()
        thumbnail = agent.get_by_test_id("snapshot-list").locator("img")
        await expect(thumbnail).to_have_count(1, timeout=5_000)
        await expect(thumbnail).to_have_js_property("complete", True)
        # Where the agent is looking: under the picture, on screen, with nothing scrolled, and the
        # picture did not move to make room.
        await _in_view(agent, "snapshot-strip")
        assert await _in_view(agent, "annotation-canvas") == stage
        box = await thumbnail.bounding_box()
        assert box is not None and box["y"] > stage["y"] + stage["height"] - 1
        assert box["y"] + box["height"] <= size[1] and box["width"] > 80
        assert await agent.evaluate("() => [window.scrollX, window.scrollY]") == [0, 0]
        await _in_view(agent, "snapshot")
        [snapshot] = (await record(api, session["id"]))["snapshots"]
        assert snapshot["annotations"][0]["color"] == "#0a84ff"
        assert errors == []
    finally:
        await context.close()


@pytest.mark.parametrize("device", ["iPad (gen 7)", "iPad (gen 7) landscape"])
async def test_the_console_works_on_a_tablet(playwright: Playwright, browser: Browser,
                                             api: aiohttp.ClientSession, phone: BrowserContext,
                                             device: str) -> None:
    context = await browser.new_context(**playwright.devices[device])
    try:
        session, agent = await _console_with_a_customer(api, context, phone)
        errors = console_errors(agent)
        stage = await _in_view(agent, "annotation-canvas")
        assert stage["height"] >= 300
        await drag(agent, "annotation-canvas", (0.6, 0.2), (0.9, 0.5))
        await agent.get_by_test_id("snapshot").tap()
        await expect(agent.get_by_test_id("snapshot-list").locator("img")).to_have_count(1, timeout=5_000)
        await _in_view(agent, "snapshot-strip")
        [snapshot] = (await record(api, session["id"]))["snapshots"]
        assert [a["kind"] for a in snapshot["annotations"]] == ["arrow"]
        # The end of the session is reachable by scrolling the page or the side panel.
        await agent.get_by_test_id("outcome").scroll_into_view_if_needed()
        await agent.get_by_test_id("outcome").select_option("resolved")
        await agent.get_by_test_id("end-session").tap()
        await expect(agent.get_by_test_id("connection-state")).to_have_text("Session ended")
        assert errors == []
    finally:
        await context.close()
