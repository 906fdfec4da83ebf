"""The `visassist` command: run the server, manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from visassist import __version__
from visassist.config import Settings, env_list, parse_ice_server
from visassist.store import SqliteStore
from visassist.tokens import digest, new_api_key, new_id


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
    serve.add_argument("--zendesk-url", default=os.environ.get("VISASSIST_ZENDESK_URL"),
                       help="your Zendesk, e.g. https://acme.zendesk.com: when a session ends, add an "
                            "internal note with the snapshots to the ticket (env VISASSIST_ZENDESK_URL)")
    serve.add_argument("--zendesk-email", default=os.environ.get("VISASSIST_ZENDESK_EMAIL"),
                       help="the Zendesk agent the API token belongs to (env VISASSIST_ZENDESK_EMAIL)")
    serve.add_argument("--zendesk-token", default=os.environ.get("VISASSIST_ZENDESK_TOKEN"),
                       help="a Zendesk API token; prefer the environment variable "
                            "VISASSIST_ZENDESK_TOKEN, which other users cannot see in ps")
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
                                      description="List API keys by id and name.")
    _data_dir_arg(listing)
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
    return Settings(host=args.host, port=args.port, data_dir=args.data_dir,
                    public_url=args.public_url, ice_addresses=tuple(addresses),
                    ice_servers=tuple(parse_ice_server(s) for s in servers),
                    log_level=args.log_level, retention_media_days=args.retention_media_days,
                    retention_chat_days=args.retention_chat_days, zendesk_url=args.zendesk_url,
                    zendesk_email=args.zendesk_email, zendesk_token=args.zendesk_token)


def serve(settings: Settings) -> None:
    from visassist.app import create_app

    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aioice and aiortc are chatty at INFO; their warnings still show.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    app = create_app(settings)
    print(f"visassist {__version__} on {settings.base_url}  (data in {settings.data_dir.resolve()})",
          flush=True)
    print(f"  API:          {settings.base_url}/api/v1/sessions", flush=True)
    print(f"  API document: {settings.base_url}/api/v1/openapi.json", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10)


async def _create_key(data_dir: Path, name: str) -> str:
    store = SqliteStore(Settings(data_dir=data_dir).database_path)
    await store.open()
    try:
        key = new_api_key()
        await store.create_api_key(new_id("key"), name, digest(key))
        return key
    finally:
        await store.close()


async def _list_keys(data_dir: Path) -> list[str]:
    store = SqliteStore(Settings(data_dir=data_dir).database_path)
    await store.open()
    try:
        return [
            f"{k.id}\t{k.name}\tcreated {k.created_at:%Y-%m-%d %H:%M}Z\t"
            f"last used {'never' if k.last_used_at is None else f'{k.last_used_at:%Y-%m-%d %H:%M}Z'}"
            f"{'  REVOKED' if k.revoked_at else ''}"
            for k in await store.list_api_keys()
        ]
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            serve(settings_from(args))
        elif args.command == "api-key" and args.key_command == "create":
            key = asyncio.run(_create_key(args.data_dir, args.name))
            print(key)
            print("Store this key now: it is shown once and kept only as a hash.", file=sys.stderr)
        elif args.command == "api-key" and args.key_command == "list":
            for line in asyncio.run(_list_keys(args.data_dir)):
                print(line)
    except ValueError as exc:
        print(f"visassist: {exc}", file=sys.stderr)
        return 2
    return 0
