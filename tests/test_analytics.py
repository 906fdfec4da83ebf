"""Analytics from the sessions' timelines: the funnel and its causes, times, outcomes, CSAT; the page, its
CSV and GET /api/v1/analytics, and who may see them."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.test_accounts import add_user, sign_in
from tests.utils import Clock
from visassist.context import AppContext
from visassist.events import (
    CameraAllowed,
    CameraFailed,
    LinkOpened,
    MediaStarted,
    ParticipantInvited,
    ParticipantJoined,
    ParticipantLeft,
    SnapshotCaptured,
)
from visassist.models import Role, SnapshotSource, VideoSource

Create = Callable[..., Awaitable[dict[str, Any]]]


async def _customer_steps(client: TestClient, clock: Clock, session_id: str, *steps: str) -> None:
    """The customer's way in, recorded through the use cases the page and the socket use."""
    ctx = client.app[AppContext.KEY]
    people = await ctx.store.participants(session_id)
    customer = next(p for p in people if p.role is Role.CUSTOMER)
    me, record = customer.id, ctx.sessions.record
    for step in steps:
        if step.startswith("wait"):
            clock.advance(seconds=float(step[4:]))
            continue
        if step == "media":
            clock.advance(seconds=0.8)
        data = {
            "open": lambda: LinkOpened(browser="Chrome Mobile 120", os="Android 14", mobile=True),
            "join": lambda: ParticipantJoined(participant_id=me, role=Role.CUSTOMER, name="Ana",
                                              rejoin=False),
            "allow": CameraAllowed,
            "refuse": lambda: CameraFailed(reason="refused", error="NotAllowedError"),
            "media": lambda: MediaStarted(participant_id=me, source=VideoSource.CAMERA, width=1280,
                                          height=720),
            "snapshot": lambda: SnapshotCaptured(snapshot_id="snp_1", source=SnapshotSource.CAMERA,
                                                 width=1280, height=720, shapes=1),
            "expert": lambda: ParticipantInvited(participant_id="par_x", role=Role.EXPERT, name="Tier 3"),
            "leave": lambda: ParticipantLeft(participant_id=me, role=Role.CUSTOMER, reason="disconnected"),
        }[step]()
        await record(session_id, data, me)


async def _a_day_of_sessions(client: TestClient, create_session: Create, clock: Clock,
                             auth: dict[str, str]) -> None:
    resolved = await create_session(ticket_id="ZD-1")
    escalated = await create_session(ticket_id="ZD-2", tier=3)
    short = await create_session(ticket_id="ZD-3")
    refused = await create_session(ticket_id="ZD-4")
    unused = await create_session(ticket_id="ZD-5", ttl_seconds=60)
    await _customer_steps(client, clock, resolved["id"], "open", "join", "allow", "media", "snapshot",
                          "snapshot")
    await _customer_steps(client, clock, escalated["id"], "open", "join", "allow", "media", "expert")
    await _customer_steps(client, clock, short["id"], "open", "join", "allow", "media", "wait5", "leave")
    await _customer_steps(client, clock, refused["id"], "open", "join", "refuse")
    await _customer_steps(client, clock, resolved["id"], "wait120")  # and the unused session expires
    await client.app[AppContext.KEY].sessions.expire_due()
    for session, outcome in ((resolved, "resolved"), (escalated, "escalated"), (short, "abandoned"),
                             (refused, "technical_failure")):
        ended = await client.post(f"/api/v1/sessions/{session['id']}/end", json={"outcome": outcome},
                                  headers=auth)
        assert ended.status == 200
    customer = next(p for p in await client.app[AppContext.KEY].store.participants(resolved["id"])
                    if p.role is Role.CUSTOMER)
    session = await client.app[AppContext.KEY].sessions.get(resolved["id"])
    await client.app[AppContext.KEY].sessions.rate(session, customer, 5, "")
    assert unused


async def test_the_funnel_and_figures_match_the_sessions(client: TestClient, create_session: Create,
                                                         clock: Clock, auth: dict[str, str]) -> None:
    await _a_day_of_sessions(client, create_session, clock, auth)
    response = await client.get("/api/v1/analytics", headers=auth)
    assert response.status == 200
    body = await response.json()
    overall = body["overall"]
    assert {s["step"]: s["count"] for s in overall["funnel"]} == {
        "created": 5, "link_opened": 4, "camera_allowed": 3, "media_connected": 3, "connected_30s": 2}
    assert overall["failures"]["camera_refused"] == 1 and overall["failures"]["expired_unused"] == 1
    assert sum(overall["failures"].values()) == 2
    ttff = overall["time_to_first_frame_seconds"]
    assert ttff["count"] == 3 and 0.7 < ttff["median"] < 2 and ttff["p90"] >= ttff["median"]
    assert overall["handle_time_seconds"]["count"] == 4
    assert overall["outcomes"]["resolved"] == 1 and overall["outcomes"]["escalated"] == 1
    assert overall["escalations_to_tier3"] == 1
    assert overall["csat"]["distribution"]["5"] == 1 and overall["csat"]["average"] == 5
    assert overall["snapshots"] == 2 and overall["snapshots_per_session"] == 0.4
    assert [(t["tier"], t["sessions"]) for t in body["by_tier"]] == [(2, 4), (3, 1)]
    assert [(a["agent"], a["sessions"]) for a in body["by_agent"]] == [("No agent account", 5)]

    nothing = await (await client.get("/api/v1/analytics?from=2020-01-01&to=2020-01-31", headers=auth)).json()
    assert nothing["overall"]["sessions"] == 0
    assert nothing["overall"]["time_to_first_frame_seconds"]["median"] is None


async def test_the_page_and_csv_are_for_supervisors_and_admins(client: TestClient, create_session: Create,
                                                              clock: Clock, auth: dict[str, str]) -> None:
    await _a_day_of_sessions(client, create_session, clock, auth)
    await add_user(client, "sam@support.test", "agent")
    await add_user(client, "lead@support.test", "supervisor")
    await sign_in(client, "sam@support.test")
    refused = await client.get("/analytics")
    assert refused.status == 403 and "supervisors and administrators" in await refused.text()
    assert (await client.get("/analytics.csv")).status == 403

    await sign_in(client, "lead@support.test")
    page = await client.get("/analytics")
    html = await page.text()
    assert page.status == 200 and 'id="analytics-data"' in html and "Join funnel" in html
    assert 'data-testid="kpi-sessions">5<' in html
    export = await client.get("/analytics.csv")
    assert export.status == 200 and export.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await export.text())))
    assert [r["group"] for r in rows] == ["All sessions", "Tier 2", "Tier 3", "Agent: No agent account"]
    assert rows[0]["sessions"] == "5" and rows[0]["camera_refused"] == "1" and rows[0]["connected_30s"] == "2"

    bad = await client.get("/analytics?from=2026-02-01&to=2026-01-01")
    assert bad.status == 400 and "from is after to" in await bad.text()


async def test_the_api_checks_its_period(client: TestClient, auth: dict[str, str]) -> None:
    assert (await client.get("/api/v1/analytics")).status == 401
    for query in ("from=yesterday", "from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01",
                  "tier=2"):
        response = await client.get(f"/api/v1/analytics?{query}", headers=auth)
        assert response.status == 422, query
        assert (await response.json())["error"]["code"] == "validation_failed"
