"""Pages link their scripts and styles under a versioned path, so an upgrade is never half-cached."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.utils import token_of


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
