"""Real network faults: a `visassist serve` and Chromium (a phone and an agent console) in a network
namespace of the test's own, where iptables drops the customer's traffic for a while. What a person
would see is measured: frames presented in the agent's video, and the status text on both pages."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Playwright, expect

from tests.browser import COUNT_FRAMES, launch_options, wait_playing
from tests.netns import WHY_NOT, Namespace
from tests.test_restart import VISASSIST, create_key
from tests.utils import free_port

pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

PAUSED = "Picture paused: weak connection"


@pytest.fixture
def netns() -> Iterator[Namespace]:
    namespace = Namespace()
    yield namespace
    namespace.close()


@contextlib.asynccontextmanager
async def serve_in(netns: Namespace, data_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    log_path = data_dir.parent / "serve.log"
    with open(log_path, "ab") as log:  # noqa: ASYNC230 (opening a local file)
        process = await asyncio.create_subprocess_exec(
            *netns.enter([VISASSIST, "serve", "--port", str(port), "--data-dir", str(data_dir),
                          "--ice-address", "127.0.0.1"]), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    probe = netns.enter([sys.executable, "-c", "import sys, urllib.request as u; u.urlopen(sys.argv[1])",
                         f"{base}/healthz"])
    try:
        for _ in range(100):
            checked = await asyncio.create_subprocess_exec(*probe, stderr=subprocess.DEVNULL)
            if await checked.wait() == 0:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(log_path.read_text())
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
        output = log_path.read_text()
        assert "Traceback" not in output, output


@pytest.fixture
async def browser_in(playwright: Playwright, netns: Namespace, camera_file: Path,
                     tmp_path: Path) -> AsyncIterator[Browser]:
    options = launch_options(camera_file)
    options["executable_path"] = str(netns.executable(tmp_path, options["executable_path"]))
    browser = await playwright.chromium.launch(**options)
    yield browser
    await browser.close()


async def call_api(page: Page, key: str, method: str, path: str, body: Any = None) -> Any:
    """The REST API from inside the namespace (the test itself is outside it): a fetch from a page."""
    return await page.evaluate(
        """async ([key, method, path, body]) => {
          const response = await fetch(path, { method, headers: { Authorization: `Bearer ${key}`,
            "Content-Type": "application/json" }, body: body === null ? undefined : JSON.stringify(body) });
          return response.json();
        }""", [key, method, path, body])


async def steady_after(page: Page, since_ms: float, limit_s: float) -> float:
    """Seconds from `since_ms` (page clock) until the video runs steadily again: the first frame of a
    second with 15 or more frames in it."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        frames: list[float] = await page.evaluate("(since) => window.framesAt.filter((t) => t > since)",
                                                  since_ms)
        for index, at in enumerate(frames):
            if len([t for t in frames[index:] if t - at <= 1000]) >= 15:
                return (at - since_ms) / 1000
        await asyncio.sleep(0.2)
    raise AssertionError(f"the agent's video was not steady within {limit_s} s")


@contextlib.asynccontextmanager
async def live_call(netns: Namespace, browser: Browser, playwright: Playwright,
                    tmp_path: Path) -> AsyncIterator[tuple[Page, Page]]:
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    async with serve_in(netns, data_dir) as base:
        desktop = await browser.new_context(viewport={"width": 1280, "height": 800})
        phone = await browser.new_context(**playwright.devices["Pixel 7"])
        agent = await desktop.new_page()
        await agent.goto(f"{base}/healthz")
        session = await call_api(agent, key, "POST", "/api/v1/sessions", {"ticket_id": "ZD-5", "tier": 2})
        await agent.goto(session["agent_url"])
        customer = await phone.new_page()
        await customer.goto(session["customer_url"])
        await customer.get_by_test_id("join").tap()
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=15_000)
        await wait_playing(agent, "remote-video")
        await agent.evaluate(COUNT_FRAMES, "remote-video")
        try:
            yield agent, customer
        finally:
            await phone.close()
            await desktop.close()


@pytest.mark.parametrize(("seconds", "what"), [(5, ("-p", "udp")), (15, ("-p", "udp"))])
async def test_the_picture_comes_back_after_the_customers_network_drops(
        netns: Namespace, browser_in: Browser, playwright: Playwright, tmp_path: Path,
        seconds: float, what: tuple[str, ...]) -> None:
    async with live_call(netns, browser_in, playwright, tmp_path) as (agent, customer):
        with netns.dropping(*what):
            dropped = asyncio.get_running_loop().time()
            await expect(agent.get_by_test_id("connection-state")).to_contain_text(PAUSED, timeout=2_000)
            await expect(customer.get_by_test_id("connection-state")).to_contain_text(PAUSED, timeout=2_000)
            await asyncio.sleep(dropped + seconds - asyncio.get_running_loop().time())
        back = float(await agent.evaluate("performance.now()"))
        steady = await steady_after(agent, back, 10)
        print(f"{' '.join(what) or 'all traffic'} dropped {seconds} s: video steady {steady:.2f} s after")
        assert steady < 3
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live")
        await expect(customer.get_by_test_id("connection-state")).to_contain_text("Live")
