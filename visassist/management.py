"""What administrators do, shared by the admin page, the CLI and the API: each action is audited."""

from __future__ import annotations

from typing import Protocol

from pydantic import ValidationError

from visassist import webhooks
from visassist.accounts import UserRole, hash_password
from visassist.schemas import WebhookIn
from visassist.store.base import AccountStore, ApiKeyStore, AuditLog, OutboxStore
from visassist.tokens import digest, new_api_key, new_id


# Each action needs its aggregate and the audit log, nothing more.
class _KeysAudited(ApiKeyStore, AuditLog, Protocol): ...


class _OutboxAudited(OutboxStore, AuditLog, Protocol): ...


class ManagementError(ValueError):
    """Refused input; the message is safe to show to the person who gave it."""


async def issue_api_key(store: _KeysAudited, name: str, actor: str) -> tuple[str, str]:
    """A new API key: (its id, the key itself, shown once; only its digest is kept)."""
    key, key_id = new_api_key(), new_id("key")
    await store.create_api_key(key_id, name, digest(key))
    await store.audit(actor, "api_key.create", key_id, {"name": name})
    return key_id, key


async def add_webhook(store: _OutboxAudited, url: str, events: list[str], actor: str) -> tuple[str, str]:
    """A webhook receiver: (its id, its signing secret, shown once)."""
    try:
        checked = WebhookIn.model_validate({"url": url, "events": events})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ManagementError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    unique: list[str] = list(dict.fromkeys(checked.events))
    endpoint_id, secret = new_id("whk"), webhooks.new_secret()
    await store.create_webhook(endpoint_id, checked.url, secret, unique)
    await store.audit(actor, "webhook.create", endpoint_id, {"url": checked.url, "events": unique})
    return endpoint_id, secret


async def remove_webhook(store: _OutboxAudited, endpoint_id: str, actor: str) -> bool:
    if not await store.disable_webhook(endpoint_id):
        return False
    await store.audit(actor, "webhook.remove", endpoint_id, {})
    return True


async def redeliver(store: _OutboxAudited, delivery_id: int, actor: str) -> bool:
    if not await store.redeliver(delivery_id):
        return False
    await store.audit(actor, "delivery.redeliver", str(delivery_id), {})
    return True


async def add_user(store: AccountStore, email: str, name: str, role: str, password: str, actor: str) -> str:
    if role not in {r.value for r in UserRole}:
        raise ManagementError(f"role is one of {', '.join(r.value for r in UserRole)}")
    if await store.user_by_email(email) is not None:
        raise ManagementError(f"{email} has an account already")
    user_id = new_id("usr")
    await store.create_user(user_id, email, name, role, hash_password(password), actor)
    return user_id
