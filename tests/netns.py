"""Networks of the test's own: Linux network namespaces (root only), each with a loopback, joined by a
virtual cable (a veth pair), where iptables can drop one side's traffic for a while without touching
the machine's network or the other side's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

TOOLS = ("unshare", "nsenter", "iptables", "ip")


def why_not() -> str | None:
    """Why network faults cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network faults need root (unshare --net, iptables)"
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        return f"network faults need {', '.join(missing)} (scripts/test installs iptables)"
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        return "this machine does not allow network namespaces (unshare --net failed)"
    return None


class Namespace:
    """A network namespace with its loopback up, held open by a sleeping process."""

    def __init__(self) -> None:
        self._holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self._holder.stdout is not None and self._holder.stdout.readline().strip() == "ready"
        self.pid = self._holder.pid
        self.path = f"/proc/{self.pid}/ns/net"

    def enter(self, command: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *command]

    def run(self, *command: str) -> None:
        subprocess.run(self.enter(command), check=True)

    async def wait_until_healthy(self, base: str, seconds: float = 10.0) -> None:
        """Poll /healthz of a server starting inside the namespace (the caller is outside it)."""
        probe = self.enter([sys.executable, "-c", "import sys, urllib.request as u; u.urlopen(sys.argv[1])",
                            f"{base}/healthz"])
        for _ in range(int(seconds / 0.1)):
            checked = await asyncio.create_subprocess_exec(*probe, stderr=subprocess.DEVNULL)
            if await checked.wait() == 0:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{base} did not become healthy in {seconds} s")

    def executable(self, directory: Path, program: str) -> Path:
        """A wrapper that runs `program` inside the namespace (for launchers that take a path)."""
        wrapper = directory / f"{Path(program).name}-in-{self.pid}"
        wrapper.write_text(f'#!/bin/sh\nexec nsenter --net={self.path} {program} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    @contextlib.contextmanager
    def dropping(self, *rule: str) -> Iterator[None]:
        """Drop packets to and from this namespace matching `rule` (iptables syntax; none = all)."""
        for chain in ("INPUT", "OUTPUT"):
            self.run("iptables", "-A", chain, *rule, "-j", "DROP")
        try:
            yield
        finally:
            for chain in ("INPUT", "OUTPUT"):
                self.run("iptables", "-D", chain, *rule, "-j", "DROP")

    def close(self) -> None:
        self._holder.kill()
        self._holder.wait()


def cable(a: Namespace, b: Namespace, address_a: str, address_b: str) -> None:
    """Join two namespaces by a veth pair on a /24, each side's default route through the other.
    (Browsers gather no ICE candidates on a machine without a default route.)"""
    name_a, name_b = f"va{a.pid}", f"vb{b.pid}"
    subprocess.run(["ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b], check=True)
    subprocess.run(["ip", "link", "set", name_a, "netns", str(a.pid)], check=True)
    subprocess.run(["ip", "link", "set", name_b, "netns", str(b.pid)], check=True)
    for side, name, mine, other in ((a, name_a, address_a, address_b), (b, name_b, address_b, address_a)):
        side.run("ip", "addr", "add", f"{mine}/24", "dev", name)
        side.run("ip", "link", "set", name, "up")
        side.run("ip", "route", "add", "default", "via", other)
