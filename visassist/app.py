"""The application factory: routes, error handling, security headers, startup and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import WSCloseCode, web

from visassist import admin, api, home, insights, metrics, pages, records, signin, tasks
from visassist.accounts import FAILURE_WINDOW, SignInRequired
from visassist.adapters.zendesk import ZendeskAdapter, ZendeskConfig
from visassist.blobs import DirectoryBlobStore
from visassist.capacity import FileBudget
from visassist.config import Settings
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError
from visassist.events import Bus
from visassist.media.ice import rtc_configuration, use_host_addresses
from visassist.metrics import Metrics
from visassist.models import utcnow
from visassist.nodes import Nodes
from visassist.sessions import SessionService
from visassist.signalling import handler as signalling
from visassist.signalling.live import RoomEvents
from visassist.signalling.protocol import Restarting
from visassist.signalling.room import Hub
from visassist.store import SqlStore
from visassist.tokens import load_or_create_key
from visassist.vision import Vision
from visassist.webhooks import Backoff, Dispatcher, Outbox

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Pages load only our own scripts and styles; media and sockets stay on this origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'{nodes}; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'; object-src 'none'")

_HTTP_CODES = {400: ApiErrorCode.BAD_REQUEST, 401: ApiErrorCode.UNAUTHORIZED, 403: ApiErrorCode.FORBIDDEN,
               404: ApiErrorCode.NOT_FOUND, 405: ApiErrorCode.METHOD_NOT_ALLOWED,
               413: ApiErrorCode.PAYLOAD_TOO_LARGE, 415: ApiErrorCode.UNSUPPORTED_MEDIA_TYPE}


def _is_api(request: web.Request) -> bool:
    """JSON errors for the API and for the pages' own calls (uploads, the home board); pages for people
    otherwise."""
    return request.path.startswith(("/api/", "/home/")) or request.method not in ("GET", "HEAD")


def _json_error(status: int, code: ApiErrorCode, message: str, details: object = None) -> web.Response:
    return web.json_response(ClientError(code, message, details=details).body(), status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a clear 4xx (JSON on the API, a page for people); never a stack trace."""
    try:
        return await handler(request)
    except SignInRequired:
        if _is_api(request):
            return _json_error(401, ApiErrorCode.SIGN_IN_REQUIRED, "sign in first")
        raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}") from None
    except ClientError as exc:
        if _is_api(request):
            response = web.json_response(exc.body(), status=exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="visassist"'
            return response
        title = getattr(exc, "title", "Something is not right")
        return pages.error_page(exc.status, title, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ApiErrorCode.HTTP_ERROR)
        if _is_api(request):
            return _json_error(exc.status, code, exc.reason)
        if exc.status == 404:
            return pages.error_page(404, "Page not found", "Check the link you were sent.")
        return pages.error_page(exc.status, exc.reason, "Go back and try again.")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _is_api(request):
            return _json_error(500, ApiErrorCode.INTERNAL_ERROR, "the server failed; the error was logged")
        return pages.error_page(500, "Something went wrong on our side",
                                "Please try again in a moment.")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # Links carry tokens: never leak them through the Referer header. Elsewhere same-origin: it still
    # tells no other site anything, and lets the browser send the Origin of our own forms (under
    # no-referrer a form's POST says `Origin: null`, which the CSRF check refuses).
    headers.setdefault("Referrer-Policy", "no-referrer" if request.path.startswith(("/s/", "/a/"))
                       else "same-origin")
    if request.path.startswith(pages.STATIC_PREFIX + "/") and response.status == 200:
        headers.setdefault("Cache-Control", "public, max-age=31536000, immutable")
    if response.content_type == "text/html":
        # Pages may ask the other nodes where their session went (static/js/signalling.js).
        nodes = "".join(f" {url}" for url in request.app[AppContext.KEY].nodes.known)
        headers.setdefault("Content-Security-Policy", CSP.format(nodes=nodes))
        headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
    return response


def build_context(settings: Settings, clock: Callable[[], datetime] = utcnow) -> AppContext:
    store = SqlStore(settings.database)
    blobs = DirectoryBlobStore(settings.blob_dir)
    hub = Hub(settings.max_live_sessions, FileBudget())
    bus = Bus()
    vision = Vision(blur_faces=settings.blur_faces, read_labels=settings.read_labels,
                    patterns=settings.patterns, queue_limit=settings.vision_queue_limit,
                    timeout=settings.vision_timeout_seconds, threads=settings.vision_threads)
    sessions = SessionService(settings, store, blobs, hub, bus, load_or_create_key(settings.link_key_path),
                              clock, vision)
    # Subscribers, in order: the webhook outbox first, so a session.ended is enqueued before the room
    # closes and writes its participants' departures.
    outbox = Outbox(store, settings.base_url)
    bus.subscribe("webhook outbox", outbox)
    rooms = RoomEvents(hub, sessions)
    bus.subscribe("live rooms", rooms)
    metrics = Metrics(settings, hub)
    bus.subscribe("metrics", metrics.join_outcomes)
    # Last: relayed to the other nodes once this one's own subscribers have it.
    nodes = Nodes(settings, store, store.database, hub, bus, rooms, clock)
    return AppContext(settings=settings, store=store, blobs=blobs, hub=hub, sessions=sessions, bus=bus,
                      outbox=outbox, nodes=nodes, rtc_configuration=rtc_configuration(settings.ice_servers),
                      metrics=metrics)


async def prune(ctx: AppContext) -> dict[str, int]:
    """Idempotency keys and failed sign-ins past their windows no longer count: drop them."""
    now = ctx.sessions.clock()
    return await ctx.store.prune(now - api.IDEMPOTENCY_WINDOW, now - FAILURE_WINDOW)


async def _purge_loop(ctx: AppContext) -> None:
    while True:
        try:
            await ctx.sessions.purge()
        except Exception:
            log.exception("retention purge failed")
        try:
            await prune(ctx)
        except Exception:
            log.exception("pruning idempotency keys and login failures failed")
        await asyncio.sleep(ctx.settings.purge_interval_seconds)


async def _expiry_loop(ctx: AppContext) -> None:
    while True:
        await asyncio.sleep(ctx.settings.expiry_sweep_seconds)
        try:
            await ctx.sessions.expire_due()
        except Exception:
            log.exception("expiry sweep failed")


def create_app(settings: Settings, clock: Callable[[], datetime] = utcnow) -> web.Application:
    """The application; `clock` is for tests that move time (sessions expiring, retention)."""
    app = web.Application(middlewares=[security_headers, errors],
                          client_max_size=settings.max_body_bytes)
    ctx = build_context(settings, clock)
    app[AppContext.KEY] = ctx
    use_host_addresses(settings.ice_addresses)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        ctx.metrics.threads.loop_thread = threading.get_native_id()
        await ctx.store.open()
        await ctx.nodes.start()
        if not await ctx.store.has_users():
            log.warning("no user accounts yet: staff links open without signing in. Before real use, "
                        "create one: visassist user create --email ... --name ... --role admin")
        if caught := await ctx.outbox.catch_up():
            log.info("webhook outbox: %d events recorded before the last stop were enqueued", caught)
        await ctx.sessions.expire_due()
        if ctx.sessions.vision is not None:
            try:
                await ctx.sessions.vision.warm_up()
            except Exception:
                log.exception("the vision models could not be loaded now; the first picture will try again")
        sweeper = asyncio.create_task(_expiry_loop(ctx), name="expiry-sweep")
        purger = asyncio.create_task(_purge_loop(ctx), name="retention-purge")
        dispatcher = Dispatcher(ctx.store, Backoff(settings.webhook_retry_base, settings.webhook_retry_cap),
                                on_attempt=ctx.metrics.attempted)
        zendesk = None
        if settings.zendesk_url and settings.zendesk_email and settings.zendesk_token:
            zendesk = ZendeskConfig(settings.zendesk_url.rstrip("/"), settings.zendesk_email,
                                    settings.zendesk_token)
            dispatcher.adapters["zendesk"] = ZendeskAdapter(zendesk, ctx.store, ctx.blobs,
                                                            settings.base_url, dispatcher.http)
        await ctx.store.ensure_internal_webhook("whk_zendesk", "zendesk:", ["session.ended"],
                                                enabled=zendesk is not None)
        dispatcher.start()
        yield
        for task in (sweeper, purger):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ctx.hub.close()
        if ctx.sessions.vision is not None:
            await ctx.sessions.vision.close()
        await tasks.drain()
        await dispatcher.stop()
        await ctx.nodes.stop()
        await ctx.store.close()

    async def disconnect_everyone(app: web.Application) -> None:
        # A graceful stop is a restart (a deploy): tell the pages, so they come straight back to the
        # next process instead of backing off as from a network failure. Close while the store is
        # still open, so every "left" event is written.
        connections = [c for room in ctx.hub.rooms.values() for c in room.connections()]
        for connection in connections:
            await connection.send(Restarting())
        await asyncio.gather(*(c.close(code=WSCloseCode.SERVICE_RESTART, message=b"server restarting")
                               for c in connections))

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(disconnect_everyone)
    app.add_routes(api.routes)
    app.add_routes(pages.routes)
    app.add_routes(signin.routes)
    app.add_routes(admin.routes)
    app.add_routes(metrics.routes)
    app.add_routes(records.routes)
    app.add_routes(home.routes)
    app.add_routes(insights.routes)
    home.setup(app, ctx)
    app.router.add_get("/ws", signalling.handle)
    # Versioned, so cached forever; the plain path stays for pages rendered before an upgrade.
    app.router.add_static(pages.STATIC_PREFIX, pages.ROOT / "static", append_version=False)
    app.router.add_static("/static", pages.ROOT / "static", append_version=False)
    return app
