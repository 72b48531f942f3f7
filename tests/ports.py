"""Free ports for the servers and proxies that tests start as processes."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for bind(0) and outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORTS_FROM = 10_000  # free_port() picks below the ephemeral range, from here up


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a proxy or server that binds it later.

    It is picked below the kernel's ephemeral range: a port from bind(0) is also a candidate
    for every outgoing connection made until the proxy binds it (a race that once cost a CI
    run "Address already in use"), while one below that range is taken only by a listener.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(PORTS_FROM, max(low, PORTS_FROM + 1000))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range in 200 tries")
