"""Signing in and out of the console."""

from __future__ import annotations

import secrets
from urllib.parse import urlparse

from aiohttp import web

from visassist import accounts
from visassist.context import AppContext
from visassist.pages import error_page, render

routes = web.RouteTableDef()


def _safe_next(value: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or urlparse(value).netloc:
        return "/"
    return value


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    csrf = secrets.token_urlsafe(24)
    response = render("login.html", next=_safe_next(request.query.get("next")), csrf=csrf, error=None,
                      email="")
    response.set_cookie(accounts.LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict",
                        secure=accounts.secure(request), path="/login", max_age=3600)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    ctx = request.app[AppContext.KEY]
    form = await request.post()
    email = str(form.get("email", "")).strip()[:254]
    password = str(form.get("password", ""))[:1024]
    target = _safe_next(str(form.get("next", "")))
    accounts.check_csrf(request, request.cookies.get(accounts.LOGIN_CSRF_COOKIE, ""),
                        str(form.get("csrf", "")))
    if await accounts.rate_limited(ctx, request, email):
        return error_page(429, "Too many attempts",
                          "For your safety, signing in is paused for 15 minutes after several failed "
                          "attempts. Try again later, or ask an administrator to check your account.")
    user = await accounts.check_password(ctx, email, password)
    if user is None:
        await accounts.record_failure(ctx, request, email)
        csrf = str(form.get("csrf", ""))
        return render("login.html", status=401, next=target, csrf=csrf, email=email,
                      error="That e-mail and password don't match an active account.")
    response = web.HTTPSeeOther(target)
    await accounts.sign_in(request, response, user)
    response.del_cookie(accounts.LOGIN_CSRF_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    user = await accounts.current_user(request)
    form = await request.post()
    if user is not None:
        accounts.check_csrf(request, user.csrf, str(form.get("csrf", "")))
    response = web.HTTPSeeOther("/login")
    await accounts.sign_out(request, response)
    raise response
