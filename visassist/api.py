"""The REST API for ticket systems: /api/v1, bearer API keys, JSON in and out."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from visassist import invitations, management
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError, NotFound, Unauthorized
from visassist.events import InvitationSent
from visassist.models import (
    ApiKey,
    Delivery,
    FieldStatus,
    Role,
    Session,
    Snapshot,
    WebhookEndpoint,
    iso,
    stamp,
)
from visassist.openapi import document
from visassist.schemas import (
    ConfirmFieldIn,
    CreateSessionIn,
    EndSessionIn,
    FieldOut,
    InviteIn,
    ListQuery,
    RecordingOut,
    SendInvitationIn,
    SessionSummaryOut,
    SnapshotOut,
    WebhookIn,
    api_folder,
)
from visassist.sessions import closed_error
from visassist.store.base import IdempotencyConflict
from visassist.tokens import API_KEY_PREFIX, digest
from visassist.webhooks import record_url

routes = web.RouteTableDef()

TOUCH_INTERVAL = timedelta(minutes=1)
BodyT = TypeVar("BodyT", bound=BaseModel)


async def read_json(request: web.Request, model: type[BodyT]) -> BodyT:
    body = await request.read()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors(include_url=False)[0]["type"] == "json_invalid":
            raise ClientError(ApiErrorCode.INVALID_JSON, "the request body is not valid JSON") from None
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> ClientError:
    details = [
        {"field": ".".join(str(p) for p in error["loc"]) or "body", "message": error["msg"]}
        for error in exc.errors(include_url=False)
    ]
    first = details[0]
    return ClientError(ApiErrorCode.VALIDATION_FAILED, f"{first['field']}: {first['message']}", status=422,
                       details=details)


async def authenticate(request: web.Request) -> ApiKey:
    ctx = request.app[AppContext.KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(API_KEY_PREFIX):
        raise Unauthorized(ApiErrorCode.UNAUTHORIZED, "send an API key as 'Authorization: Bearer vak_...'")
    key = await ctx.store.api_key_by_digest(digest(token.strip()))
    if key is None or key.revoked_at is not None:
        raise Unauthorized(ApiErrorCode.UNAUTHORIZED, "the API key is not valid")
    now = _ctx(request).sessions.clock()
    if key.last_used_at is None or now - key.last_used_at > TOUCH_INTERVAL:
        await ctx.store.touch_api_key(key.id, now)
    return key


def public_base(request: web.Request) -> str:
    """Where links point: the configured public URL, else the origin this request came to."""
    configured = request.app[AppContext.KEY].settings.public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


async def link_base(request: web.Request, session: Session) -> str:
    """Links point to the node the session is placed on (any node answers the API)."""
    return await _ctx(request).nodes.url_of(session.node_id) or public_base(request)


def _ctx(request: web.Request) -> AppContext:
    return request.app[AppContext.KEY]


@routes.post("/api/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    """Create a session. With an Idempotency-Key, a retry (same key, same body, within 24 hours)
    returns the session the first call created instead of a second one."""
    key = await authenticate(request)
    body = await read_json(request, CreateSessionIn)
    ctx = _ctx(request)
    idempotency = await _idempotency(request, key)
    replayed = None
    if idempotency is not None:
        replayed = await _replay(ctx, key, idempotency)
    if replayed is None:
        node = await ctx.nodes.place()
        if node is None:
            # Refused before anything is stored: a retry later starts clean.
            raise ClientError(ApiErrorCode.CAPACITY_EXHAUSTED, "every node carries as many live sessions "
                              "as it can; try again in a minute", status=503)
        try:
            session = await ctx.sessions.create(
                ticket_id=body.ticket_id, tier=body.tier,
                customer=body.customer.model_dump(exclude_none=True), ttl_seconds=body.ttl_seconds,
                actor=f"api:{key.id}", audio=body.audio, record=body.record, idempotency=idempotency,
                node_id=node.id)
        except IdempotencyConflict:  # a concurrent call with the same key won the race
            assert idempotency is not None
            replayed = await _replay(ctx, key, idempotency)
            if replayed is None:
                raise
    if replayed is not None:
        session = replayed
    view = await ctx.sessions.describe(session)
    view.update(await ctx.sessions.links(session, await link_base(request, session)))
    view["record_url"] = record_url(public_base(request), session.ticket_id)
    headers = {"Location": f"/api/v1/sessions/{session.id}"}
    if replayed is not None:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(view, status=201, headers=headers)


IDEMPOTENCY_WINDOW = timedelta(hours=24)


async def _idempotency(request: web.Request, key: ApiKey) -> tuple[str, str, str] | None:
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not value.isprintable():
        raise ClientError(ApiErrorCode.INVALID_IDEMPOTENCY_KEY,
                          "Idempotency-Key must be 1 to 255 printable characters")
    return key.id, value, hashlib.sha256(await request.read()).hexdigest()


async def _replay(ctx: AppContext, key: ApiKey, idempotency: tuple[str, str, str]) -> Session | None:
    since = ctx.sessions.clock() - IDEMPOTENCY_WINDOW
    earlier = await ctx.store.idempotent_session(key.id, idempotency[1], since)
    if earlier is None:
        return None
    if earlier[0] != idempotency[2]:
        raise ClientError(ApiErrorCode.IDEMPOTENCY_KEY_REUSED,
                          "this Idempotency-Key was used with a different request body", status=422)
    return await ctx.sessions.get(earlier[1])


@routes.get("/api/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    """Sessions newest first, filtered by ticket, status and creation time; paged with a cursor."""
    await authenticate(request)
    try:
        query = ListQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    before = None
    if query.cursor is not None:
        try:
            created, _, last_id = base64.urlsafe_b64decode(query.cursor.encode()).decode().partition("|")
            datetime.fromisoformat(created)
        except (ValueError, UnicodeDecodeError):
            raise ClientError(ApiErrorCode.INVALID_CURSOR, "cursor is not one this API returned",
                              status=422) from None
        before = (created, last_id)
    ctx = _ctx(request)
    page = await ctx.store.list_sessions(
        ticket_id=query.ticket_id, status=query.status, created_after=query.created_after,
        created_before=query.created_before, before=before, limit=query.limit + 1,
        now=ctx.sessions.clock())
    more = len(page) > query.limit
    page = page[:query.limit]
    cursor = None
    if more:
        last = page[-1]
        cursor = base64.urlsafe_b64encode(
            f"{last.created_at.astimezone(UTC).isoformat(timespec='microseconds')}|{last.id}".encode()
        ).decode()
    now = ctx.sessions.clock()
    sessions = [SessionSummaryOut.of(s, now).model_dump(mode="json") for s in page]
    return web.json_response({"sessions": sessions, "next_cursor": cursor})


async def session_etag(ctx: AppContext, session_id: str) -> str:
    """Changes with every event of the session: every state change is an event."""
    return f'"{session_id}.{await ctx.store.last_event_seq(session_id)}"'


@routes.get("/api/v1/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    await authenticate(request)
    ctx = _ctx(request)
    session = await ctx.sessions.get(request.match_info["session_id"])
    etag = await session_etag(ctx, session.id)
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag})
    view = await ctx.sessions.describe(session, snapshots=True)
    view.update(await ctx.sessions.links(session, await link_base(request, session)))
    view["record_url"] = record_url(public_base(request), session.ticket_id)
    return web.json_response(view, headers={"ETag": etag})


@routes.post("/api/v1/sessions/{session_id}/end")
async def end_session(request: web.Request) -> web.Response:
    key = await authenticate(request)
    body = await read_json(request, EndSessionIn)
    ctx = _ctx(request)
    await ctx.sessions.get(request.match_info["session_id"])
    wanted = request.headers.get("If-Match")
    if wanted is not None and wanted != await session_etag(ctx, request.match_info["session_id"]):
        raise ClientError(ApiErrorCode.PRECONDITION_FAILED,
                          "the session changed since you read it (ETag differs)", status=412)
    session = await ctx.sessions.end(request.match_info["session_id"], body.outcome, body.notes,
                                     f"api:{key.id}")
    return web.json_response(await ctx.sessions.describe(session, snapshots=True))


@routes.post("/api/v1/sessions/{session_id}/participants")
async def invite_participant(request: web.Request) -> web.Response:
    """Bring a Tier 3 expert or a supervisor into a session: returns their link (shown once)."""
    key = await authenticate(request)
    body = await read_json(request, InviteIn)
    ctx = _ctx(request)
    session = await ctx.sessions.get(request.match_info["session_id"])
    participant, url = await ctx.sessions.invite(session.id, Role(body.role), body.name, f"api:{key.id}",
                                                 await link_base(request, session))
    return web.json_response({
        "participant": {"id": participant.id, "role": participant.role.value, "name": participant.name,
                        "connected": False},
        "url": url}, status=201)


@routes.post("/api/v1/sessions/{session_id}/revoke")
async def revoke_session(request: web.Request) -> web.Response:
    """Kill the session's links at once; whoever is connected is told and disconnected."""
    key = await authenticate(request)
    ctx = _ctx(request)
    session = await ctx.sessions.revoke(request.match_info["session_id"], f"api:{key.id}")
    return web.json_response(await ctx.sessions.describe(session, snapshots=True))


@routes.post("/api/v1/sessions/{session_id}/invitations")
async def send_invitation(request: web.Request) -> web.Response:
    """Send the customer their link by e-mail or SMS (as configured); recorded in the timeline."""
    key = await authenticate(request)
    body = await read_json(request, SendInvitationIn)
    if (body.email is None) == (body.phone is None):
        raise ClientError(ApiErrorCode.VALIDATION_FAILED, "give either email or phone", status=422)
    ctx = _ctx(request)
    settings = ctx.settings
    session = await ctx.sessions.get(request.match_info["session_id"])
    links = await ctx.sessions.links(session, await link_base(request, session))
    if "customer_url" not in links:
        raise closed_error(session.effective_status(ctx.sessions.clock()), "the session is no longer open")
    channel, masked = await invitations.send_link(settings, session, links["customer_url"], email=body.email,
                                                  phone=body.phone)
    await ctx.sessions.record(session.id, InvitationSent(channel=channel, to=masked), f"api:{key.id}")
    return web.json_response({"sent": channel, "to": masked})


@routes.get("/api/v1/sessions/{session_id}/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    await authenticate(request)
    ctx = _ctx(request)
    session = await ctx.sessions.get(request.match_info["session_id"])
    snapshots = await ctx.store.snapshots(session.id)
    folder = api_folder(session.id, "snapshots")
    confirmed = [FieldOut.of(f) for f in await ctx.store.fields(session.id, FieldStatus.CONFIRMED)]
    return web.json_response({"snapshots": [SnapshotOut.of(s, folder, confirmed).model_dump(mode="json")
                                            for s in snapshots]})


@routes.get("/api/v1/sessions/{session_id}/fields")
async def list_fields(request: web.Request) -> web.Response:
    """Every value read off the session's snapshots: suggested, confirmed and dismissed."""
    await authenticate(request)
    fields = await _ctx(request).sessions.fields(request.match_info["session_id"])
    return web.json_response({"fields": [f.model_dump(mode="json") for f in fields]})


@routes.post("/api/v1/sessions/{session_id}/fields/{field_id}/confirm")
async def confirm_field(request: web.Request) -> web.Response:
    key = await authenticate(request)
    body = await read_json(request, ConfirmFieldIn)
    field = await _ctx(request).sessions.decide_field(
        request.match_info["session_id"], request.match_info["field_id"], body.value, f"api:{key.id}")
    return web.json_response(field.model_dump(mode="json"))


@routes.get("/api/v1/sessions/{session_id}/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    await authenticate(request)
    ctx = _ctx(request)
    session = await ctx.sessions.get(request.match_info["session_id"])
    recordings = await ctx.store.recordings(session.id)
    folder = api_folder(session.id, "recordings")
    return web.json_response({"recordings": [RecordingOut.of(r, folder).model_dump(mode="json")
                                             for r in recordings]})


@routes.get("/api/v1/sessions/{session_id}/recordings/{recording_id}")
async def get_recording(request: web.Request) -> web.StreamResponse:
    """The WebM file; HTTP Range requests are answered, so a browser can seek in it."""
    await authenticate(request)
    ctx = _ctx(request)
    recording = await ctx.store.recording(request.match_info["session_id"],
                                          request.match_info["recording_id"])
    if recording is None:
        raise NotFound(ApiErrorCode.RECORDING_NOT_FOUND, "no such recording in this session")
    path = ctx.blobs.local_path(recording.key)
    if not path.is_file():
        raise NotFound(ApiErrorCode.RECORDING_MISSING, "the file of this recording is missing from storage")
    return web.FileResponse(path, headers={
        "Content-Type": "video/webm", "Cache-Control": "private, max-age=31536000, immutable",
        "Content-Disposition": f'inline; filename="{recording.ticket_id}-{recording.id}.webm"'})


async def snapshot_image(ctx: AppContext, snapshot: Snapshot, kind: str) -> web.Response:
    key = snapshot.raw_key if kind == "raw" else snapshot.annotated_key
    data = await ctx.blobs.get(key)
    if data is None:
        raise NotFound(ApiErrorCode.IMAGE_MISSING, "the image for this snapshot is missing from storage")
    return web.Response(body=data, content_type="image/png",
                        headers={"Cache-Control": "private, max-age=31536000, immutable"})


@routes.get(r"/api/v1/sessions/{session_id}/snapshots/{snapshot_id}/{kind:(raw|annotated)}.png")
async def get_snapshot_image(request: web.Request) -> web.Response:
    await authenticate(request)
    ctx = _ctx(request)
    snapshot = await ctx.store.snapshot(request.match_info["session_id"],
                                        request.match_info["snapshot_id"])
    if snapshot is None:
        raise NotFound(ApiErrorCode.SNAPSHOT_NOT_FOUND, "no such snapshot in this session")
    return await snapshot_image(ctx, snapshot, request.match_info["kind"])


@routes.delete("/api/v1/tickets/{ticket_id}")
async def erase_ticket(request: web.Request) -> web.Response:
    """Erase a ticket's media and personal data (open sessions are revoked first); anonymous outcome
    figures are kept, no longer linked to the ticket."""
    key = await authenticate(request)
    ticket_id = request.match_info["ticket_id"]
    counts = await _ctx(request).sessions.erase_ticket(ticket_id, f"api:{key.id}")
    return web.json_response({"ticket_id": ticket_id, "erased": counts})


@routes.get("/api/v1/tickets/{ticket_id}")
async def get_ticket(request: web.Request) -> web.Response:
    await authenticate(request)
    ctx = _ctx(request)
    ticket_id = request.match_info["ticket_id"]
    sessions = await ctx.store.sessions_for_ticket(ticket_id)
    if not sessions:
        raise NotFound(ApiErrorCode.TICKET_NOT_FOUND, f"no sessions for ticket {ticket_id!r}")
    described: list[dict[str, Any]] = [
        await ctx.sessions.describe(s, snapshots=True) for s in sessions
    ]
    page = record_url(public_base(request), ticket_id)
    return web.json_response({"ticket_id": ticket_id, "record_url": page, "sessions": described})


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(document())


def _webhook_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events,
            "created_at": iso(endpoint.created_at), "disabled_at": iso(endpoint.disabled_at)}


def _delivery_view(delivery: Delivery) -> dict[str, Any]:
    # Times as the store keeps them (microseconds, +00:00), as this listing has always shown them.
    return {"id": delivery.id, "endpoint_id": delivery.endpoint_id, "event_id": delivery.event_id,
            "session_id": delivery.session_id, "type": delivery.type, "status": delivery.status,
            "attempts": [{"at": stamp(a.at), "status_code": a.status_code, "error": a.error,
                          "duration_ms": a.duration_ms} for a in delivery.attempts],
            "last_error": delivery.last_error, "created_at": stamp(delivery.created_at),
            "delivered_at": None if delivery.delivered_at is None else stamp(delivery.delivered_at),
            "next_attempt_at": stamp(delivery.next_attempt_at) if delivery.status == "pending" else None}


@routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    """Register a receiver; the answer carries its signing secret, shown once."""
    key = await authenticate(request)
    body = await read_json(request, WebhookIn)
    ctx = _ctx(request)
    endpoint_id, secret = await management.add_webhook(ctx.store, body.url, list(body.events),
                                                       f"api:{key.id}")
    created = next(w for w in await ctx.store.webhooks() if w.id == endpoint_id)
    return web.json_response({**_webhook_view(created), "secret": secret}, status=201,
                             headers={"Location": f"/api/v1/webhooks/{endpoint_id}"})


@routes.get("/api/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response({"webhooks": [_webhook_view(w) for w in await _ctx(request).store.webhooks()]})


@routes.delete("/api/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    key = await authenticate(request)
    if not await management.remove_webhook(_ctx(request).store, request.match_info["webhook_id"],
                                           f"api:{key.id}"):
        raise NotFound(ApiErrorCode.WEBHOOK_NOT_FOUND, "no active webhook with that id")
    return web.Response(status=204)


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """Every delivery to this receiver, newest first, with each attempt."""
    await authenticate(request)
    ctx = _ctx(request)
    webhook_id = request.match_info["webhook_id"]
    if not any(w.id == webhook_id for w in await ctx.store.webhooks()):
        raise NotFound(ApiErrorCode.WEBHOOK_NOT_FOUND, "no webhook with that id")
    status = request.query.get("status")
    if status not in (None, "pending", "delivered", "failed", "cancelled"):
        raise ClientError(ApiErrorCode.VALIDATION_FAILED,
                          "status: one of pending, delivered, failed, cancelled", status=422)
    deliveries = await ctx.store.deliveries(webhook_id, status)
    return web.json_response({"deliveries": [_delivery_view(d) for d in deliveries]})


@routes.post(r"/api/v1/webhooks/deliveries/{delivery_id:\d{1,18}}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    key = await authenticate(request)
    if not await management.redeliver(_ctx(request).store, int(request.match_info["delivery_id"]),
                                      f"api:{key.id}"):
        raise NotFound(ApiErrorCode.DELIVERY_NOT_FOUND, "no such delivery to an active webhook")
    return web.json_response({"status": "pending"}, status=202)
