"""The `visassist` command: run the server, manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from visassist import __version__, management, webhooks
from visassist.accounts import UserRole
from visassist.capacity import guard_accept_loop, raise_open_file_limit
from visassist.config import Settings, env_list, parse_ice_server
from visassist.store import SqliteStore

T = TypeVar("T")


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("VISASSIST_DATA_DIR", "data")),
        help="directory for the SQLite database and stored images (env VISASSIST_DATA_DIR; "
             "default ./data)")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return None if value is None or value == "" else int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visassist",
        description="Self-hosted remote visual-assist server for Tier 2/3 customer support.")
    parser.add_argument("--version", action="version", version=f"visassist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server",
                                description="Run the HTTP, WebSocket and WebRTC server.")
    serve.add_argument("--host", default=os.environ.get("VISASSIST_HOST", "127.0.0.1"),
                       help="address to listen on (env VISASSIST_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("VISASSIST_PORT", "8080")),
                       help="port to listen on (env VISASSIST_PORT; default 8080)")
    _data_dir_arg(serve)
    serve.add_argument(
        "--public-url", default=os.environ.get("VISASSIST_PUBLIC_URL"),
        help="base URL of the links handed out, e.g. https://assist.example.com when behind a "
             "TLS proxy (env VISASSIST_PUBLIC_URL; default http://HOST:PORT)")
    serve.add_argument(
        "--ice-address", action="append", default=None, metavar="IP",
        help="IP address the server's WebRTC peers offer as host candidates; repeat for several "
             "(env VISASSIST_ICE_ADDRESSES, comma-separated; default: every non-loopback interface)")
    serve.add_argument(
        "--ice-server", action="append", default=None, metavar="SPEC",
        help="STUN or TURN server for browsers and the server, 'stun:HOST:PORT' or "
             "'turn:HOST:PORT|USER|PASSWORD'; repeat for several (env VISASSIST_ICE_SERVERS, "
             "comma-separated; default none)")
    serve.add_argument(
        "--retention-media-days", type=int, default=_env_int("VISASSIST_RETENTION_MEDIA_DAYS"),
        metavar="DAYS", help="remove snapshots and their images this many days after a session ended "
                             "(env VISASSIST_RETENTION_MEDIA_DAYS; default: keep)")
    serve.add_argument(
        "--retention-chat-days", type=int, default=_env_int("VISASSIST_RETENTION_CHAT_DAYS"),
        metavar="DAYS", help="remove chat text this many days after it was written "
                             "(env VISASSIST_RETENTION_CHAT_DAYS; default: keep)")
    serve.add_argument("--smtp-host", default=os.environ.get("VISASSIST_SMTP_HOST"),
                       help="mail server for customer invitations (env VISASSIST_SMTP_HOST; default off)")
    serve.add_argument("--smtp-port", type=int, default=int(os.environ.get("VISASSIST_SMTP_PORT", "587")),
                       help="its port (env VISASSIST_SMTP_PORT; default 587)")
    serve.add_argument("--smtp-from", default=os.environ.get("VISASSIST_SMTP_FROM", "visassist@localhost"),
                       help="sender address of invitations (env VISASSIST_SMTP_FROM)")
    serve.add_argument("--smtp-username", default=os.environ.get("VISASSIST_SMTP_USERNAME"),
                       help="SMTP user, if the server wants one (env VISASSIST_SMTP_USERNAME; the "
                            "password only from VISASSIST_SMTP_PASSWORD)")
    serve.add_argument("--smtp-no-starttls", action="store_true",
                       help="talk to the mail server without STARTTLS (a local relay only)")
    serve.add_argument("--sms-url", default=os.environ.get("VISASSIST_SMS_URL"),
                       help="HTTP relay for SMS invitations: receives POST {\"to\", \"text\"} "
                            "(env VISASSIST_SMS_URL; bearer token from VISASSIST_SMS_TOKEN)")
    serve.add_argument("--zendesk-url", default=os.environ.get("VISASSIST_ZENDESK_URL"),
                       help="your Zendesk, e.g. https://acme.zendesk.com: when a session ends, add an "
                            "internal note with the snapshots to the ticket (env VISASSIST_ZENDESK_URL)")
    serve.add_argument("--zendesk-email", default=os.environ.get("VISASSIST_ZENDESK_EMAIL"),
                       help="the Zendesk agent the API token belongs to (env VISASSIST_ZENDESK_EMAIL)")
    serve.add_argument("--zendesk-token", default=os.environ.get("VISASSIST_ZENDESK_TOKEN"),
                       help="a Zendesk API token; prefer the environment variable "
                            "VISASSIST_ZENDESK_TOKEN, which other users cannot see in ps")
    serve.add_argument(
        "--record", action=argparse.BooleanOptionalAction,
        default=os.environ.get("VISASSIST_RECORD", "") in ("1", "true", "yes"),
        help="record sessions whose creator did not say (the API's \"record\" field) "
             "(env VISASSIST_RECORD=1; default off)")
    serve.add_argument(
        "--max-live-sessions", type=int, default=_env_int("VISASSIST_MAX_LIVE_SESSIONS"), metavar="N",
        help="live sessions this node carries before it refuses new ones with 'capacity_exhausted' "
             "(env VISASSIST_MAX_LIVE_SESSIONS; default 12 per CPU core, from scripts/bench-media)")
    serve.add_argument("--log-level", default=os.environ.get("VISASSIST_LOG_LEVEL", "INFO"),
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log verbosity (env VISASSIST_LOG_LEVEL; default INFO)")

    keys = commands.add_parser("api-key", help="manage API keys for ticket systems",
                               description="Manage API keys for ticket systems.")
    key_commands = keys.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    create = key_commands.add_parser(
        "create", help="create an API key and print it once",
        description="Create an API key. It is printed once and stored only as a hash.")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'zendesk'")
    _data_dir_arg(create)
    listing = key_commands.add_parser("list", help="list API keys (never the keys themselves)",
                                      description="List API keys by id and name, with last use.")
    _data_dir_arg(listing)
    revoke = key_commands.add_parser("revoke", help="revoke an API key at once",
                                     description="Revoke an API key: it stops working at once.")
    revoke.add_argument("id", help="the key's id, as `api-key list` shows it")
    _data_dir_arg(revoke)

    users = commands.add_parser("user", help="manage people who sign in to the console",
                                description="Manage console and admin accounts.")
    user_commands = users.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create_user = user_commands.add_parser(
        "create", help="create an account", description="Create an account; asks for the password "
                                                        "twice (or reads one line with --password-stdin).")
    create_user.add_argument("--email", required=True, help="sign-in e-mail")
    create_user.add_argument("--name", required=True, help="name shown to colleagues")
    create_user.add_argument("--role", required=True, choices=[r.value for r in UserRole],
                             help="agent (Tier 2), expert (Tier 3), supervisor or admin")
    create_user.add_argument("--password-stdin", action="store_true",
                             help="read the password from the first line of standard input")
    _data_dir_arg(create_user)
    user_list = user_commands.add_parser("list", help="list accounts", description="List accounts.")
    _data_dir_arg(user_list)
    disable = user_commands.add_parser("disable", help="disable an account and sign it out",
                                       description="Disable an account and end its sessions.")
    disable.add_argument("--email", required=True, help="the account's e-mail")
    _data_dir_arg(disable)

    hooks = commands.add_parser("webhook", help="manage webhook receivers",
                                description="Manage webhook receivers and their deliveries.")
    hook_commands = hooks.add_subparsers(dest="webhook_command", required=True, metavar="ACTION")
    add = hook_commands.add_parser("add", help="register a receiver; prints its secret once",
                                   description="Register a webhook receiver.")
    add.add_argument("--url", required=True, help="the receiver's http(s) URL")
    add.add_argument("--events", default=",".join(webhooks.ALL_TYPES),
                     help=f"comma-separated, of {', '.join(webhooks.ALL_TYPES)} (default: all)")
    _data_dir_arg(add)
    hook_list = hook_commands.add_parser("list", help="list receivers", description="List receivers.")
    _data_dir_arg(hook_list)
    remove = hook_commands.add_parser("remove", help="stop sending to a receiver",
                                      description="Remove a receiver; its pending deliveries are cancelled.")
    remove.add_argument("id", help="the receiver's id")
    _data_dir_arg(remove)
    deliveries = hook_commands.add_parser("deliveries", help="a receiver's deliveries, newest first",
                                          description="List deliveries with their attempts.")
    deliveries.add_argument("id", help="the receiver's id")
    deliveries.add_argument("--status", choices=["pending", "delivered", "failed", "cancelled"],
                            help="only deliveries in this state")
    _data_dir_arg(deliveries)
    redeliver = hook_commands.add_parser("redeliver", help="send a delivery again (same event id)",
                                         description="Queue a delivery again.")
    redeliver.add_argument("delivery_id", type=int, help="the delivery's number")
    _data_dir_arg(redeliver)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    addresses = args.ice_address if args.ice_address is not None else env_list(
        "VISASSIST_ICE_ADDRESSES")
    zendesk = (args.zendesk_url, args.zendesk_email, args.zendesk_token)
    if any(zendesk) and not all(zendesk):
        raise ValueError("the Zendesk adapter needs --zendesk-url, --zendesk-email and --zendesk-token")
    for days in (args.retention_media_days, args.retention_chat_days):
        if days is not None and days < 1:
            raise ValueError("retention is a number of days, 1 or more")
    servers = args.ice_server if args.ice_server is not None else env_list("VISASSIST_ICE_SERVERS")
    if args.max_live_sessions is not None and args.max_live_sessions < 1:
        raise ValueError("--max-live-sessions is 1 or more")
    limits = {} if args.max_live_sessions is None else {"max_live_sessions": args.max_live_sessions}
    return Settings(**limits, record_by_default=args.record,
                    host=args.host, port=args.port, data_dir=args.data_dir,
                    public_url=args.public_url, ice_addresses=tuple(addresses),
                    ice_servers=tuple(parse_ice_server(s) for s in servers),
                    log_level=args.log_level, retention_media_days=args.retention_media_days,
                    retention_chat_days=args.retention_chat_days, zendesk_url=args.zendesk_url,
                    zendesk_email=args.zendesk_email, zendesk_token=args.zendesk_token,
                    smtp_host=args.smtp_host, smtp_port=args.smtp_port, smtp_from=args.smtp_from,
                    smtp_username=args.smtp_username,
                    smtp_password=os.environ.get("VISASSIST_SMTP_PASSWORD"),
                    smtp_starttls=not args.smtp_no_starttls, sms_url=args.sms_url,
                    sms_token=os.environ.get("VISASSIST_SMS_TOKEN"))


def serve(settings: Settings) -> None:
    from visassist.app import create_app

    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aioice and aiortc are chatty at INFO; their warnings still show.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    files = raise_open_file_limit()
    guard_accept_loop()
    app = create_app(settings)
    print(f"visassist {__version__} on {settings.base_url}  (data in {settings.data_dir.resolve()})",
          flush=True)
    print(f"  API:          {settings.base_url}/api/v1/sessions", flush=True)
    print(f"  API document: {settings.base_url}/api/v1/openapi.json", flush=True)
    print(f"  Capacity:     {settings.max_live_sessions} live sessions, {files} open files", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10)


async def _in_store(data_dir: Path, work: Callable[[SqliteStore], Awaitable[T]]) -> T:
    store = SqliteStore(Settings(data_dir=data_dir).database_path)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def run(data_dir: Path, work: Callable[[SqliteStore], Awaitable[T]]) -> T:
    return asyncio.run(_in_store(data_dir, work))


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M}Z"


async def _list_keys(store: SqliteStore) -> list[str]:
    return [f"{k.id}\t{k.name}\tcreated {_when(k.created_at)}\tlast used {_when(k.last_used_at)}"
            f"{'  REVOKED' if k.revoked_at else ''}" for k in await store.list_api_keys()]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the passwords differ")
    return first


async def _disable_user(store: SqliteStore, email: str) -> None:
    user = await store.user_by_email(email)
    if user is None:
        raise ValueError(f"no user with e-mail {email}")
    await store.set_user_disabled(user.id, True, "cli")


async def _ok(found: Awaitable[bool], refusal: str) -> None:
    if not await found:
        raise ValueError(refusal)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(settings_from(args))
        elif args.command == "api-key" and args.key_command == "create":
            _, key = run(args.data_dir, lambda store: management.issue_api_key(store, args.name, "cli"))
            print(key)
            print("Store this key now: it is shown once and kept only as a hash.", file=sys.stderr)
        elif args.command == "api-key" and args.key_command == "list":
            for line in run(args.data_dir, _list_keys):
                print(line)
        elif args.command == "api-key" and args.key_command == "revoke":
            if not run(args.data_dir, lambda store: store.revoke_api_key(args.id, "cli")):
                raise ValueError(f"no active API key {args.id}")
            print(f"revoked {args.id}")
        elif args.command == "user" and args.user_command == "create":
            password = _read_password(args.password_stdin)
            print(run(args.data_dir, lambda store: management.add_user(
                store, args.email, args.name, args.role, password, "cli")))
        elif args.command == "user" and args.user_command == "list":
            for user in run(args.data_dir, lambda store: store.users()):
                print(f"{user.id}\t{user.email}\t{user.name}\t{user.role}"
                      f"{'  DISABLED' if user.disabled_at else ''}")
        elif args.command == "user" and args.user_command == "disable":
            run(args.data_dir, lambda store: _disable_user(store, args.email))
            print(f"disabled {args.email}")
        elif args.command == "webhook" and args.webhook_command == "add":
            endpoint_id, secret = run(args.data_dir, lambda store: management.add_webhook(
                store, args.url, [e.strip() for e in args.events.split(",") if e.strip()], "cli"))
            print(f"{endpoint_id}\t{secret}")
            print("Give the secret to the receiver now: it is shown once.", file=sys.stderr)
        elif args.command == "webhook" and args.webhook_command == "list":
            for hook in run(args.data_dir, lambda store: store.webhooks()):
                print(f"{hook.id}\t{hook.url}\t{','.join(hook.events)}"
                      f"{'  REMOVED' if hook.disabled_at else ''}")
        elif args.command == "webhook" and args.webhook_command == "remove":
            run(args.data_dir, lambda store: _ok(management.remove_webhook(store, args.id, "cli"),
                                                 f"no active webhook {args.id}"))
            print(f"removed {args.id}")
        elif args.command == "webhook" and args.webhook_command == "deliveries":
            for d in run(args.data_dir, lambda store: store.deliveries(args.id, args.status)):
                print(f"{d.id}\t{d.event_id}\t{d.type}\t{d.status}\t"
                      f"{len(d.attempts)} attempts\t{d.last_error or ''}")
        elif args.command == "webhook" and args.webhook_command == "redeliver":
            run(args.data_dir, lambda store: _ok(
                management.redeliver(store, args.delivery_id, "cli"),
                f"no delivery {args.delivery_id} to an active webhook"))
            print(f"delivery {args.delivery_id} queued again")
    except ValueError as exc:
        print(f"visassist: {exc}", file=sys.stderr)
        return 2
    return 0
