"""How much one node takes on: live sessions, and the open files they need.

A node refuses a session it cannot carry rather than degrade the ones it has: the live-session limit
comes from scripts/bench-media (see the README's performance section), and open files are checked
too, because a process that runs out of them cannot even accept a connection to say so (CPython
3.11's accept loop then logs in a tight loop). We raise the soft limit to the hard one at start, and
admit a session only while enough descriptors are left for it.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger(__name__)

# Measured with scripts/bench-media (720p30, one viewer): forwarding costs ~3% of a core per session,
# so 12 sessions a core keep every session at full frame rate with room for browsers' bursts.
SESSIONS_PER_CORE = 12
# Descriptors one live session holds at most: a socket and a few UDP sockets (ICE) per participant,
# 8 participants, and files for its recording.
FILES_PER_SESSION = 40
FILES_HELD_BACK = 64  # for the database, logs, the listening socket and HTTP requests


def default_max_live_sessions() -> int:
    return SESSIONS_PER_CORE * (os.cpu_count() or 1)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def open_files() -> int:
    """Descriptors this process holds now (0 where /proc is not there to count them)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class FileBudget:
    """Whether another session's descriptors fit under the process's open-file limit."""

    def __init__(self) -> None:
        self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def room_for_session(self) -> bool:
        return open_files() + FILES_PER_SESSION + FILES_HELD_BACK <= self.limit


_ACCEPT_PAUSE = 1.0  # seconds the listening socket rests when no descriptor is left for a connection
_FILES_FOR_ACCEPT = 16  # descriptors kept free for what serving an accepted connection opens


def guard_accept_loop() -> None:
    """Keep asyncio's accept loop from spinning when the process runs out of open files.

    CPython 3.11's selector loop, on EMFILE, schedules a retry but goes on calling accept() up to
    `backlog` times, logging and scheduling again each time: the loop spins and the log floods. We
    accept only as many connections as there are descriptors to spare, and otherwise let the
    listening socket rest (connections wait in the kernel's queue) before looking again.
    """
    from asyncio import selector_events

    loop_class = selector_events.BaseSelectorEventLoop
    original = loop_class._accept_connection  # type: ignore[attr-defined]
    if getattr(original, "_visassist_guard", False):
        return
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    warned = 0.0

    def accept(self: selector_events.BaseSelectorEventLoop, protocol_factory: object, sock: object,
               sslcontext: object = None, server: object = None, backlog: int = 100,
               *rest: object) -> None:
        nonlocal warned
        spare = limit - open_files() - _FILES_FOR_ACCEPT
        if spare > 0:
            original(self, protocol_factory, sock, sslcontext, server, min(backlog, spare), *rest)
            return
        now = self.time()
        if now - warned > 60:
            warned = now
            log.error("out of open files (%d): not accepting connections for now", limit)
        self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
        self.call_later(_ACCEPT_PAUSE, self._start_serving,  # type: ignore[attr-defined]
                        protocol_factory, sock, sslcontext, server, backlog, *rest)

    accept._visassist_guard = True  # type: ignore[attr-defined]
    loop_class._accept_connection = accept  # type: ignore[attr-defined]
