"""art-edge as a systemd service: the unit shipped with the package (`art-edge
--print-systemd-unit`), and systemd's notify protocol (Type=notify) spoken over the datagram
socket systemd names in NOTIFY_SOCKET.

    READY=1      once the rig runs (its cameras opened or opening, its outputs started)
    STATUS=…     every few seconds: the rig's health and each camera's FPS
    WATCHDOG=1   every WATCHDOG_USEC / 2, but only while recognition keeps up: the rig's loop goes
                 round and every camera that delivers frames gets decisions (a rig whose cameras
                 are all away still pings: restarting it would not bring them back)
    STOPPING=1   when the rig stops

Without NOTIFY_SOCKET (not run by systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

from art_edge.rig.health import recognition_keeps_up, status_line
from art_edge.rig.observers import RigObserver
from art_edge.rig.outlets import Supervised

UNIT = Path(__file__).with_name("art-edge.service")
STATUS_INTERVAL = 5.0  # seconds between STATUS= lines without a watchdog


def unit_text(config_path: str, stop_timeout: float, watchdog_s: int = 30) -> str:
    """The unit for a rig configured by `config_path` (art-edge --config), run by this Python."""
    exec_start = f"{sys.executable} -m art_edge.cli --config {Path(config_path).resolve()}"
    stop_s = int(stop_timeout + 20)  # the stop timeout, and the decision in flight, and margin
    return UNIT.read_text().format(exec_start=exec_start, watchdog_s=watchdog_s, stop_s=stop_s)


class Notifier:
    """sd_notify(3): datagrams to the socket in NOTIFY_SOCKET (a path, or "@name": an abstract
    socket). A send that fails is counted, never raised: the rig runs on without its manager."""

    def __init__(self, address: str):
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.failed = 0

    def send(self, *fields: str):
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            self.failed += 1

    def close(self):
        self.sock.close()


def watchdog_interval(env=os.environ) -> float | None:
    """Half of WATCHDOG_USEC in seconds (when systemd asked this process for pings)."""
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class ServiceNotifier(RigObserver):
    """An output of the rig that tells systemd how it is, from its snapshots (see the module
    docstring)."""

    def __init__(self, snapshot, address: str, stale_after: float, env=os.environ):
        self.snapshot, self.stale_after = snapshot, stale_after
        self.notifier = Notifier(address)
        self.watchdog = watchdog_interval(env)
        self.interval = min(self.watchdog or STATUS_INTERVAL, STATUS_INTERVAL)
        self.ready = False
        self.pings = 0
        self._stop = threading.Event()
        self.worker = Supervised("the systemd notifier", self._run, self._stop)

    def start(self):
        self.worker.start()

    def _run(self):
        while True:
            snap = self.snapshot()
            fields = []
            if not self.ready and snap.running:
                self.ready = True
                fields.append("READY=1")
            if self.ready:
                fields.append(f"STATUS={status_line(snap, self.stale_after)}")
                if self.watchdog and recognition_keeps_up(snap, self.stale_after):
                    fields.append("WATCHDOG=1")
                    self.pings += 1
            if fields:
                self.notifier.send(*fields)
            if self._stop.wait(self.interval if self.ready else 0.2):
                return

    def close(self):
        self._stop.set()
        self.worker.join(2.0)
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        self.notifier.close()
