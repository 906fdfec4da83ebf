from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

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
async def client(aiohttp_client: ClientFactory, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


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
