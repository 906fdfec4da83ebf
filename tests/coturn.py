"""coturn (Debian's `coturn`, which scripts/test installs) started by a test: REST authentication
(use-auth-secret) with a secret of the test's own, on the address and port it is given, optionally
inside a network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.netns import Namespace

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
REALM = "visassist.test"


@dataclass(frozen=True)
class Coturn:
    address: str
    port: int
    secret: str
    log: Path

    def urls(self, *transports: str) -> list[str]:
        return [f"turn:{self.address}:{self.port}?transport={t}" for t in transports]


def command(address: str, port: int, secret: str, log: Path) -> list[str]:
    """turnserver as docs/turn.md configures it, minus TLS (no certificate here) and on one address."""
    return [TURNSERVER, "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
            f"--listening-ip={address}", f"--relay-ip={address}", f"--listening-port={port}",
            "--min-port=49152", "--max-port=49999", "--use-auth-secret", f"--static-auth-secret={secret}",
            f"--realm={REALM}", f"--log-file={log}", "--simple-log", "--no-stdout-log", "--verbose"]


async def _listening(address: str, port: int, netns: Namespace | None) -> None:
    connect = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)"
    probe = ["python3", "-c", connect, address, str(port)]
    for _ in range(100):
        if netns is None:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(address, port)
                writer.close()
                return
        else:
            checked = await asyncio.create_subprocess_exec(*netns.enter(probe), stderr=subprocess.DEVNULL)
            if await checked.wait() == 0:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"coturn did not listen on {address}:{port}")


@contextlib.asynccontextmanager
async def coturn(directory: Path, address: str, port: int,
                 netns: Namespace | None = None) -> AsyncIterator[Coturn]:
    secret = secrets.token_urlsafe(24)
    log = directory / f"turnserver-{port}.log"
    argv = command(address, port, secret, log)
    process = await asyncio.create_subprocess_exec(*(netns.enter(argv) if netns else argv),
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _listening(address, port, netns)
        yield Coturn(address, port, secret, log)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
