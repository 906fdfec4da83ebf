"""The label reader in the agent console, in real headless Chromium with the camera clip ("SN VX-2231-A")."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import BrowserContext, Page, expect

from tests.browser import console_errors, new_session, wait_playing
from tests.utils import SERIAL


async def call(api: aiohttp.ClientSession, phone: BrowserContext,
               desktop: BrowserContext) -> tuple[dict[str, Any], Page, list[str]]:
    """A new session: the agent's console open (its console errors collected), the customer joined."""
    session = await new_session(api)
    agent = await desktop.new_page()
    errors = console_errors(agent)
    await agent.goto(session["agent_url"])
    customer = await phone.new_page()
    await customer.goto(session["customer_url"])
    await customer.get_by_test_id("join").tap()
    return session, agent, errors

async def test_the_agent_confirms_the_serial_number_read_off_a_snapshot(
        api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext) -> None:
    session, agent, errors = await call(api, phone, desktop)
    await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
    await wait_playing(agent, "remote-video")

    # Read the picture now: the serial number is found and its line is highlighted on the picture.
    await agent.get_by_test_id("read-label").click()
    await expect(agent.get_by_test_id("read-result")).to_contain_text(f"S/N {SERIAL}", timeout=15_000)
    await expect(agent.get_by_test_id("read-line").first).to_be_visible()

    await agent.get_by_test_id("snapshot").click()
    chip = agent.get_by_test_id("snapshot-list").get_by_test_id("chip").filter(has_text=f"S/N {SERIAL}")
    await expect(chip).to_be_visible(timeout=20_000)
    await expect(chip).to_contain_text("%")  # its confidence
    await chip.get_by_role("button", name=f"Confirm S/N {SERIAL}").click()
    await expect(chip).to_have_attribute("data-status", "confirmed")
    await expect(chip).to_contain_text("confirmed")

    async with api.get(f"/api/v1/sessions/{session['id']}") as response:
        record = await response.json()
    [field] = record["fields"]
    assert (field["name"], field["value"], field["status"]) == ("serial_number", SERIAL, "confirmed")
    assert field["confirmed_by"] == next(p["id"] for p in record["participants"] if p["role"] == "agent")
    assert errors == []


async def drag_on_picture(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag between two points of the picture (0..1), wherever the video element shows it."""
    x, y, width, height = await page.evaluate("""() => {
      const v = document.querySelector('[data-testid="remote-video"]');
      const r = v.getBoundingClientRect();
      const s = Math.min(r.width / v.videoWidth, r.height / v.videoHeight);
      const w = v.videoWidth * s, h = v.videoHeight * s;
      return [r.left + (r.width - w) / 2, r.top + (r.height - h) / 2, w, h];
    }""")
    await page.mouse.move(x + start[0] * width, y + start[1] * height)
    await page.mouse.down()
    for step in range(1, 11):
        await page.mouse.move(x + (start[0] + (end[0] - start[0]) * step / 10) * width,
                              y + (start[1] + (end[1] - start[1]) * step / 10) * height)
    await page.mouse.up()


async def test_the_agent_reads_only_the_region_dragged(
        api: aiohttp.ClientSession, phone: BrowserContext, desktop: BrowserContext) -> None:
    session, agent, errors = await call(api, phone, desktop)
    await wait_playing(agent, "remote-video")
    result = agent.get_by_test_id("read-result")

    await agent.get_by_test_id("read-region").click()
    await expect(result).to_contain_text("Drag a box")
    await drag_on_picture(agent, (0.05, 0.3), (0.5, 0.85))  # the marker, no label in it
    await expect(result).to_contain_text("No text or code found", timeout=15_000)

    await agent.get_by_test_id("read-region").click()
    await drag_on_picture(agent, (0.5, 0.0), (1.0, 0.2))  # the label
    await expect(result).to_contain_text(f"S/N {SERIAL}", timeout=15_000)
    line = agent.get_by_test_id("read-line").first
    await expect(line).to_be_visible()
    async with api.get(f"/api/v1/sessions/{session['id']}/snapshots") as response:
        assert (await response.json())["snapshots"] == [], "reading stores nothing"

    # A snapshot's chip corrected in place: the record keeps the agent's value and what was read.
    await agent.get_by_test_id("snapshot").click()
    chip = agent.get_by_test_id("chip").filter(has_text=f"S/N {SERIAL}")
    await chip.get_by_role("button", name=f"Correct S/N {SERIAL}").click(timeout=20_000)
    await agent.get_by_role("textbox", name="S/N").fill("VX-2231-B")
    await agent.keyboard.press("Enter")
    corrected = agent.get_by_test_id("chip").filter(has_text="S/N VX-2231-B")
    await expect(corrected).to_have_attribute("data-status", "confirmed")
    async with api.get(f"/api/v1/sessions/{session['id']}") as response:
        [field] = (await response.json())["fields"]
    assert (field["value"], field["read_value"]) == ("VX-2231-B", SERIAL)
    assert errors == []
