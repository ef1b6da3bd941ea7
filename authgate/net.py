"""Client address resolution that cannot be spoofed by the client."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=64)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress._BaseNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _is_trusted(addr: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr.strip())
    except ValueError:
        return False
    return any(ip in net for net in _networks(trusted))


def client_ip(remote_addr: str | None, forwarded_for: str | None,
              trusted_proxies: Sequence[str]) -> str:
    """The peer address, or the first untrusted hop of X-Forwarded-For.

    X-Forwarded-For is read only when the socket peer is a configured trusted
    proxy; the list is walked from the right so a client cannot inject an
    address by sending its own header.
    """
    peer = (remote_addr or "").strip()
    trusted = tuple(trusted_proxies)
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
