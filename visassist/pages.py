"""Server-rendered pages for people: the customer's page, the agent's console, friendly errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from visassist.api import snapshot_image
from visassist.context import AppContext
from visassist.errors import ClientError, NotFound
from visassist.models import Participant, Role, Session, Status
from visassist.tokens import digest, looks_like_token

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(ROOT / "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)

routes = web.RouteTableDef()


class PageError(ClientError):
    """A refusal shown to a person as a page: a title and what to do next."""

    def __init__(self, status: int, code: str, title: str, message: str) -> None:
        super().__init__(code, message, status=status)
        self.title = title


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    html = TEMPLATES.get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def error_page(status: int, title: str, message: str) -> web.Response:
    return render("error.html", status=status, title=title, message=message)


async def _participant(request: web.Request, role: Role) -> tuple[Participant, Session]:
    ctx = request.app[AppContext.KEY]
    token = request.match_info["token"]
    participant = None
    if looks_like_token(token):
        participant = await ctx.store.participant_by_token(digest(token))
    if participant is None or participant.role is not role:
        raise PageError(404, "invalid_token", "This link isn't valid",
                        "Check that you opened the whole link you were sent, or ask your support "
                        "contact for a new one.")
    session = await ctx.sessions.get(participant.session_id)
    return participant, session


def _refuse_closed(session: Session, role: Role) -> None:
    status = session.effective_status()
    after = ("Thank you. If you still need help, reply to your support ticket."
             if role is Role.CUSTOMER else "The session's record is kept with the ticket.")
    if status is Status.ENDED:
        raise PageError(410, "session_ended", "This session has ended", after)
    if status is Status.EXPIRED:
        raise PageError(410, "session_expired", "This link has expired",
                        "Links work for a limited time. Ask your support contact for a new link."
                        if role is Role.CUSTOMER else "Create a new session from the ticket.")


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return render("index.html")


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/s/{token}")
async def customer_page(request: web.Request) -> web.Response:
    participant, session = await _participant(request, Role.CUSTOMER)
    _refuse_closed(session, Role.CUSTOMER)
    return render("customer.html", session=session, participant=participant,
                  request_token=request.match_info["token"])


@routes.get("/a/{token}")
async def agent_page(request: web.Request) -> web.Response:
    participant, session = await _participant(request, Role.AGENT)
    _refuse_closed(session, Role.AGENT)
    ctx = request.app[AppContext.KEY]
    snapshots = [ctx.sessions.snapshot_view(s, agent_snapshot_urls(request.match_info["token"], s.id))
                 for s in await ctx.store.snapshots(session.id)]
    return render("agent.html", session=session, participant=participant, snapshots=snapshots,
                  request_token=request.match_info["token"])


def agent_snapshot_urls(token: str, snapshot_id: str) -> dict[str, str]:
    return {"raw_url": f"/a/{token}/snapshots/{snapshot_id}/raw.png",
            "annotated_url": f"/a/{token}/snapshots/{snapshot_id}/annotated.png"}


@routes.get(r"/a/{token}/snapshots/{snapshot_id}/{kind:(raw|annotated)}.png")
async def agent_snapshot_image(request: web.Request) -> web.Response:
    """The console's thumbnails: the agent's link token reaches its own session's images only."""
    _, session = await _participant(request, Role.AGENT)
    _refuse_closed(session, Role.AGENT)  # after the session the record is the ticket system's, via the API
    ctx = request.app[AppContext.KEY]
    snapshot = await ctx.store.snapshot(session.id, request.match_info["snapshot_id"])
    if snapshot is None:
        raise NotFound("snapshot_not_found", "no such snapshot in this session")
    return await snapshot_image(ctx, snapshot, request.match_info["kind"])
