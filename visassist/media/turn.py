"""Short-lived TURN credentials for coturn's REST authentication (`use-auth-secret`).

visassist and coturn share one secret and nothing else: no user database, no call between them. Each
participant gets a username `<expiry unix time>:<participant id>` and, as its password, the
base64 HMAC-SHA1 of that username under the secret. coturn recomputes the HMAC and refuses the username
once its time has passed, so a leaked credential is worth little and no stored password can leak.
(The scheme of draft-uberti-behave-turn-rest, which coturn, Janus and Galene all speak.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from visassist.config import IceServer, Settings


def credential(secret: str, username: str) -> str:
    """The password coturn expects for `username`: base64(HMAC-SHA1(secret, username))."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def turn_servers(urls: tuple[str, ...], secret: str, participant_id: str, ttl_seconds: int,
                 now: float | None = None) -> list[IceServer]:
    """One entry per TURN URL, all with the same credentials, valid for `ttl_seconds` from `now`."""
    expiry = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expiry}:{participant_id}"
    password = credential(secret, username)
    return [IceServer(urls=url, username=username, credential=password) for url in urls]


def ice_servers_for(settings: Settings, participant_id: str) -> list[IceServer]:
    """What a participant's page passes to RTCPeerConnection: the configured STUN/TURN servers, then
    TURN with fresh credentials of its own when `--turn-secret` is set."""
    servers = list(settings.ice_servers)
    if settings.turn_secret and settings.turn_urls:
        servers += turn_servers(settings.turn_urls, settings.turn_secret, participant_id,
                                settings.turn_ttl_seconds)
    return servers
