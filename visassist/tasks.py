"""Work that must finish even when the task waiting for it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# The loop keeps only weak references to tasks; these keep running ones alive until done.
_running: set[asyncio.Future[Any]] = set()


async def finish(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end. If our caller is cancelled (aiohttp cancels a handler whose client went
    away), the caller stops waiting but `work` goes on: a half-written state change or a half-done
    cleanup is worse than a late one."""
    task = asyncio.ensure_future(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return await asyncio.shield(task)


async def drain(seconds: float = 10.0) -> None:
    """Wait for unfinished work of this event loop (at shutdown, before the store closes)."""
    loop = asyncio.get_running_loop()
    mine = [t for t in _running if t.get_loop() is loop and not t.done()]
    if mine:
        await asyncio.wait(mine, timeout=seconds)
