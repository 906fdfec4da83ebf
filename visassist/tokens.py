"""Link tokens and API keys: random, shown once, stored only as a SHA-256 digest.

The tokens carry 256 bits of randomness, so a fast digest is enough at rest (there is nothing to
brute-force, unlike a password); the prefix makes a leaked key recognisable in logs and scanners.
"""

from __future__ import annotations

import hashlib
import secrets

API_KEY_PREFIX = "vak_"
LINK_TOKEN_BYTES = 32


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(LINK_TOKEN_BYTES)


def new_link_token() -> str:
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    """Cheap shape check before touching the database: url-safe base64, sane length."""
    return 20 <= len(token) <= 128 and all(c.isalnum() or c in "-_" for c in token)


def new_id(prefix: str) -> str:
    """Public identifiers: prefixed so a log line says what it names; not secrets."""
    return f"{prefix}_{secrets.token_hex(8)}"
