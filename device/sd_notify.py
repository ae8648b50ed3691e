"""systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) over $NOTIFY_SOCKET.

A datagram to a Unix socket, '@' meaning the abstract namespace; a no-op when systemd did not set the
variable (running by hand, in tests without a socket). Twenty lines, so no dependency for it.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(1.0)  # a listener that stopped reading must not stall the daemon (a full queue blocks)
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for (WatchdogSec=), or None when there is none for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6
