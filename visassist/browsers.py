"""Which browser a link was opened in, read from its User-Agent (ua-parser's maintained rules)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ua_parser import parse


@dataclass(frozen=True)
class Browser:
    name: str | None  # "Chrome Mobile 120"
    os: str | None  # "Android 14"
    mobile: bool
    robot: bool  # a link preview (messaging apps fetch the link to show a card) or a crawler


def _named(family: str | None, major: str | None) -> str | None:
    if not family or family == "Other":
        return None
    return f"{family} {major}" if major else family


@functools.lru_cache(maxsize=512)
def browser(user_agent: str) -> Browser:
    result = parse(user_agent[:512])
    agent, system, device = result.user_agent, result.os, result.device
    return Browser(name=_named(agent.family, agent.major) if agent else None,
                   os=_named(system.family, system.major) if system else None,
                   mobile="Mobile" in user_agent or "Android" in user_agent,
                   robot=device is not None and device.family == "Spider")
