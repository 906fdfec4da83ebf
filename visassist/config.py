"""Server settings: one frozen dataclass, filled from the command line or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from visassist.capacity import default_max_live_sessions


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server handed to browsers and to the server's own peers."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def to_browser(self) -> dict[str, str]:
        entry = {"urls": self.urls}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # Base of the links we hand out; defaults to the origin the API request came to. Set it behind a proxy.
    public_url: str | None = None
    # Addresses the server's WebRTC peers gather host candidates on. Empty means every
    # non-loopback interface (aioice's default); tests and single-host setups use 127.0.0.1.
    ice_addresses: tuple[str, ...] = ()
    # None by default: aiortc would otherwise fall back to a public STUN server.
    ice_servers: tuple[IceServer, ...] = ()
    default_ttl_seconds: int = 3600
    max_ttl_seconds: int = 7 * 24 * 3600
    max_body_bytes: int = 64 * 1024
    max_ws_message_bytes: int = 256 * 1024
    # Live sessions this node carries before it refuses more (capacity.py; measured by bench-media).
    max_live_sessions: int = field(default_factory=default_max_live_sessions)
    max_snapshots_per_session: int = 500
    # Record sessions whose creator did not say (the API's "record" field).
    record_by_default: bool = False
    max_participants_per_session: int = 8
    max_photo_bytes: int = 15 * 1024 * 1024
    # How often live sessions are checked for expiry.
    expiry_sweep_seconds: float = 5.0
    log_level: str = "INFO"
    # Retention: snapshots (and their images) and chat text are removed this many days after the
    # session ended; None keeps them until the ticket is erased.
    retention_media_days: int | None = None
    retention_chat_days: int | None = None
    purge_interval_seconds: float = 3600.0
    # Zendesk adapter: set all three to add an internal note with snapshots when a session ends.
    zendesk_url: str | None = None
    zendesk_email: str | None = None
    zendesk_token: str | None = None
    # Customer invitations: e-mail through this SMTP server, SMS through an HTTP relay.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_from: str = "visassist@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    sms_url: str | None = None
    sms_token: str | None = None
    # Webhook retries: first after this many seconds, doubling (with jitter) up to the cap.
    webhook_retry_base: float = 5.0
    webhook_retry_cap: float = 600.0

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "visassist.sqlite3"

    @property
    def link_key_path(self) -> Path:
        return self.data_dir / "link.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


def parse_ice_server(spec: str) -> IceServer:
    """Parse `turn:host:3478?transport=udp|user|secret` or `stun:host:3478`."""
    parts = spec.split("|")
    if len(parts) not in (1, 3) or not parts[0].startswith(("stun:", "turn:", "turns:")):
        raise ValueError(f"not a STUN/TURN server spec: {spec!r} (want stun:H:P or turn:H:P|user|pass)")
    if len(parts) == 3:
        return IceServer(urls=parts[0], username=parts[1], credential=parts[2])
    return IceServer(urls=parts[0])


def env_list(name: str) -> list[str]:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()]
