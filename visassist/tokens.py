"""Link tokens and API keys.

API keys are random, shown once and stored only as a SHA-256 digest; the prefix makes a leaked key
recognisable in logs and scanners. Link tokens are signed: an HMAC of the participant id under the
server's link key (data dir, file mode 0600, never in the database), so the API can hand a link out
again (a retried create, a ticket sidebar) while the database holds only their digests. Both carry
256 bits, so a fast digest is enough at rest: there is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

API_KEY_PREFIX = "vak_"
LINK_TOKEN_BYTES = 32


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(LINK_TOKEN_BYTES)


def link_token(key: bytes, participant_id: str) -> str:
    mac = hmac.new(key, f"visassist-link:{participant_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def ticket_digest(key: bytes, ticket_id: str) -> str:
    """An erased ticket's id as kept in its erasure mark: only this server can match it again."""
    return hmac.new(key, f"visassist-ticket:{ticket_id}".encode(), hashlib.sha256).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """The server's link key: created once (mode 0600), then read; losing it voids every link."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(LINK_TOKEN_BYTES)
        # Written whole under another name, then linked into place: nodes starting together on one
        # shared data directory never read a key half written, and the first link wins.
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first
            key = path.read_bytes()
        finally:
            draft.unlink()
    if len(key) < LINK_TOKEN_BYTES:
        raise ValueError(f"{path} is not a visassist link key")
    return key


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    """Cheap shape check before touching the database: url-safe base64, sane length."""
    return 20 <= len(token) <= 128 and all(c.isalnum() or c in "-_" for c in token)


def new_id(prefix: str) -> str:
    """Public identifiers: prefixed so a log line says what it names; not secrets."""
    return f"{prefix}_{secrets.token_hex(8)}"
