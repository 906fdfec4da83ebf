"""The `visassist` command: run the server, manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import MISSING
from datetime import datetime
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin

import psycopg
import sqlalchemy.exc
from aiohttp import web

from visassist import __version__, logs, management, webhooks
from visassist.accounts import UserRole
from visassist.capacity import guard_accept_loop, raise_open_file_limit
from visassist.config import PARSERS, Declared, Settings, declared, env_list
from visassist.models import NodeState, utcnow
from visassist.store import SqlStore, migrate
from visassist.store.sql import Database

T = TypeVar("T")

TRUE = ("1", "true", "yes")  # what a boolean variable such as VISASSIST_RECORD=1 may say


def _given(kind: Any) -> Any:
    """The type a setting has when it is given: `int | None` is int."""
    if isinstance(kind, UnionType):
        (kind,) = (k for k in get_args(kind) if k is not type(None))
    return kind


def _parse(kind: Any, text: str) -> Any:
    return PARSERS.get(kind, kind)(text)


def _help(setting: Declared) -> str:
    env = f"env {setting.env_words}; " if setting.env_words else ""
    return f"{setting.option.doc} ({env}default {setting.default_words})".replace("`", "").replace("%", "%%")


def add_setting(parser: argparse.ArgumentParser, setting: Declared) -> argparse.Action:
    """A setting's option; its environment variable, if set, is the default."""
    flag, env = setting.option.flag, setting.option.env
    assert flag is not None, f"Settings.{setting.name} has no flag"
    value = (os.environ.get(env) or None) if env else None  # an empty variable is an unset one
    if setting.type is bool:
        if setting.default:  # on unless the flag turns it off (no variable: it would read backwards)
            assert env is None, f"Settings.{setting.name}: a flag that turns it off takes no variable"
            return parser.add_argument(flag, dest=setting.name, action="store_false", help=_help(setting))
        return parser.add_argument(flag, dest=setting.name, action=argparse.BooleanOptionalAction,
                                   default=setting.default if value is None else value in TRUE,
                                   help=_help(setting))
    if get_origin(setting.type) is tuple:
        # Kept as text and parsed in settings_from, like the variable's items, so a bad one is
        # refused in the same words wherever it came from.
        return parser.add_argument(flag, dest=setting.name, action="append", metavar=setting.option.metavar,
                                   help=_help(setting))
    choices = setting.choices or None
    default = value if value is not None else None if setting.default is MISSING else setting.default
    # argparse converts a string default (the variable's) with `type` like a given value.
    return parser.add_argument(flag, dest=setting.name, type=str if choices else _given(setting.type),
                               choices=choices, default=default, metavar=setting.option.metavar,
                               help=_help(setting))


def add_settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every setting with a flag, as `visassist serve` takes them."""
    return {s.name: add_setting(parser, s) for s in declared() if s.option.flag is not None}


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    """Where the store is, for the commands that work on it."""
    for setting in declared():
        if setting.name in ("data_dir", "database_url"):
            add_setting(parser, setting)


def _env_only() -> str:
    settings = [s for s in declared() if s.option.flag is None and s.option.env is not None]
    return "Only from the environment, kept out of the command line other users can see: " + "; ".join(
        f"{s.option.env}, {s.option.doc}" for s in settings) + "."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visassist",
        description="Self-hosted remote visual-assist server for Tier 2/3 customer support.")
    parser.add_argument("--version", action="version", version=f"visassist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server",
                                description="Run the HTTP, WebSocket and WebRTC server.",
                                epilog=_env_only())
    add_settings(serve)

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

    db = commands.add_parser("db", help="migrate or copy the database",
                             description="Migrate the database, or copy one to another.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="migrate the database to this version's schema",
        description="Migrate the database to this version's schema (serve does it too, at start).")
    _data_dir_arg(upgrade)
    copy = db_commands.add_parser(
        "copy", help="copy every record into a new, empty database",
        description="Copy every record (sessions, timelines, snapshots' records, webhooks, accounts) "
                    "into an empty database, e.g. from SQLite to PostgreSQL. Stop the server first; "
                    "the stored images stay where they are (the data directory or its blobs).")
    copy.add_argument("--from", dest="source", required=True, metavar="URL",
                      help="the database to copy, e.g. sqlite:///data/visassist.sqlite3")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="the empty database to fill, e.g. postgresql://visassist@db/visassist")

    node = commands.add_parser("node", help="the nodes sharing the database",
                               description="List the nodes sharing the database, or drain one.")
    node_commands = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    node_list = node_commands.add_parser("list", help="nodes with their state, load and last heartbeat",
                                         description="List the nodes.")
    _data_dir_arg(node_list)
    drain = node_commands.add_parser(
        "drain", help="take no new sessions on a node; its live ones go on to their end",
        description="Drain a node before stopping it: new sessions go to the other nodes, and the node "
                    "finishes the sessions it has. `node list` shows when it carries none; restarting "
                    "the node makes it active again.")
    drain.add_argument("id", help="the node's id (see `node list`)")
    _data_dir_arg(drain)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    values: dict[str, Any] = {}
    for setting in declared():
        flag, env = setting.option.flag, setting.option.env
        if setting.fixed:
            continue
        if flag is not None:
            value = getattr(args, setting.name)
        else:  # from the environment only
            text = os.environ.get(env or "")
            value = _parse(_given(setting.type), text) if text else None
        if get_origin(setting.type) is tuple:
            items = value if value is not None else env_list(env) if env else []
            value = tuple(_parse(get_args(setting.type)[0], item) for item in items)
        if value is not None:  # not given: the setting's own default
            values[setting.name] = value
    zendesk = [values.get(name) for name in ("zendesk_url", "zendesk_email", "zendesk_token")]
    if any(zendesk) and not all(zendesk):
        raise ValueError("the Zendesk adapter needs --zendesk-url, --zendesk-email and --zendesk-token")
    for days in (values.get("retention_media_days"), values.get("retention_chat_days")):
        if days is not None and days < 1:
            raise ValueError("retention is a number of days, 1 or more")
    if bool(values.get("turn_secret")) != bool(values.get("turn_urls")):
        raise ValueError("TURN needs both --turn-secret and at least one --turn-url")
    for url in values.get("turn_urls", ()):
        if not url.startswith(("turn:", "turns:")):
            raise ValueError(f"not a TURN URL: {url!r} (want turn:host:port or turns:host:443)")
    if values.get("turn_ttl_seconds", 60) < 60:
        raise ValueError("--turn-ttl is 60 seconds or more")
    if values.get("max_live_sessions", 1) < 1:
        raise ValueError("--max-live-sessions is 1 or more")
    return Settings(**values)


def serve(settings: Settings) -> None:
    from visassist.app import create_app

    logs.configure(settings.log_level, settings.log_format)
    files = raise_open_file_limit()
    guard_accept_loop()
    app = create_app(settings)
    print(f"visassist {__version__} on {settings.base_url}  (data in {settings.data_dir.resolve()})",
          flush=True)
    print(f"  API:          {settings.base_url}/api/v1/sessions", flush=True)
    print(f"  API document: {settings.base_url}/api/v1/openapi.json", flush=True)
    print(f"  Capacity:     {settings.max_live_sessions} live sessions, {files} open files", flush=True)
    web.run_app(app, host=settings.host, port=settings.port, print=None, shutdown_timeout=10)


async def _in_store(args: argparse.Namespace, work: Callable[[SqlStore], Awaitable[T]]) -> T:
    store = SqlStore(Settings(data_dir=args.data_dir, database_url=args.database_url).database)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def run(args: argparse.Namespace, work: Callable[[SqlStore], Awaitable[T]]) -> T:
    return asyncio.run(_in_store(args, work))


async def _upgrade(url: str) -> tuple[str | None, str]:
    database = Database(url)
    await database.open(migrate=False)
    try:
        return await migrate.upgrade(database)
    finally:
        await database.close()


async def _copy(source_url: str, target_url: str) -> dict[str, int]:
    source, target = Database(source_url), Database(target_url)
    await source.open(migrate=False)
    try:
        await target.open()  # the target is migrated to this version's schema first
        try:
            return await migrate.copy(source, target)
        finally:
            await target.close()
    finally:
        await source.close()


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


async def _list_keys(store: SqlStore) -> list[str]:
    return [f"{k.id}\t{k.name}\tcreated {_when(k.created_at)}\tlast used {_when(k.last_used_at)}"
            f"{'  REVOKED' if k.revoked_at else ''}" for k in await store.list_api_keys()]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the passwords differ")
    return first


async def _disable_user(store: SqlStore, email: str) -> None:
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
            _, key = run(args, lambda store: management.issue_api_key(store, args.name, "cli"))
            print(key)
            print("Store this key now: it is shown once and kept only as a hash.", file=sys.stderr)
        elif args.command == "api-key" and args.key_command == "list":
            for line in run(args, _list_keys):
                print(line)
        elif args.command == "api-key" and args.key_command == "revoke":
            if not run(args, lambda store: store.revoke_api_key(args.id, "cli")):
                raise ValueError(f"no active API key {args.id}")
            print(f"revoked {args.id}")
        elif args.command == "user" and args.user_command == "create":
            password = _read_password(args.password_stdin)
            print(run(args, lambda store: management.add_user(
                store, args.email, args.name, args.role, password, "cli")))
        elif args.command == "user" and args.user_command == "list":
            for user in run(args, lambda store: store.users()):
                print(f"{user.id}\t{user.email}\t{user.name}\t{user.role}"
                      f"{'  DISABLED' if user.disabled_at else ''}")
        elif args.command == "user" and args.user_command == "disable":
            run(args, lambda store: _disable_user(store, args.email))
            print(f"disabled {args.email}")
        elif args.command == "webhook" and args.webhook_command == "add":
            endpoint_id, secret = run(args, lambda store: management.add_webhook(
                store, args.url, [e.strip() for e in args.events.split(",") if e.strip()], "cli"))
            print(f"{endpoint_id}\t{secret}")
            print("Give the secret to the receiver now: it is shown once.", file=sys.stderr)
        elif args.command == "webhook" and args.webhook_command == "list":
            for hook in run(args, lambda store: store.webhooks()):
                print(f"{hook.id}\t{hook.url}\t{','.join(hook.events)}"
                      f"{'  REMOVED' if hook.disabled_at else ''}")
        elif args.command == "webhook" and args.webhook_command == "remove":
            run(args, lambda store: _ok(management.remove_webhook(store, args.id, "cli"),
                                                 f"no active webhook {args.id}"))
            print(f"removed {args.id}")
        elif args.command == "webhook" and args.webhook_command == "deliveries":
            for d in run(args, lambda store: store.deliveries(args.id, args.status)):
                print(f"{d.id}\t{d.event_id}\t{d.type}\t{d.status}\t"
                      f"{len(d.attempts)} attempts\t{d.last_error or ''}")
        elif args.command == "webhook" and args.webhook_command == "redeliver":
            run(args, lambda store: _ok(
                management.redeliver(store, args.delivery_id, "cli"),
                f"no delivery {args.delivery_id} to an active webhook"))
            print(f"delivery {args.delivery_id} queued again")
        elif args.command == "db" and args.db_command == "upgrade":
            before, now = asyncio.run(_upgrade(Settings(data_dir=args.data_dir,
                                                        database_url=args.database_url).database))
            print(f"schema {before or 'empty'} -> {now}" if before != now else f"schema {now}: up to date")
        elif args.command == "node" and args.node_command == "list":
            for n in run(args, lambda store: store.nodes(utcnow())):
                print(f"{n.id}\t{n.url}\t{n.state}\t{n.load}/{n.capacity} live\t{n.sessions} open"
                      f"\tbeat {_when(n.heartbeat_at)}")
        elif args.command == "node" and args.node_command == "drain":
            run(args, lambda store: _ok(store.set_node_state(args.id, NodeState.DRAINING),
                                        f"no node {args.id}"))
            print(f"draining {args.id}: it takes no new sessions")
        elif args.command == "db" and args.db_command == "copy":
            for table, rows in asyncio.run(_copy(args.source, args.target)).items():
                print(f"{table}\t{rows}")
    except ValueError as exc:
        print(f"visassist: {exc}", file=sys.stderr)
        return 2
    except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as exc:  # unreachable, or refuses us
        print(f"visassist: cannot use the database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 2
    return 0
