"""Real network faults: a `visassist serve` and Chromium (a phone and an agent console) in a network
namespace of the test's own, where iptables drops the customer's traffic for a while. What a person
would see is measured: frames presented in the agent's video, and the status text on both pages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Playwright, expect

from tests.browser import COUNT_FRAMES, COUNT_OFFERS, launch_options, wait_playing
from tests.netns import Namespace, cable, why_not
from tests.test_restart import create_key, server
from tests.utils import free_port

pytestmark = pytest.mark.skipif(why_not() is not None, reason=why_not() or "")

PAUSED = "Picture paused: weak connection"
SERVER, PHONE = "10.77.0.1", "10.77.0.2"  # the server's network and the customer's, joined by a cable


@pytest.fixture
def networks() -> Iterator[tuple[Namespace, Namespace]]:
    """The office (the server and the agent) and the customer's phone, each on a network of its own."""
    office, phone = Namespace(), Namespace()
    try:
        cable(office, phone, SERVER, PHONE)
        yield office, phone
    finally:
        phone.close()
        office.close()


def serve_in(netns: Namespace, data_dir: Path, port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """`visassist serve` in the office: reachable on loopback there, and from the phone's network."""
    return server(data_dir, port, netns=netns, args=["--host", "0.0.0.0", "--ice-address", SERVER])


async def launch_in(playwright: Playwright, netns: Namespace, camera_file: Path, directory: Path,
                    *args: str, loopback_ice: bool = True) -> Browser:
    options = launch_options(camera_file)
    options["executable_path"] = str(netns.executable(directory, options["executable_path"]))
    options["args"] = [a for a in [*options["args"], *args]
                       if loopback_ice or a != "--allow-loopback-in-peer-connection"]
    return await playwright.chromium.launch(**options)


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
async def live_call(networks: tuple[Namespace, Namespace], playwright: Playwright, camera_file: Path,
                    tmp_path: Path) -> AsyncIterator[tuple[Page, Page]]:
    """A session with the agent's console in the office and the customer on their phone, video flowing."""
    office, _ = networks
    data_dir, port = tmp_path / "data", free_port()
    key = create_key(data_dir)
    async with serve_in(office, data_dir, port) as base, \
            call_across(networks, playwright, camera_file, tmp_path, base, port, key) as pages:
        yield pages


@contextlib.asynccontextmanager
async def call_across(networks: tuple[Namespace, Namespace], playwright: Playwright, camera_file: Path,
                      tmp_path: Path, base: str, port: int, key: str, *, init_script: str | None = None,
                      live_within_ms: float = 15_000) -> AsyncIterator[tuple[Page, Page]]:
    """On the server at `base` in the office: the agent's console there and the customer on their phone
    (reaching it at SERVER:port), in a call with the agent's video flowing and its frames counted."""
    office, phone_net = networks
    remote = f"http://{SERVER}:{port}"
    console = await launch_in(playwright, office, camera_file, tmp_path)
    handset = await launch_in(playwright, phone_net, camera_file, tmp_path,
                              f"--unsafely-treat-insecure-origin-as-secure={remote}")
    try:
        desktop = await console.new_context(viewport={"width": 1280, "height": 800})
        phone = await handset.new_context(**playwright.devices["Pixel 7"])
        if init_script is not None:
            for context in (desktop, phone):
                await context.add_init_script(init_script)
        agent = await desktop.new_page()
        await agent.goto(f"{base}/healthz")
        session = await call_api(agent, key, "POST", "/api/v1/sessions", {"ticket_id": "ZD-5", "tier": 2})
        await agent.goto(session["agent_url"])
        customer = await phone.new_page()
        await customer.goto(session["customer_url"].replace(base, remote))
        await customer.get_by_test_id("join").tap()
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live", timeout=live_within_ms)
        await wait_playing(agent, "remote-video")
        await agent.evaluate(COUNT_FRAMES, "remote-video")
        yield agent, customer
    finally:
        await handset.close()
        await console.close()


@pytest.mark.parametrize(("seconds", "what", "meanwhile"), [
    (5, ("-p", "udp"), PAUSED), (15, ("-p", "udp"), PAUSED), (20, (), "Reconnecting…")])
async def test_the_picture_comes_back_after_the_customers_network_drops(
        networks: tuple[Namespace, Namespace], playwright: Playwright, camera_file: Path, tmp_path: Path,
        seconds: float, what: tuple[str, ...], meanwhile: str) -> None:
    """The customer's network loses UDP (or everything) for a while: both pages say the picture is
    paused within seconds, and the agent's video is steady again within 3 s of the network returning."""
    async with live_call(networks, playwright, camera_file, tmp_path) as (agent, customer):
        with networks[1].dropping(*what):
            dropped = asyncio.get_running_loop().time()
            await expect(agent.get_by_test_id("connection-state")).to_contain_text(PAUSED, timeout=2_000)
            await expect(customer.get_by_test_id("connection-state")).to_contain_text(meanwhile, timeout=8000)
            await asyncio.sleep(dropped + seconds - asyncio.get_running_loop().time())
            await expect(agent.get_by_test_id("connection-state")).not_to_contain_text("Live")
        back = float(await agent.evaluate("performance.now()"))
        steady = await steady_after(agent, back, 10)
        print(f"{' '.join(what) or 'everything'} dropped {seconds} s: video steady {steady:.2f} s after")
        assert steady < 3
        await expect(agent.get_by_test_id("connection-state")).to_contain_text("Live")
        await expect(customer.get_by_test_id("connection-state")).to_contain_text("Live")


async def test_a_peer_that_cannot_connect_backs_off(playwright: Playwright, camera_file: Path,
                                                    tmp_path: Path) -> None:
    """A machine with no network but its loopback, where the browser gathers no ICE candidates: its
    connection never connects. The console gives up on it after 10 s and offers again, a few times,
    not hundreds (each offer costs the server a peer connection)."""
    alone = Namespace()
    try:
        data_dir, port = tmp_path / "data", free_port()
        key = create_key(data_dir)
        async with serve_in(alone, data_dir, port) as base:
            browser = await launch_in(playwright, alone, camera_file, tmp_path, loopback_ice=False)
            try:
                agent = await browser.new_page()
                await agent.goto(f"{base}/healthz")
                session = await call_api(agent, key, "POST", "/api/v1/sessions",
                                         {"ticket_id": "ZD-6", "tier": 2})
                await agent.add_init_script(COUNT_OFFERS)
                await agent.goto(session["agent_url"])
                await asyncio.sleep(12.5)
                offers = int(await agent.evaluate("() => window.offersSent"))
                print(f"offers in 12.5 s from a browser that cannot connect: {offers}")
                assert offers == 2  # the first, and one more after 10 s
            finally:
                await browser.close()
    finally:
        alone.close()

