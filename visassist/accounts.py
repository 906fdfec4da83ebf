"""People who sign in: console staff and admins.

Passwords are hashed with Argon2id (argon2-cffi's defaults, rehashed when they change). A signed-in
browser holds a random session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS; the database keeps
its digest) and every form carries that session's CSRF token. Sign-in is rate limited per e-mail and
per address. Once any user exists, staff links (/a/...) need a signed-in person whose role fits the
link, and a link is bound to the first such person who opens it; before that (a fresh install) staff
links work on their own, as scripts/serve says.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlparse

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from visassist.context import AppContext
from visassist.errors import ApiErrorCode, ClientError, Forbidden
from visassist.models import Participant, Role, User, WebSession, utcnow
from visassist.store.base import AccountStore
from visassist.tokens import digest

COOKIE = "visassist_session"
LOGIN_CSRF_COOKIE = "visassist_login"
SESSION_HOURS = 12
FAILURES_PER_EMAIL = 5
FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = timedelta(minutes=15)

_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown keeps the timing of both answers alike.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserRole(enum.StrEnum):
    AGENT = "agent"
    EXPERT = "expert"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Which signed-in roles may open a staff link of each role.
MAY_OPEN = {Role.AGENT: {UserRole.AGENT, UserRole.EXPERT, UserRole.ADMIN},
            Role.EXPERT: {UserRole.EXPERT, UserRole.ADMIN},
            Role.SUPERVISOR: {UserRole.SUPERVISOR, UserRole.ADMIN}}


def _accounts(ctx: AppContext) -> AccountStore:
    # Signing in touches the account aggregate only.
    return ctx.store


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("passwords have at least 12 characters")
    return _hasher.hash(password)


async def check_password(ctx: AppContext, email: str, password: str) -> User | None:
    user = await _accounts(ctx).user_by_email(email)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        await _accounts(ctx).rehash_password(user.id, _hasher.hash(password))
    return user


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def rate_limited(ctx: AppContext, request: web.Request, email: str) -> bool:
    since = utcnow() - FAILURE_WINDOW
    store = _accounts(ctx)
    return (await store.login_failures(f"email:{email.lower()}", since) >= FAILURES_PER_EMAIL
            or await store.login_failures(f"ip:{client_address(request)}", since) >= FAILURES_PER_ADDRESS)


async def record_failure(ctx: AppContext, request: web.Request, email: str) -> None:
    await _accounts(ctx).login_failure([f"email:{email.lower()}", f"ip:{client_address(request)}"], utcnow())


def secure(request: web.Request) -> bool:
    public = request.app[AppContext.KEY].settings.public_url or ""
    return request.secure or public.startswith("https://")


async def sign_in(request: web.Request, response: web.StreamResponse, user: User) -> None:
    ctx = request.app[AppContext.KEY]
    token = secrets.token_urlsafe(32)
    await _accounts(ctx).create_web_session(digest(token), user.id, secrets.token_urlsafe(32),
                                       utcnow() + timedelta(hours=SESSION_HOURS))
    response.set_cookie(COOKIE, token, max_age=SESSION_HOURS * 3600, httponly=True, samesite="Lax",
                        secure=secure(request), path="/")


async def current_user(request: web.Request) -> WebSession | None:
    """The signed-in person (with this session's `csrf` token), or None."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    return await _accounts(request.app[AppContext.KEY]).web_session(digest(token), utcnow())


async def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        await _accounts(request.app[AppContext.KEY]).end_web_session(digest(token))
    response.del_cookie(COOKIE, path="/")


def same_origin(request: web.Request) -> bool:
    """No Origin header (same-origin GETs, old browsers) or one naming this site (as served or as
    published: behind a TLS proxy the scheme differs, so hosts are compared)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    public = request.app[AppContext.KEY].settings.public_url
    allowed = {request.host} | ({urlparse(public).netloc} if public else set())
    return urlparse(origin).netloc in allowed


def check_csrf(request: web.Request, expected: str, submitted: str | None) -> None:
    """Every state-changing form: the session's token must come back, and from our own origin."""
    if not same_origin(request):
        raise Forbidden(ApiErrorCode.CSRF_FAILED, "this form was sent from another site")
    if not submitted or not hmac.compare_digest(expected, submitted):
        raise Forbidden(ApiErrorCode.CSRF_FAILED, "the form expired; reload the page and try again")


class SignInRequired(ClientError):
    status = 401


async def admit_staff(request: web.Request, participant: Participant) -> WebSession | None:
    """Enforce accounts for a staff link; returns the signed-in user, or None while there are none."""
    ctx = request.app[AppContext.KEY]
    if not await _accounts(ctx).has_users():
        return None
    user = await current_user(request)
    if user is None:
        raise SignInRequired(ApiErrorCode.SIGN_IN_REQUIRED, "sign in to open this session")
    if UserRole(user.user.role) not in MAY_OPEN[participant.role]:
        raise Forbidden(ApiErrorCode.WRONG_ROLE, f"this is a link for a {participant.role.value}; "
                                                 f"you are signed in as a {user.user.role}")
    bound = participant.user_id or await _accounts(ctx).bind_participant(participant.id, user.user.id)
    if bound != user.user.id:
        raise Forbidden(ApiErrorCode.NOT_YOUR_SESSION, "this session's link belongs to another agent")
    return user


EVERYONE = frozenset(UserRole)
OVERSEERS = frozenset({UserRole.SUPERVISOR, UserRole.ADMIN})  # see every session, ticket and figure


async def staff_member(request: web.Request, roles: frozenset[UserRole] = EVERYONE) -> WebSession:
    """The signed-in person for a staff page (home, ticket records, analytics), of one of `roles`."""
    signed_in = await current_user(request)
    if signed_in is None:
        raise SignInRequired(ApiErrorCode.SIGN_IN_REQUIRED, "sign in first")
    if UserRole(signed_in.user.role) not in roles:
        raise Forbidden(ApiErrorCode.SUPERVISORS_ONLY, "this page is for supervisors and administrators")
    return signed_in
