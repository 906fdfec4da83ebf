"""The admin page: accounts, API keys, webhook receivers and deliveries, and the audit log.

Every action is a POST form with the session's CSRF token, for admins only, and lands in the audit log.
"""

from __future__ import annotations

from aiohttp import web

from visassist import accounts, management, webhooks
from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError, Forbidden
from visassist.models import WebSession
from visassist.pages import render

routes = web.RouteTableDef()


async def _admin(request: web.Request) -> WebSession:
    signed_in = await accounts.current_user(request)
    if signed_in is None:
        raise accounts.SignInRequired(ApiErrorCode.SIGN_IN_REQUIRED, "sign in first")
    if signed_in.user.role != accounts.UserRole.ADMIN:
        raise Forbidden(ApiErrorCode.ADMINS_ONLY, "the admin page is for administrators")
    return signed_in


async def _page(request: web.Request, signed_in: WebSession, shown_once: dict[str, str] | None = None,
                error: str | None = None, status: int = 200) -> web.Response:
    store = request.app[AppContext.KEY].store
    hooks = [w for w in await store.webhooks() if not w.url.startswith("zendesk:")]
    internal = [w for w in await store.webhooks() if w.url.startswith("zendesk:")]
    deliveries = {w.id: await store.deliveries(w.id, limit=20) for w in hooks + internal}
    return render("admin.html", status=status, user=signed_in.user, csrf=signed_in.csrf,
                  users=await store.users(),
                  keys=await store.list_api_keys(), hooks=hooks + internal, deliveries=deliveries,
                  audit=await store.audit_log(100), event_types=webhooks.ALL_TYPES,
                  roles=[r.value for r in accounts.UserRole], shown_once=shown_once, error=error)


@routes.get("/admin")
async def admin_page(request: web.Request) -> web.Response:
    return await _page(request, await _admin(request))


@routes.post("/admin/{action}")
async def admin_action(request: web.Request) -> web.Response:
    user = await _admin(request)
    form = await request.post()
    accounts.check_csrf(request, user.csrf, str(form.get("csrf", "")))
    store = request.app[AppContext.KEY].store
    actor = f"user:{user.user.email}"
    action = request.match_info["action"]

    def field(name: str) -> str:
        return str(form.get(name, "")).strip()

    try:
        if action == "api-key-create":
            name = field("name")[:100] or "unnamed"
            _, key = await management.issue_api_key(store, name, actor)
            return await _page(request, user, {"what": f"API key {name}", "value": key})
        if action == "api-key-revoke":
            if not await store.revoke_api_key(field("id"), actor):
                raise ClientError(ApiErrorCode.NOT_FOUND, "no such active API key")
        elif action == "user-create":
            email = field("email")[:254]
            if "@" not in email:
                raise management.ManagementError("give an e-mail address and a role")
            await management.add_user(store, email, field("name")[:200] or email, field("role"),
                                      str(form.get("password", "")), actor)
        elif action == "user-disable":
            if field("id") == user.user.id:
                raise management.ManagementError("you cannot disable your own account")
            await store.set_user_disabled(field("id"), True, actor)
        elif action == "webhook-create":
            url = field("url")[:2000]
            events = [str(e) for e in form.getall("events", [])]
            _, secret = await management.add_webhook(store, url, events, actor)
            return await _page(request, user, {"what": f"signing secret for {url}", "value": secret})
        elif action == "webhook-remove":
            if not await management.remove_webhook(store, field("id"), actor):
                raise ClientError(ApiErrorCode.NOT_FOUND, "no such active webhook")
        elif action == "redeliver":
            if not field("id").isdigit() or not await management.redeliver(store, int(field("id")), actor):
                raise ClientError(ApiErrorCode.NOT_FOUND, "no such delivery to an active webhook")
        else:
            raise web.HTTPNotFound()
    except (ClientError, ValueError) as exc:
        message = exc.message if isinstance(exc, ClientError) else str(exc)
        return await _page(request, user, error=message, status=400)
    raise web.HTTPSeeOther("/admin")
