"""Home for signed-in staff (`/`): the sessions waiting, live and ended today, kept current by a
server-sent event stream; a New session form for teams without a ticket-system integration, and the
customer link it makes (QR code, copy, e-mail or SMS); a supervisor joins a live session silently."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import urlparse

import segno
from aiohttp import web
from markupsafe import Markup
from pydantic import ValidationError

from visassist import invitations
from visassist.accounts import OVERSEERS, UserRole, check_csrf, current_user, staff_member
from visassist.api import public_base
from visassist.context import AppContext
from visassist.errors import ClientError
from visassist.events import Event, InvitationSent, ParticipantJoined
from visassist.models import Role, Session, Status, WebSession, iso
from visassist.pages import render
from visassist.records import record_path
from visassist.schemas import CreateSessionIn, SendInvitationIn

routes = web.RouteTableDef()

KEEPALIVE_SECONDS = 15.0
SETTLE_SECONDS = 0.15  # events come in bursts (a join writes several): one update for the burst
ENDED_SHOWN = 50
TTL_CHOICES = {"3600": "1 hour", "14400": "4 hours", "86400": "1 day"}


class BoardFeed:
    """Wakes the home pages' streams when anything is recorded (a bus subscriber), and closes them
    when the server stops."""

    KEY: ClassVar[web.AppKey[BoardFeed]]

    def __init__(self) -> None:
        self.changed = asyncio.Condition()
        self.version = 0
        self.closed = False

    async def __call__(self, event: Event) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def close(self) -> None:
        async with self.changed:
            self.closed = True
            self.changed.notify_all()

    async def wait(self, seen: int, patience: float) -> int:
        """The version after a change past `seen`, or `seen` when nothing changed for `patience` s."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience), self.changed:
                await self.changed.wait_for(lambda: self.version != seen or self.closed)
        return self.version


BoardFeed.KEY = web.AppKey("board-feed", BoardFeed)


def setup(app: web.Application, ctx: AppContext) -> None:
    feed = BoardFeed()
    app[BoardFeed.KEY] = feed
    ctx.bus.subscribe("home board", feed)
    ctx.nodes.relay_to(feed)  # the board shows every node's sessions

    async def close(app: web.Application) -> None:
        await feed.close()

    app.on_shutdown.append(close)


async def board(ctx: AppContext, signed_in: WebSession) -> dict[str, Any]:
    """What the home page shows, as JSON: open sessions and those ended today (UTC)."""
    now = ctx.sessions.clock()
    names = {u.id: u.name for u in await ctx.store.users()}
    overseer = UserRole(signed_in.user.role) in OVERSEERS

    async def row(session: Session) -> dict[str, Any]:
        participants = await ctx.store.participants(session.id)
        agent = next((p for p in participants if p.role is Role.AGENT), None)
        connected = set(ctx.hub.connected(session.id))
        since: dict[str, str] = {}
        if connected:
            for event in await ctx.store.events(session.id):
                if isinstance(event.data, ParticipantJoined):
                    since[event.data.participant_id] = iso(event.at) or ""
        return {
            "id": session.id, "ticket_id": session.ticket_id, "tier": session.tier,
            "customer": str(session.customer.get("name") or "Customer"),
            "status": session.effective_status(now).value, "created_at": iso(session.created_at),
            "started_at": iso(session.started_at), "ended_at": iso(session.ended_at),
            "duration_seconds": session.duration_seconds,
            "outcome": session.outcome.value if session.outcome else None,
            "agent": names.get(agent.user_id or "") if agent else None,
            "mine": agent is not None and agent.user_id == signed_in.user.id,
            "people": [{"name": names.get(p.user_id or "", p.name), "role": p.role.value,
                        "since": since.get(p.id)} for p in participants if p.id in connected],
            "record_url": record_path(session.ticket_id),
            "link_url": f"/sessions/{session.id}/link",
            "can_watch": overseer and session.effective_status(now) is Status.LIVE,
        }

    open_sessions = sorted((s for s in await ctx.store.open_sessions() if s.open_at(now)),
                           key=lambda s: s.created_at)
    rows = [await row(s) for s in open_sessions]
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ended = []
    # The latest ones: the board is rebuilt on every event, so it stays small on a busy day.
    for session in (await ctx.store.sessions_ended_between(start, now + timedelta(seconds=1)))[:ENDED_SHOWN]:
        entry = await row(session)
        rating = await ctx.store.rating(session.id)
        entry["rating"] = None if rating is None else rating.rating
        ended.append(entry)
    return {"now": iso(now), "waiting": [r for r in rows if r["status"] == "waiting"],
            "live": [r for r in rows if r["status"] == "live"], "ended": ended}


async def home_page(request: web.Request, signed_in: WebSession, *, error: str | None = None,
                    status: int = 200, form: dict[str, str] | None = None) -> web.Response:
    return render("staff/home.html", status=status, page="home", user=signed_in.user, csrf=signed_in.csrf,
                  error=error, form=form or {}, ttl_choices=TTL_CHOICES)


async def signed_in_home(request: web.Request) -> web.Response | None:
    """The home page for a signed-in person, or None (the public front page is shown instead)."""
    signed_in = await current_user(request)
    return None if signed_in is None else await home_page(request, signed_in)


@routes.get("/home/board")
async def board_json(request: web.Request) -> web.Response:
    signed_in = await staff_member(request)
    return web.json_response(await board(request.app[AppContext.KEY], signed_in),
                             headers={"Cache-Control": "no-store"})


@routes.get("/home/events")
async def board_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole board at once, then again whenever something is recorded."""
    signed_in = await staff_member(request)
    ctx = request.app[AppContext.KEY]
    feed = request.app[BoardFeed.KEY]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    seen = feed.version
    with contextlib.suppress(ConnectionResetError):
        await response.write(f"retry: 2000\ndata: {json.dumps(await board(ctx, signed_in))}\n\n".encode())
        while not feed.closed:
            version = await feed.wait(seen, KEEPALIVE_SECONDS)
            if feed.closed:
                break
            if version == seen:
                await response.write(b": keepalive\n\n")
                continue
            await asyncio.sleep(SETTLE_SECONDS)
            seen = feed.version
            await response.write(f"data: {json.dumps(await board(ctx, signed_in))}\n\n".encode())
    return response


# A new session, by hand


def _form_value(form: Any, name: str, limit: int) -> str:
    return str(form.get(name, "")).strip()[:limit]


@routes.post("/sessions/new")
async def new_session(request: web.Request) -> web.Response:
    signed_in = await staff_member(request)
    form = await request.post()
    check_csrf(request, signed_in.csrf, str(form.get("csrf", "")))
    ctx = request.app[AppContext.KEY]
    values = {name: _form_value(form, name, 300) for name in ("ticket_id", "tier", "customer_name", "ttl")}
    body: dict[str, Any] = {
        "ticket_id": values["ticket_id"], "tier": 3 if values["tier"] == "3" else 2,
        "ttl_seconds": int(values["ttl"]) if values["ttl"] in TTL_CHOICES else 3600,
        "audio": form.get("audio") == "on", "record": form.get("record") == "on"}
    if values["customer_name"]:
        body["customer"] = {"name": values["customer_name"]}
    try:
        wanted = CreateSessionIn.model_validate(body)
    except ValidationError:
        return await home_page(request, signed_in, status=400, form=values,
                               error="The ticket id is letters, digits and . _ : - (up to 128), and the "
                                     "customer's name at most 200 characters.")
    if ctx.hub.full():
        return await home_page(request, signed_in, status=503, form=values,
                               error="This server carries as many live sessions as it can; try again in a "
                                     "minute.")
    session = await ctx.sessions.create(
        ticket_id=wanted.ticket_id, tier=wanted.tier, customer=wanted.customer.model_dump(exclude_none=True),
        ttl_seconds=wanted.ttl_seconds, actor=f"user:{signed_in.user.email}", audio=wanted.audio,
        record=wanted.record)
    raise web.HTTPSeeOther(f"/sessions/{session.id}/link")


async def _link_page(request: web.Request, signed_in: WebSession, session_id: str, *,
                     sent: str | None = None, error: str | None = None, status: int = 200) -> web.Response:
    ctx = request.app[AppContext.KEY]
    session = await ctx.sessions.get(session_id)
    links = await ctx.sessions.links(session, public_base(request))
    customer_url = links.get("customer_url")
    # The console link binds to whoever opens it first: offer it to the person it is (or will be)
    # theirs, never to a colleague who would take the session from the agent the help desk chose.
    agent = next((p for p in await ctx.store.participants(session.id) if p.role is Role.AGENT), None)
    events = await ctx.store.events(session.id)
    created_by_me = bool(events) and events[0].actor == f"user:{signed_in.user.email}"
    mine = agent is not None and (agent.user_id == signed_in.user.id
                                  or (agent.user_id is None and created_by_me))
    qr = None
    if customer_url is not None:
        svg = segno.make(customer_url, error="m").svg_inline(scale=5, border=2, omitsize=False)
        qr = Markup(svg.replace("<svg ", '<svg role="img" aria-label="QR code of the customer\'s link" ', 1))
    return render("staff/session_link.html", status=status, page="home", user=signed_in.user,
                  csrf=signed_in.csrf, session=session, customer_url=customer_url,
                  agent_path=urlparse(links["agent_url"]).path if "agent_url" in links and mine else None,
                  qr=qr, sent=sent, error=error, record_url=record_path(session.ticket_id),
                  email_on=bool(ctx.settings.smtp_host), sms_on=bool(ctx.settings.sms_url))


@routes.get("/sessions/{session_id}/link")
async def link_page(request: web.Request) -> web.Response:
    signed_in = await staff_member(request)
    return await _link_page(request, signed_in, request.match_info["session_id"])


@routes.post("/sessions/{session_id}/send")
async def send_link(request: web.Request) -> web.Response:
    """Send the customer their link by e-mail or SMS from the link page."""
    signed_in = await staff_member(request)
    form = await request.post()
    check_csrf(request, signed_in.csrf, str(form.get("csrf", "")))
    ctx = request.app[AppContext.KEY]
    session_id = request.match_info["session_id"]
    session = await ctx.sessions.get(session_id)
    address = _form_value(form, "address", 300)
    email, phone = (address, None) if "@" in address else (None, address.replace(" ", ""))
    try:
        SendInvitationIn.model_validate({"email": email} if email else {"phone": phone})
    except ValidationError:
        return await _link_page(request, signed_in, session_id, status=400,
                                error="Give an e-mail address, or a phone number with its country code "
                                      "(+44 20 7946 0000).")
    links = await ctx.sessions.links(session, public_base(request))
    if "customer_url" not in links:
        return await _link_page(request, signed_in, session_id, status=409,
                                error="The session is no longer open.")
    try:
        channel, masked = await invitations.send_link(ctx.settings, session, links["customer_url"],
                                                      email=email, phone=phone)
    except ClientError as exc:
        return await _link_page(request, signed_in, session_id, status=exc.status, error=exc.message)
    await ctx.sessions.record(session.id, InvitationSent(channel=channel, to=masked),
                              f"user:{signed_in.user.email}")
    how = "e-mail" if channel == "email" else "SMS"
    return await _link_page(request, signed_in, session_id, sent=f"Sent by {how} to {masked}.")


@routes.post("/sessions/{session_id}/watch")
async def watch_silently(request: web.Request) -> web.Response:
    """A supervisor (or admin) joins a live session silently: a supervisor link of their own."""
    signed_in = await staff_member(request, OVERSEERS)
    form = await request.post()
    check_csrf(request, signed_in.csrf, str(form.get("csrf", "")))
    ctx = request.app[AppContext.KEY]
    _, url = await ctx.sessions.invite(request.match_info["session_id"], Role.SUPERVISOR,
                                       signed_in.user.name, f"user:{signed_in.user.email}",
                                       public_base(request))
    raise web.HTTPSeeOther(urlparse(url).path)
