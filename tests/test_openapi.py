"""The OpenAPI document is served, covers every API route, and real responses match it."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from visassist.schemas import ErrorOut, SessionOut, SnapshotListOut, TicketOut

Create = Callable[..., Awaitable[dict[str, Any]]]


async def test_document_is_served_and_covers_every_route(client: TestClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routed = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        if path.startswith("/api/v1/") and route.method != "HEAD" and path != "/api/v1/openapi.json":
            routed.add((path, route.method))
    assert routed == documented
    for item in document["paths"].values():
        for operation in item.values():
            for reference in re.findall(r"#/components/schemas/(\w+)", json.dumps(operation)):
                assert reference in document["components"]["schemas"]


async def test_responses_match_the_document(client: TestClient, create_session: Create,
                                            auth: dict[str, str]) -> None:
    created = await create_session()
    SessionOut.model_validate(created)
    assert created["customer_url"] and created["agent_url"]
    body = await (await client.get(f"/api/v1/sessions/{created['id']}", headers=auth)).json()
    SessionOut.model_validate(body)
    body = await (await client.get(f"/api/v1/sessions/{created['id']}/snapshots", headers=auth)).json()
    SnapshotListOut.model_validate(body)
    ended = await client.post(f"/api/v1/sessions/{created['id']}/end", json={"outcome": "resolved"},
                              headers=auth)
    SessionOut.model_validate(await ended.json())
    body = await (await client.get("/api/v1/tickets/ZD-1042", headers=auth)).json()
    TicketOut.model_validate(body)
    ErrorOut.model_validate(await (await client.get("/api/v1/tickets/none", headers=auth)).json())


async def test_the_docs_page_describes_every_operation(client: TestClient) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    page = await client.get("/api/docs")
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert f'id="{operation["operationId"]}"' in text
            assert f"{method.upper()} {path}" in text
    assert "<code>ticket_id</code> *" in text and "Idempotency-Key" in text
