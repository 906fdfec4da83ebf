"""ICE settings for the server's own peers.

aioice gathers host candidates from every interface except loopback and offers no option to choose.
A server behind NAT, in a container or on a loopback-only test machine must pick the addresses it
advertises, so we replace aioice's address lookup (the one knob it has, a module-level function).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from visassist.config import IceServer

_default_lookup: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on `addresses` (all of them IP literals); empty restores the default."""
    parsed = [ipaddress.ip_address(a) for a in addresses]
    if not parsed:
        aioice.ice.get_host_addresses = _default_lookup  # type: ignore[assignment]
        return

    def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [str(a) for a in parsed if (a.version == 4 and use_ipv4) or (a.version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = lookup


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    # An explicit empty list: with None, aiortc falls back to a public STUN server.
    return RTCConfiguration(iceServers=[
        RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in servers
    ])
