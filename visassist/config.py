"""Server settings: one frozen dataclass that also declares how each is given and what it is for.

Each field's metadata (an Option) holds its doc, its `visassist serve` flag and its environment
variable: cli.py builds the command line from it and visassist/docs.py the README's table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from visassist.capacity import default_max_live_sessions
from visassist.vision.patterns import DEFAULT_PATTERNS, FieldPattern, parse_field_pattern


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
class Option:
    """What a setting is for and how it is given. With neither flag nor env it is fixed: a bound of
    the code that only code (tests) changes."""

    doc: str  # what it is for, in `visassist serve --help` and the README (`code` in backticks)
    flag: str | None = None  # the `visassist serve` option
    env: str | None = None  # the environment variable that gives the flag's default
    default: str | None = None  # the default in words, where the value alone says too little
    metavar: str | None = None  # the value's name in --help


def option(doc: str, *, flag: str | None = None, env: str | None = None, default: str | None = None,
           metavar: str | None = None) -> dict[str, Option]:
    """A Settings field's metadata."""
    return {"option": Option(doc, flag, env, default, metavar)}


def fixed(doc: str) -> dict[str, Option]:
    """The metadata of a field no flag or variable sets."""
    return option(doc)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata=option(
        "address to listen on", flag="--host", env="VISASSIST_HOST"))
    port: int = field(default=8080, metadata=option(
        "port to listen on", flag="--port", env="VISASSIST_PORT"))
    data_dir: Path = field(default=Path("data"), metadata=option(
        "directory for the SQLite database and stored images", flag="--data-dir",
        env="VISASSIST_DATA_DIR", default="`./data`"))
    database_url: str | None = field(default=None, metadata=option(
        "the database: `postgresql://user:password@host/name` for several nodes sharing one, or "
        "`sqlite:///path`", flag="--database-url", env="VISASSIST_DATABASE_URL",
        default="SQLite in the data directory", metavar="URL"))
    node_url: str | None = field(default=None, metadata=option(
        "this node's own base URL, where links to the sessions placed on it point, when several nodes "
        "share one PostgreSQL database (see Running several nodes)", flag="--node-url",
        env="VISASSIST_NODE_URL", default="the public URL", metavar="URL"))
    node_id: str | None = field(default=None, metadata=option(
        "this node's name among the nodes sharing the database; keep it across restarts",
        flag="--node-id", env="VISASSIST_NODE_ID", default="host name:port", metavar="NAME"))
    public_url: str | None = field(default=None, metadata=option(
        "base of the links handed out, e.g. `https://assist.example.com` behind a TLS proxy",
        flag="--public-url", env="VISASSIST_PUBLIC_URL", default="the origin of each API request"))
    # Empty means every non-loopback interface (aioice's default); tests and single-host setups use
    # 127.0.0.1.
    ice_addresses: tuple[str, ...] = field(default=(), metadata=option(
        "IP addresses the server's WebRTC peers offer as host candidates; set it in a container or on "
        "a multi-homed host; repeat for several", flag="--ice-address", env="VISASSIST_ICE_ADDRESSES",
        default="every non-loopback interface", metavar="IP"))
    # None by default: aiortc would otherwise fall back to a public STUN server.
    ice_servers: tuple[IceServer, ...] = field(default=(), metadata=option(
        "STUN/TURN for browsers and the server: `stun:host:3478` or `turn:host:3478|user|password`; "
        "repeat for several", flag="--ice-server", env="VISASSIST_ICE_SERVERS", metavar="SPEC"))
    # TURN with coturn's REST authentication (visassist/media/turn.py): a shared secret, no passwords.
    turn_secret: str | None = field(default=None, metadata=option(
        "coturn's `static-auth-secret` (`use-auth-secret`): each page gets TURN credentials of its own, "
        "valid for `--turn-ttl`; prefer the environment variable, which other users cannot see in `ps`; "
        "see docs/turn.md", flag="--turn-secret", env="VISASSIST_TURN_SECRET", default="off"))
    turn_urls: tuple[str, ...] = field(default=(), metadata=option(
        "the TURN server's URLs handed out with those credentials, e.g. "
        "`turn:turn.example.com:3478?transport=udp`, `turn:turn.example.com:3478?transport=tcp`, "
        "`turns:turn.example.com:443?transport=tcp`; repeat for several", flag="--turn-url",
        env="VISASSIST_TURN_URLS", metavar="URL"))
    turn_ttl_seconds: int = field(default=8 * 3600, metadata=option(
        "how long TURN credentials stay valid; longer than a call (coturn refuses to refresh an "
        "allocation once they expire), and a page gets fresh ones each time it reconnects",
        flag="--turn-ttl", env="VISASSIST_TURN_TTL", metavar="SECONDS"))
    ice_relay_only: bool = field(default=False, metadata=option(
        "pages connect their media only through TURN (`iceTransportPolicy: \"relay\"`): hides the "
        "participants' addresses from the server and tests a TURN deployment", flag="--ice-relay-only",
        env="VISASSIST_ICE_RELAY_ONLY"))
    # Retention: None keeps them until the ticket is erased.
    retention_media_days: int | None = field(default=None, metadata=option(
        "remove snapshots and their images this many days after a session ended (hourly purge, "
        "logged, and a `retention.purged` event)", flag="--retention-media-days",
        env="VISASSIST_RETENTION_MEDIA_DAYS", default="keep", metavar="DAYS"))
    retention_chat_days: int | None = field(default=None, metadata=option(
        "remove chat text this many days after it was written (the timeline keeps that a message was "
        "sent)", flag="--retention-chat-days", env="VISASSIST_RETENTION_CHAT_DAYS", default="keep",
        metavar="DAYS"))
    # Customer invitations: e-mail through this SMTP server, SMS through an HTTP relay.
    smtp_host: str | None = field(default=None, metadata=option(
        "mail server for customer invitations: `POST /api/v1/sessions/{id}/invitations` with "
        "`{\"email\"}` sends the customer their link", flag="--smtp-host", env="VISASSIST_SMTP_HOST",
        default="off"))
    smtp_port: int = field(default=587, metadata=option(
        "its port", flag="--smtp-port", env="VISASSIST_SMTP_PORT"))
    smtp_from: str = field(default="visassist@localhost", metadata=option(
        "sender address of invitations", flag="--smtp-from", env="VISASSIST_SMTP_FROM"))
    smtp_username: str | None = field(default=None, metadata=option(
        "SMTP user, if the mail server wants one", flag="--smtp-username",
        env="VISASSIST_SMTP_USERNAME"))
    # Secrets come only from the environment: other users of the machine can read command lines.
    smtp_password: str | None = field(default=None, metadata=option(
        "the SMTP user's password", env="VISASSIST_SMTP_PASSWORD"))
    smtp_starttls: bool = field(default=True, metadata=option(
        "talk to the mail server without STARTTLS (a local relay only)", flag="--smtp-no-starttls",
        default="STARTTLS"))
    sms_url: str | None = field(default=None, metadata=option(
        "SMS through your gateway: we `POST {\"to\", \"text\"}` (with the bearer token) to this URL "
        "for `{\"phone\": \"+351…\"}` invitations; any provider fits behind a small relay (the "
        "`SmsProvider` interface in `visassist/invitations.py`)", flag="--sms-url",
        env="VISASSIST_SMS_URL", default="off"))
    sms_token: str | None = field(default=None, metadata=option(
        "bearer token for the SMS relay", env="VISASSIST_SMS_TOKEN"))
    # Zendesk adapter: set all three to add an internal note with snapshots when a session ends.
    zendesk_url: str | None = field(default=None, metadata=option(
        "your Zendesk, e.g. `https://acme.zendesk.com`: when a session ends, an internal note "
        "(outcome, duration, notes, record link) with the snapshots attached, on the ticket whose "
        "number is the session's `ticket_id` (`1042` or `ZD-1042`); delivered through the webhook "
        "outbox, so retried and recorded; needs the two below", flag="--zendesk-url",
        env="VISASSIST_ZENDESK_URL", default="off"))
    zendesk_email: str | None = field(default=None, metadata=option(
        "the Zendesk agent the API token belongs to", flag="--zendesk-email",
        env="VISASSIST_ZENDESK_EMAIL"))
    zendesk_token: str | None = field(default=None, metadata=option(
        "a Zendesk API token; prefer the environment variable, which other users cannot see in `ps`",
        flag="--zendesk-token", env="VISASSIST_ZENDESK_TOKEN"))
    record_by_default: bool = field(default=False, metadata=option(
        "record sessions created without a `record` field: the customer's video and the voices, as "
        "WebM, in the ticket's record", flag="--record", env="VISASSIST_RECORD"))
    # Measured by bench-media (capacity.py).
    max_live_sessions: int = field(default_factory=default_max_live_sessions, metadata=option(
        "live sessions this node carries; past it, new sessions get `503 capacity_exhausted`, joins "
        "`server_busy` and people a \"busy\" page, while live sessions keep full frame rate",
        flag="--max-live-sessions", env="VISASSIST_MAX_LIVE_SESSIONS",
        default="12 per CPU core", metavar="N"))
    # Vision (visassist/vision/): on by default, on the server's own CPU, nothing sent anywhere.
    blur_faces: bool = field(default=True, metadata=option(
        "store snapshots and HD photos without blurring faces; by default faces are found and blurred "
        "before anything is written (the live view is never blurred)", flag="--no-blur-faces",
        default="blur"))
    read_labels: bool = field(default=True, metadata=option(
        "do not read text, barcodes and QR codes in stored snapshots (by default the console shows what "
        "was read as chips the agent confirms)", flag="--no-read-labels", default="read"))
    field_patterns: tuple[FieldPattern, ...] = field(default=(), metadata=option(
        "what counts as a field in the text read off a label: `name=regex`, the regex's first group "
        "being the value, matched against each upper-cased line; a name replaces its default; repeat "
        "for several", flag="--field-pattern", metavar="NAME=REGEX",
        default="`serial_number`, `model`, `mac_address`, `imei` (visassist/vision/patterns.py)"))
    log_level: LogLevel = field(default="INFO", metadata=option(
        "log verbosity", flag="--log-level", env="VISASSIST_LOG_LEVEL"))
    log_format: LogFormat = field(default="text", metadata=option(
        "`json`: one JSON object per line, with `session_id` and `participant_id` as fields where a "
        "line is about one, for a log collector", flag="--log-format", env="VISASSIST_LOG_FORMAT"))
    metrics_token: str | None = field(default=None, metadata=option(
        "bearer token Prometheus sends for `/metrics`; without it `/metrics` answers only requests "
        "from this host that came through no proxy", flag="--metrics-token",
        env="VISASSIST_METRICS_TOKEN", default="this host only"))

    # Fixed: bounds of the code, changed only by tests.
    default_ttl_seconds: int = field(default=3600, metadata=fixed(
        "not read: schemas.CreateSessionIn holds the `ttl_seconds` default"))
    max_ttl_seconds: int = field(default=7 * 24 * 3600, metadata=fixed(
        "not read: schemas.CreateSessionIn holds the `ttl_seconds` bound"))
    max_body_bytes: int = field(default=64 * 1024, metadata=fixed("largest API request body"))
    max_ws_message_bytes: int = field(default=256 * 1024, metadata=fixed("largest signalling message"))
    max_ws_frame_bytes: int = field(default=32 * 1024 * 1024, metadata=fixed(
        "largest WebSocket frame read (and answered with an error); past it the socket closes with 1009"))
    max_snapshots_per_session: int = field(default=500, metadata=fixed("snapshots one session keeps"))
    max_participants_per_session: int = field(default=8, metadata=fixed(
        "people with a link to one session"))
    max_photo_bytes: int = field(default=15 * 1024 * 1024, metadata=fixed("largest HD photo upload"))
    expiry_sweep_seconds: float = field(default=5.0, metadata=fixed(
        "how often live sessions are checked for expiry"))
    purge_interval_seconds: float = field(default=3600.0, metadata=fixed("how often retention runs"))
    webhook_retry_base: float = field(default=5.0, metadata=fixed(
        "first webhook retry after this many seconds, doubling (with jitter) up to the cap"))
    webhook_retry_cap: float = field(default=600.0, metadata=fixed("longest wait between retries"))
    vision_queue_limit: int = field(default=4, metadata=fixed(
        "pictures waiting to be read past the one being read; more are refused (busy)"))
    vision_timeout_seconds: float = field(default=10.0, metadata=fixed("a reading given up on after this"))
    vision_threads: int = field(default=2, metadata=fixed("cores one reading uses"))

    # Derived, not settings:

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def patterns(self) -> tuple[FieldPattern, ...]:
        """The field patterns in force: the defaults, with those given replacing theirs by name."""
        given = {p.name: p for p in self.field_patterns}
        kept = tuple(given.pop(p.name, p) for p in DEFAULT_PATTERNS)
        return kept + tuple(given.values())

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'visassist.sqlite3'}"

    @property
    def link_key_path(self) -> Path:
        return self.data_dir / "link.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


@dataclass(frozen=True)
class Declared:
    """A Settings field as the command line and the README see it."""

    name: str
    option: Option
    type: Any  # resolved, e.g. `int | None`
    default: Any  # dataclasses.MISSING when a factory makes it

    @property
    def fixed(self) -> bool:
        return self.option.flag is None and self.option.env is None

    @property
    def choices(self) -> tuple[str, ...]:
        return get_args(self.type) if get_origin(self.type) is Literal else ()

    @property
    def env_words(self) -> str | None:
        env = self.option.env
        if env is None:
            return None
        if get_origin(self.type) is tuple:
            return f"`{env}`, comma-separated"
        return f"`{env}=1`" if self.type is bool else f"`{env}`"

    @property
    def default_words(self) -> str:
        if self.option.default is not None:
            return self.option.default
        if self.default is MISSING:
            raise ValueError(f"Settings.{self.name} is made by a factory: say its default in words")
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return "none" if self.default in (None, ()) else f"`{self.default}`"


def declared() -> list[Declared]:
    types = get_type_hints(Settings)
    return [Declared(f.name, f.metadata["option"], types[f.name], f.default) for f in fields(Settings)]


def parse_ice_server(spec: str) -> IceServer:
    """Parse `turn:host:3478?transport=udp|user|secret` or `stun:host:3478`."""
    parts = spec.split("|")
    if len(parts) not in (1, 3) or not parts[0].startswith(("stun:", "turn:", "turns:")):
        raise ValueError(f"not a STUN/TURN server spec: {spec!r} (want stun:H:P or turn:H:P|user|pass)")
    if len(parts) == 3:
        return IceServer(urls=parts[0], username=parts[1], credential=parts[2])
    return IceServer(urls=parts[0])


# Text from the command line or the environment to a value, where the type itself (str, int, Path)
# does not do it.
PARSERS: dict[Any, Callable[[str], Any]] = {IceServer: parse_ice_server, FieldPattern: parse_field_pattern}


def env_list(name: str) -> list[str]:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()]
