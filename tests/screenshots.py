"""Screenshots of the staff pages with realistic data: `python -m tests.screenshots OUTDIR`.

Runs the real app in-process on a free port with a fresh data directory, fills a week of sessions through
the same use cases the API, the pages and the socket use (times moved with the app's clock), connects two
customers and their agents over real sockets for the live board, and photographs home, a ticket's record
and analytics at 1440x900 in headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import aiohttp
import cv2
import numpy as np
from aiohttp import web
from playwright.async_api import async_playwright

from tests.browser import BASE_FLAGS, CHROMIUM
from tests.utils import Clock, FakeParticipant, free_port, token_of
from visassist.accounts import hash_password
from visassist.annotations import shapes_adapter
from visassist.app import create_app
from visassist.config import Settings
from visassist.context import AppContext
from visassist.events import (
    CameraAllowed,
    CameraFailed,
    LinkOpened,
    MediaStarted,
    ParticipantInvited,
    ParticipantJoined,
    ParticipantLeft,
)
from visassist.models import Outcome, Role, VideoSource
from visassist.tokens import digest, new_api_key, new_id

PASSWORD = "correct horse battery staple"
AGENTS = [("maya@support.test", "Maya Chen", "agent"), ("omar@support.test", "Omar Haddad", "agent"),
          ("lena@support.test", "Lena Novak", "expert")]
CUSTOMERS = ["Ana Souza", "Ben Carter", "Chloé Martin", "Dev Patel", "Emma Jones", "Farid Khan", "Grace Liu",
             "Hugo Silva", "Ines Weber", "Jon Berg", "Kim Park", "Luis Ortega", "Mia Rossi", "Noah Smith"]


def router_photo(seed: int) -> bytes:
    """A stand-in photo of a home router: its panel, ports and a red status light."""
    rng = np.random.default_rng(seed)
    image = np.full((720, 1280, 3), (58, 64, 70), np.uint8)
    image += rng.integers(0, 12, image.shape, dtype=np.uint8)
    cv2.rectangle(image, (180, 220), (1100, 520), (34, 36, 40), -1)
    cv2.rectangle(image, (180, 220), (1100, 520), (90, 94, 100), 3)
    cv2.putText(image, "HOMEBOX 5G", (220, 290), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (210, 210, 210), 3)
    lights = [("PWR", (80, 220, 80)), ("WAN", (40, 40, 235)), ("WIFI", (80, 220, 80)), ("LAN", (80, 220, 80))]
    for i, (label, colour) in enumerate(lights):
        cv2.circle(image, (260 + i * 110, 360), 14, colour, -1)
        cv2.putText(image, label, (238 + i * 110, 405), cv2.FONT_HERSHEY_SIMPLEX, .7, (190, 190, 190), 2)
    for i in range(4):
        cv2.rectangle(image, (700 + i * 90, 420), (770 + i * 90, 480), (15, 15, 15), -1)
    cv2.line(image, (735, 480), (700, 700), (200, 200, 40), 14)
    return bytes(cv2.imencode(".png", image)[1])


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything runs)
    data = Path(tempfile.mkdtemp(prefix="visassist-screens-"))
    clock = Clock()
    settings = Settings(data_dir=data / "data", ice_addresses=("127.0.0.1",))
    app = create_app(settings, clock)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    ctx = app[AppContext.KEY]
    key = new_api_key()
    await ctx.store.create_api_key(new_id("key"), "screens", digest(key))
    rng = random.Random(20261124)
    http = aiohttp.ClientSession(base_url=base, headers={"Authorization": f"Bearer {key}"})
    fakes: list[FakeParticipant] = []
    try:
        # Live now: two customers with their agents, one expert; waiting: two more.
        live = []
        for ticket, name, tier in (("ZD-48291", "Priya Raman", 2), ("ZD-48304", "Tom Becker", 3)):
            created = await (await http.post("/api/v1/sessions", json={
                "ticket_id": ticket, "tier": tier, "customer": {"name": name}})).json()
            clock.advance(seconds=-rng.randint(200, 700))
            for url in (created["agent_url"], created["customer_url"]):
                fake = FakeParticipant(http, token_of(url))
                await fake.join()
                fakes.append(fake)
            clock.advance(seconds=rng.randint(200, 700))
            live.append(created)
        for ticket, name in (("ZD-48317", "Sara Lind"), ("SN-INC0042", "Ravi Iyer")):
            await http.post("/api/v1/sessions",
                            json={"ticket_id": ticket, "tier": 2, "customer": {"name": name}})

        users = {}
        for email, name, role in [*AGENTS, ("lee@support.test", "Lee Morgan", "supervisor")]:
            user_id = new_id("usr")
            await ctx.store.create_user(user_id, email, name, role, hash_password(PASSWORD), "screens")
            users[email] = user_id
        for created, email in zip(live, ("maya@support.test", "omar@support.test"), strict=True):
            agent = next(p for p in await ctx.store.participants(created["id"]) if p.role is Role.AGENT)
            await ctx.store.bind_participant(agent.id, users[email])

        # A week of past sessions, each through the use cases at its own time.
        start = clock.offset
        featured = None
        for index in range(46):
            clock.offset = start - timedelta(days=rng.uniform(0.05, 6.8))
            tier = 3 if rng.random() < .2 else 2
            ticket = "ZD-48213" if index == 0 else f"ZD-{47600 + index * 13}"
            customer_name = rng.choice(CUSTOMERS)
            session = await ctx.sessions.create(ticket_id=ticket, tier=tier, customer={"name": customer_name},
                                                ttl_seconds=3600, actor="api:zendesk", record=False)
            people = await ctx.store.participants(session.id)
            customer = next(p for p in people if p.role is Role.CUSTOMER)
            agent = next(p for p in people if p.role is Role.AGENT)
            email = AGENTS[index % 3 if index else 0][0]
            await ctx.store.bind_participant(agent.id, users[email])
            fate = "featured" if index == 0 else rng.choices(
                ["connected", "refused", "no_camera", "unused", "ice", "browser"], [70, 8, 4, 8, 4, 3])[0]
            if fate == "unused":
                clock.advance(seconds=3700)
                await ctx.sessions.expire_due()
                continue
            await ctx.sessions.record(session.id, ParticipantJoined(participant_id=agent.id, role=Role.AGENT,
                                                                    name=agent.name, rejoin=False), agent.id)
            clock.advance(seconds=rng.uniform(20, 240))
            await ctx.sessions.record(session.id, LinkOpened(
                browser=rng.choice(["Chrome Mobile 131", "Mobile Safari 18", "Samsung Internet 27"]),
                os=rng.choice(["Android 15", "iOS 18"]), mobile=True), customer.id)
            clock.advance(seconds=rng.uniform(5, 40))
            await ctx.sessions.joined(session, customer, False)
            if fate in ("refused", "no_camera", "browser"):
                reason = {"refused": "refused", "no_camera": "missing", "browser": "unsupported"}[fate]
                error = {"refused": "NotAllowedError", "no_camera": "NotFoundError",
                         "browser": "UnsupportedBrowser"}[fate]
                await ctx.sessions.record(session.id, CameraFailed(reason=reason, error=error), customer.id)
                clock.advance(seconds=rng.uniform(60, 200))
                await ctx.sessions.end(session.id, Outcome.TECHNICAL_FAILURE if fate != "refused"
                                       else Outcome.FOLLOW_UP, "Customer could not use the camera.",
                                       agent.id)
                continue
            await ctx.sessions.record(session.id, CameraAllowed(), customer.id)
            if fate == "ice":
                clock.advance(seconds=40)
                await ctx.sessions.end(session.id, Outcome.TECHNICAL_FAILURE, "No video reached us.",
                                       agent.id)
                continue
            clock.advance(seconds=rng.uniform(0.4, 2.6))
            await ctx.sessions.record(session.id, MediaStarted(participant_id=customer.id,
                                                               source=VideoSource.CAMERA, width=1280,
                                                               height=720), customer.id)
            for line, who in (("Hi! I can see the router now.", agent), ("The WAN light is red", customer)):
                clock.advance(seconds=rng.uniform(10, 50))
                await ctx.sessions.chat(session.id, who, line)
            shots = 3 if fate == "featured" else rng.choice([0, 1, 1, 2, 2, 3])
            for shot in range(shots):
                clock.advance(seconds=rng.uniform(20, 90))
                snapshot = await ctx.sessions.store_photo(session, customer, router_photo(index * 10 + shot))
                shapes = shapes_adapter.validate_json(json.dumps([
                    {"kind": "arrow", "points": [[0.62, 0.18], [0.38, 0.45]], "color": "#ff3b30"},
                    {"kind": "ellipse", "points": [[0.53, 0.55], [0.86, 0.7]], "color": "#ffcc00"},
                    {"kind": "text", "points": [[0.62, 0.14]], "text": "WAN light red", "color": "#ffffff"}][
                        :shot + 1]))
                await ctx.sessions.annotate(session, snapshot.id, shapes, agent)
            if (tier == 2 and rng.random() < .18) or fate == "featured":
                expert = next(u for u in AGENTS if u[2] == "expert")
                await ctx.sessions.record(session.id, ParticipantInvited(participant_id=new_id("par"),
                                                                         role=Role.EXPERT, name=expert[1]),
                                          agent.id)
            clock.advance(seconds=rng.uniform(90, 900))
            left = ParticipantLeft(participant_id=customer.id, role=Role.CUSTOMER, reason="ended")
            await ctx.sessions.record(session.id, left, customer.id)
            outcome = Outcome.RESOLVED if fate == "featured" else rng.choices(
                list(Outcome), [62, 12, 12, 3, 6, 5])[0]
            await ctx.sessions.end(session.id, outcome, "Reseated the WAN cable; the light turned green."
                                   if outcome is Outcome.RESOLVED else "", agent.id)
            if rng.random() < .7 or fate == "featured":
                clock.advance(seconds=30)
                ended = await ctx.sessions.get(session.id)
                stars = 5 if fate == "featured" else rng.choices([1, 2, 3, 4, 5], [3, 4, 10, 30, 53])[0]
                await ctx.sessions.rate(ended, customer, stars,
                                        "Very quick, thank you!" if fate == "featured" else "")
            if fate == "featured":
                featured = session
        clock.offset = start
        assert featured is not None

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_FLAGS)
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            await page.goto(f"{base}/login")
            await page.get_by_label("E-mail").fill("lee@support.test")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_text("Live: updates as they happen").wait_for()
            await page.wait_for_timeout(500)
            await page.screenshot(path=out / "home.png")
            await page.goto(f"{base}/tickets/ZD-48213")
            await page.wait_for_load_state("networkidle")
            await page.screenshot(path=out / "ticket-record.png")
            await page.screenshot(path=out / "ticket-record-full.png", full_page=True)
            await page.emulate_media(media="print")
            await page.screenshot(path=out / "ticket-record-print.png", full_page=True)
            await page.emulate_media(media="screen")
            await page.goto(f"{base}/analytics")
            await page.wait_for_load_state("networkidle")
            await page.wait_for_timeout(1500)  # the charts' first animation
            await page.screenshot(path=out / "analytics.png")
            await page.screenshot(path=out / "analytics-full.png", full_page=True)
            await browser.close()
    finally:
        for fake in fakes:
            await fake.close()
        await http.close()
        await runner.cleanup()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "screens")))
