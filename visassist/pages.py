"""Server-rendered pages for people: the customer's page, the agent's console, friendly errors."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from visassist.accounts import admit_staff
from visassist.api import public_base, read_json, snapshot_image
from visassist.browsers import browser
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError, NotFound
from visassist.events import LinkOpened
from visassist.media.compose import PhotoError, encode_png
from visassist.media.pictures import to_bgr
from visassist.models import STAFF, Participant, Role, Session, SnapshotSource, Status
from visassist.nodes import Moving
from visassist.schemas import RatingIn
from visassist.tokens import digest, looks_like_token

ROOT = Path(__file__).resolve().parent.parent


def _static_version() -> str:
    """A digest of everything under static/: pages link to /static/<digest>/..., so a browser that
    cached the previous JS (modules import each other by relative path, so all of them) fetches the
    new files after an upgrade, and may cache each version for good."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "static").rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


STATIC_PREFIX = f"/static/{_static_version()}"
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(ROOT / "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.globals["static"] = STATIC_PREFIX

routes = web.RouteTableDef()


class PageError(ClientError):
    """A refusal shown to a person as a page: a title and what to do next."""

    def __init__(self, status: int, code: ApiErrorCode, title: str, message: str) -> None:
        super().__init__(code, message, status=status)
        self.title = title


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    html = TEMPLATES.get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def error_page(status: int, title: str, message: str) -> web.Response:
    return render("error.html", status=status, title=title, message=message)


async def _participant(request: web.Request, role: Role) -> tuple[Participant, Session]:
    """The link's participant; `role` AGENT admits all staff (agent, expert, supervisor)."""
    ctx = request.app[AppContext.KEY]
    token = request.match_info["token"]
    participant = None
    if looks_like_token(token):
        participant = await ctx.store.participant_by_token(digest(token))
    admitted = STAFF if role is Role.AGENT else {role}
    if participant is None or participant.role not in admitted:
        raise PageError(404, ApiErrorCode.INVALID_TOKEN, "This link isn't valid",
                        "Check that you opened the whole link you were sent, or ask your support "
                        "contact for a new one.")
    session = await ctx.sessions.get(participant.session_id)
    # A link opened on another node than the session's (its node died and it moved, or a proxy sent
    # the person elsewhere) goes to where the room is, before anyone signs in on the wrong host.
    try:
        home = await ctx.nodes.where(session)
    except Moving:
        home = None  # served here; the page's socket tries until the session is placed
    if home is not None:
        raise web.HTTPTemporaryRedirect(home + request.path_qs)
    if participant.role.staff:
        await admit_staff(request, participant)
    return participant, session


def _refuse_closed(request: web.Request, session: Session, role: Role) -> None:
    status = session.effective_status(request.app[AppContext.KEY].sessions.clock())
    after = ("Thank you. If you still need help, reply to your support ticket."
             if role is Role.CUSTOMER else "The session's record is kept with the ticket.")
    if status is Status.ENDED:
        raise PageError(410, ApiErrorCode.SESSION_ENDED, "This session has ended", after)
    if status is Status.REVOKED:
        raise PageError(410, ApiErrorCode.SESSION_REVOKED, "This link was withdrawn",
                        "Ask your support contact for a new link if you still need help."
                        if role is Role.CUSTOMER else "The session was revoked through the API.")
    if status is Status.EXPIRED:
        raise PageError(410, ApiErrorCode.SESSION_EXPIRED, "This link has expired",
                        "Links work for a limited time. Ask your support contact for a new link."
                        if role is Role.CUSTOMER else "Create a new session from the ticket.")


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """Staff who are signed in get their home (visassist/home.py); anyone else the front page."""
    from visassist.home import signed_in_home

    return await signed_in_home(request) or render("index.html")


def _describe(field: dict[str, Any]) -> str:
    """A schema's type in a few words, for the docs page."""
    if "$ref" in field:
        return str(field["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in field:
        return " or ".join(_describe(f) for f in field["anyOf"])
    if "enum" in field:
        return " | ".join(str(v) for v in field["enum"])
    if "const" in field:
        return str(field["const"])
    if field.get("type") == "array":
        return f"list of {_describe(field.get('items', {}))}"
    return str(field.get("type", "any"))


def _rules(field: dict[str, Any]) -> str:
    keys = ("minimum", "maximum", "minLength", "maxLength", "pattern", "default", "minItems", "maxItems")
    return ", ".join(f"{k} {field[k]!r}" for k in keys if k in field)


@routes.get("/api/docs")
async def api_docs(request: web.Request) -> web.Response:
    """The API document, readable by a person; generated from the same models as the JSON."""
    from visassist.openapi import document

    doc = document()
    return render("api_docs.html", doc=doc, schemas=doc["components"]["schemas"], describe=_describe,
                  rules=_rules)


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _refuse_when_full(request: web.Request, session: Session) -> None:
    """A session that is not live yet cannot start on a full node: say so before the camera starts."""
    hub = request.app[AppContext.KEY].hub
    if hub.get(session.id) is None and hub.full():
        raise PageError(503, ApiErrorCode.CAPACITY_EXHAUSTED, "We're very busy right now",
                        "Too many video sessions are running at the moment. Please try this link again "
                        "in a minute or two; it stays valid.")


@routes.get("/where/{token}")
async def where(request: web.Request) -> web.Response:
    """Where a link's session is carried now: a page whose node stopped answering asks the other nodes
    (it learnt them in `welcome`), from its own origin, hence CORS."""
    ctx = request.app[AppContext.KEY]
    token = request.match_info["token"]
    participant = await ctx.store.participant_by_token(digest(token)) if looks_like_token(token) else None
    cors = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
    if participant is None:
        return web.json_response({"error": {"code": "invalid_token", "message": "this link is not valid"}},
                                 status=404, headers=cors)
    session = await ctx.sessions.get(participant.session_id)
    try:
        home = await ctx.nodes.where(session)
    except Moving:
        return web.json_response({"url": None}, headers=cors)  # not placed yet: ask again
    here = await ctx.nodes.url_of(ctx.nodes.id) or public_base(request)
    return web.json_response({"url": home or here}, headers=cors)


@routes.get("/s/{token}")
async def customer_page(request: web.Request) -> web.Response:
    participant, session = await _participant(request, Role.CUSTOMER)
    _refuse_closed(request, session, Role.CUSTOMER)
    _refuse_when_full(request, session)
    # The join funnel's first step, recorded as the page is served: it needs no script to run. A
    # messaging app fetching the link for its preview card is not the customer opening it.
    seen = browser(request.headers.get("User-Agent", ""))
    if not seen.robot:
        await request.app[AppContext.KEY].sessions.record(
            session.id, LinkOpened(browser=seen.name, os=seen.os, mobile=seen.mobile), participant.id)
    return render("customer.html", session=session, participant=participant,
                  request_token=request.match_info["token"])


@routes.get("/a/{token}")
async def agent_page(request: web.Request) -> web.Response:
    participant, session = await _participant(request, Role.AGENT)
    _refuse_closed(request, session, Role.AGENT)
    _refuse_when_full(request, session)
    return render("agent.html", session=session, participant=participant,
                  request_token=request.match_info["token"])


@routes.post("/s/{token}/photos")
async def upload_photo(request: web.Request) -> web.Response:
    """The customer's phone uploads a full-resolution photo (raw JPEG/PNG/WebP body) with its link."""
    participant, session = await _participant(request, Role.CUSTOMER)
    _refuse_closed(request, session, Role.CUSTOMER)
    ctx = request.app[AppContext.KEY]
    limit = ctx.settings.max_photo_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ClientError(ApiErrorCode.PAYLOAD_TOO_LARGE, f"photos may be at most {limit // 2**20} MiB",
                          status=413)
    data = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        data += chunk
        if len(data) > limit:
            raise ClientError(ApiErrorCode.PAYLOAD_TOO_LARGE, f"photos may be at most {limit // 2**20} MiB",
                              status=413)
    try:
        snapshot = await ctx.sessions.store_photo(session, participant, bytes(data))
    except PhotoError as exc:
        raise ClientError(ApiErrorCode.INVALID_IMAGE, str(exc), status=415) from None
    return web.json_response({"id": snapshot.id, "width": snapshot.width, "height": snapshot.height,
                              "source": SnapshotSource.DEVICE_PHOTO.value}, status=201)


@routes.post("/s/{token}/rating")
async def rate_session(request: web.Request) -> web.Response:
    """The customer's 1-5 rating and comment, once, after the session ended (its link still rates)."""
    participant, session = await _participant(request, Role.CUSTOMER)
    body = await read_json(request, RatingIn)
    await request.app[AppContext.KEY].sessions.rate(session, participant, body.rating, body.comment)
    return web.json_response({"rating": body.rating}, status=201)


@routes.get(r"/{prefix:(s|a)}/{token}/frozen.png")
async def frozen_frame(request: web.Request) -> web.Response:
    """The held frame while the picture is frozen, for everyone in the session."""
    role = Role.CUSTOMER if request.match_info["prefix"] == "s" else Role.AGENT
    _, session = await _participant(request, role)
    _refuse_closed(request, session, role)
    ctx = request.app[AppContext.KEY]
    room = ctx.hub.get(session.id)
    frame = None if room is None else room.held_picture()
    if frame is None:
        raise NotFound(ApiErrorCode.NOT_FROZEN, "the picture is not frozen")
    image = await to_bgr(frame)
    png = await asyncio.to_thread(encode_png, image)
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})


@routes.get(r"/a/{token}/snapshots/{snapshot_id}/{kind:(raw|annotated)}.png")
async def agent_snapshot_image(request: web.Request) -> web.Response:
    """The console's thumbnails: the agent's link token reaches its own session's images only."""
    _, session = await _participant(request, Role.AGENT)
    # After the session the record is the ticket system's, via the API.
    _refuse_closed(request, session, Role.AGENT)
    ctx = request.app[AppContext.KEY]
    snapshot = await ctx.store.snapshot(session.id, request.match_info["snapshot_id"])
    if snapshot is None:
        raise NotFound(ApiErrorCode.SNAPSHOT_NOT_FOUND, "no such snapshot in this session")
    return await snapshot_image(ctx, snapshot, request.match_info["kind"])
