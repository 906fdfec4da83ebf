"""The admin page: accounts, API keys, webhook receivers and deliveries, and the audit log.

Every action is a POST form with the session's CSRF token, for admins only, and lands in the audit log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from visassist import accounts, webhooks
from visassist.context import AppContext
from visassist.errors import ClientError, Forbidden
from visassist.pages import render
from visassist.tokens import digest, new_api_key, new_id

routes = web.RouteTableDef()


async def _admin(request: web.Request) -> dict[str, Any]:
    user = await accounts.current_user(request)
    if user is None:
        raise accounts.SignInRequired("sign_in_required", "sign in first")
    if user["role"] != accounts.UserRole.ADMIN:
        raise Forbidden("admins_only", "the admin page is for administrators")
    return user


async def _page(request: web.Request, user: dict[str, Any], shown_once: dict[str, str] | None = None,
                error: str | None = None, status: int = 200) -> web.Response:
    store = request.app[AppContext.KEY].store
    hooks = [w for w in await store.webhooks() if not w["url"].startswith("zendesk:")]
    internal = [w for w in await store.webhooks() if w["url"].startswith("zendesk:")]
    deliveries = {w["id"]: await store.deliveries(w["id"], limit=20) for w in hooks + internal}
    return render("admin.html", status=status, user=user, users=await store.users(),
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
    accounts.check_csrf(request, user["csrf"], str(form.get("csrf", "")))
    store = request.app[AppContext.KEY].store
    actor = f"user:{user['email']}"
    action = request.match_info["action"]

    def field(name: str) -> str:
        return str(form.get(name, "")).strip()

    try:
        if action == "api-key-create":
            key, key_id = new_api_key(), new_id("key")
            name = field("name")[:100] or "unnamed"
            await store.create_api_key(key_id, name, digest(key))
            await store.audit(actor, "api_key.create", key_id, {"name": name})
            return await _page(request, user, {"what": f"API key {name}", "value": key})
        if action == "api-key-revoke":
            if not await store.revoke_api_key(field("id"), actor):
                raise ClientError("not_found", "no such active API key")
        elif action == "user-create":
            email, role = field("email")[:254], field("role")
            if "@" not in email or role not in {r.value for r in accounts.UserRole}:
                raise ClientError("invalid", "give an e-mail address and a role")
            if await store.user_by_email(email) is not None:
                raise ClientError("exists", f"{email} has an account already")
            await store.create_user(new_id("usr"), email, field("name")[:200] or email, role,
                                    accounts.hash_password(str(form.get("password", ""))), actor)
        elif action == "user-disable":
            if field("id") == user["id"]:
                raise ClientError("self", "you cannot disable your own account")
            await store.set_user_disabled(field("id"), True, actor)
        elif action == "webhook-create":
            url = field("url")[:2000]
            events = [e for e in form.getall("events", []) if e in webhooks.ALL_TYPES]
            if not url.startswith(("http://", "https://")) or not events:
                raise ClientError("invalid", "give an http(s) URL and at least one event")
            endpoint_id, secret = new_id("whk"), webhooks.new_secret()
            await store.create_webhook(endpoint_id, url, secret, [str(e) for e in events])
            await store.audit(actor, "webhook.create", endpoint_id, {"url": url, "events": events})
            return await _page(request, user, {"what": f"signing secret for {url}", "value": secret})
        elif action == "webhook-remove":
            if not await store.disable_webhook(field("id")):
                raise ClientError("not_found", "no such active webhook")
            await store.audit(actor, "webhook.remove", field("id"), {})
        elif action == "redeliver":
            if not field("id").isdigit() or not await store.redeliver(int(field("id"))):
                raise ClientError("not_found", "no such delivery to an active webhook")
            await store.audit(actor, "delivery.redeliver", field("id"), {})
        else:
            raise web.HTTPNotFound()
    except (ClientError, ValueError) as exc:
        message = exc.message if isinstance(exc, ClientError) else str(exc)
        return await _page(request, user, error=message, status=400)
    raise web.HTTPSeeOther("/admin")
