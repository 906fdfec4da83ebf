"""A network of the test's own: a Linux network namespace with only a loopback, where iptables can drop
traffic for a while without touching the machine's network (root only; `unshare --net`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

WHY_NOT = (
    "network faults need root, unshare, nsenter and iptables (scripts/test installs iptables)"
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "nsenter", "iptables"))
    else None
)


class Namespace:
    """Its own loopback, held open by a sleeping process; `enter` runs a command inside it."""

    def __init__(self) -> None:
        # A default route over the loopback: browsers gather no ICE candidates on a machine without one.
        self._holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && ip route add default dev lo src 127.0.0.1"
             " && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self._holder.stdout is not None and self._holder.stdout.readline().strip() == "ready"
        self.path = f"/proc/{self._holder.pid}/ns/net"

    def enter(self, command: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *command]

    def run(self, *command: str) -> None:
        subprocess.run(self.enter(command), check=True)

    def executable(self, directory: Path, program: str) -> Path:
        """A wrapper that runs `program` inside the namespace (for launchers that take a path)."""
        wrapper = directory / f"{Path(program).name}-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec nsenter --net={self.path} {program} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    @contextlib.contextmanager
    def dropping(self, *rule: str) -> Iterator[None]:
        """Drop incoming packets matching `rule` (iptables syntax; none = everything) while inside."""
        self.run("iptables", "-A", "INPUT", *rule, "-j", "DROP")
        try:
            yield
        finally:
            self.run("iptables", "-D", "INPUT", *rule, "-j", "DROP")

    def close(self) -> None:
        self._holder.kill()
        self._holder.wait()
