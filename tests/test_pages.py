"""Pages link their scripts and styles under a versioned path, so an upgrade is never half-cached."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.utils import token_of
from visassist.context import AppContext


async def test_pages_use_versioned_static_files_cached_for_good(
    client: TestClient, create_session: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    session = await create_session()
    page = await (await client.get(f"/s/{token_of(session['customer_url'])}")).text()
    script = re.search(r'src="(/static/([0-9a-f]{12})/js/pages/customer\.js)"', page)
    assert script is not None, "the customer's script is linked under a versioned path"
    response = await client.get(script.group(1))
    assert response.status == 200 and "javascript" in response.content_type
    assert "immutable" in response.headers["Cache-Control"]
    # Its modules import each other by relative path, so they come from the same version.
    imported = await client.get(f"/static/{script.group(2)}/js/lib/protocol.js")
    assert imported.status == 200
    stale = await client.get("/static/js/pages/customer.js")
    assert stale.status == 200 and "immutable" not in stale.headers.get("Cache-Control", "")


async def test_opening_the_link_is_in_the_timeline_but_a_link_preview_is_not(
    client: TestClient, create_session: Callable[..., Awaitable[dict[str, Any]]]
) -> None:
    session = await create_session()
    path = f"/s/{token_of(session['customer_url'])}"
    await client.get(path, headers={"User-Agent": "WhatsApp/2.23.20.0 A"})
    await client.get(path, headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
                                                  "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
                                                  "Mobile/15E148 Safari/604.1"})
    events = await client.app[AppContext.KEY].store.events(session["id"])
    opened = [e.data.public() for e in events if e.type.value == "link.opened"]
    assert opened == [{"browser": "Mobile Safari 18", "os": "iOS 18", "mobile": True}]
