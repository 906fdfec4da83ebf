from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright

from tests.browser import launch_options, write_marker_y4m
from tests.postgres import Cluster, running
from tests.utils import Clock
from visassist.app import create_app
from visassist.config import Settings
from visassist.context import AppContext
from visassist.media.ice import use_host_addresses
from visassist.tokens import digest, new_api_key, new_id

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(autouse=True, scope="session")
def loopback_ice() -> None:
    """The tests' own aiortc peers (fake customers and agents) gather on loopback too."""
    use_host_addresses(["127.0.0.1"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Loopback only: aioice skips 127.0.0.1 unless told, and no STUN server can be reached here.
    return Settings(data_dir=tmp_path / "data", ice_addresses=("127.0.0.1",), expiry_sweep_seconds=0.2)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings, clock: Clock) -> TestClient:
    return await aiohttp_client(create_app(settings, clock))


@pytest.fixture
async def api_key(client: TestClient) -> str:
    key = new_api_key()
    await client.app[AppContext.KEY].store.create_api_key(new_id("key"), "tests", digest(key))
    return key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def create_session(client: TestClient, auth: dict[str, str]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def create(**overrides: Any) -> dict[str, Any]:
        body = {"ticket_id": "ZD-1042", "tier": 2, "customer": {"name": "Ana"}, "ttl_seconds": 3600}
        body.update(overrides)
        response = await client.post("/api/v1/sessions", json=body, headers=auth)
        assert response.status == 201, await response.text()
        return dict(await response.json())

    return create


ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture(scope="session")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_marker_y4m(tmp_path_factory.mktemp("camera") / "marker.y4m")


@pytest.fixture
async def server(aiohttp_server: ServerFactory, settings: Settings, clock: Clock) -> TestServer:
    return await aiohttp_server(create_app(settings, clock), host="127.0.0.1")


@pytest.fixture
async def api(server: TestServer) -> AsyncIterator[aiohttp.ClientSession]:
    key = new_api_key()
    await server.app[AppContext.KEY].store.create_api_key(new_id("key"), "browser tests", digest(key))
    async with aiohttp.ClientSession(base_url=str(server.make_url("/")),
                                     headers={"Authorization": f"Bearer {key}"}) as session:
        yield session


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture
async def browser(playwright: Playwright, camera_file: Path) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(**launch_options(camera_file))
    yield browser
    await browser.close()


@pytest.fixture
async def phone(playwright: Playwright, browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(**playwright.devices["Pixel 7"])
    yield context
    await context.close()


@pytest.fixture
async def desktop(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    yield context
    await context.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the run, started on first use."""
    yield from running()


@pytest.fixture
def postgres_url(postgres: Cluster) -> str:
    """A new, empty database of its own for the test."""
    return postgres.create_database(new_id("test").lower())
