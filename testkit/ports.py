"""Free TCP ports on the loopback interface, for servers the tests and the bench start."""

from __future__ import annotations

import itertools
import os
import random
import socket

# Below the kernel's ephemeral range (32768-60999 by default on Linux), which the outgoing
# connections of every process draw their local ports from: a port found free there can be
# taken by a client socket before the server that was meant to listen on it binds it.
_FIRST, _LAST = 20_000, 32_000
# pytest-xdist's workers (gw0, gw1, ...) search separate slices, so two of them never both see
# one port as free and race to bind it.
_SLICES = 8


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % _SLICES if worker[2:].isdigit() else 0
    size = (_LAST - _FIRST) // _SLICES
    return range(_FIRST + index * size, _FIRST + (index + 1) * size)


# Each process walks its slice from a random place, so ports it handed out recently (whose
# servers may still be starting) come round again only after the whole slice.
_NEXT = itertools.count(random.randrange(1 << 20))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    ports = _slice()
    for _ in range(len(ports)):
        port = ports[next(_NEXT) % len(ports)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {ports.start}-{ports.stop - 1}")
