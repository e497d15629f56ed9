"""The real parts benchmarks/unattended.py runs a rig among, each with the fault it can be given:
an RTSP camera (GStreamer's server, by the system Python), a Mosquitto broker and a subscriber
with a persistent session, a webhook that can hang, a FIFO whose reader can stop draining, a
2 MB tmpfs for the clips that can fill up or turn read-only; and the probes that watch the rig:
/healthz, its RSS and descriptors, each published segment's clip."""

from __future__ import annotations

import collections
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2

from benchlib import free_port

ROOT = Path(__file__).resolve().parents[1]
RTSP_SERVER = ROOT / "tests" / "art_edge" / "rtsp_server.py"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
F_SETPIPE_SZ = 1031  # fcntl: a FIFO's buffer, here one page, so a stalled reader shows at once


def canonical(event: dict) -> str:
    return json.dumps(event, sort_keys=True)


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def system_rtsp_server_missing() -> bool:
    """Whether the system Python lacks GStreamer's RTSP server (python3-gi and its typelib)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return (
            subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode != 0
        )
    except OSError:
        return True


class RtspCamera:
    """rtsp://127.0.0.1:PORT/cam, GStreamer's moving ball (160×120, 30 FPS, H.264)."""

    def __init__(self):
        self.port, self.proc = free_port(), None
        self.uri = f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", str(RTSP_SERVER), str(self.port)],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Broker:
    """A real Mosquitto on free localhost ports, persistent (a subscriber's session and its queued
    messages survive a restart). `users` ({name: password}): logins required on every listener,
    no anonymous client; `certs` (an object with the PEM paths `ca`, `server`, `server_key`): a
    second listener, `tls_port`, TLS with the server's certificate, that asks each client for a
    certificate the CA signed."""

    def __init__(
        self, folder: Path, users: dict | None = None, certs=None, port: int | None = None
    ):
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.proc = port or free_port(), None
        self.tls_port = free_port() if certs else None
        self.uri = f"mqtt://127.0.0.1:{self.port}/rig/events"
        self.conf = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if certs:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {certs.ca}",
                      f"certfile {certs.server}", f"keyfile {certs.server_key}",
                      "require_certificate true"]  # fmt: skip
        lines += self._logins(folder, users) if users else ["allow_anonymous true"]
        lines += ["persistence true", f"persistence_location {folder}/"]
        if os.geteuid() == 0:  # else it drops to the mosquitto user, who cannot read our files
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _logins(folder: Path, users: dict) -> list[str]:
        passwords = folder / "mosquitto.passwd"
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password],
                           check=True, capture_output=True)  # fmt: skip
        return ["allow_anonymous false", f"password_file {passwords}"]

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not all(listening(p) for p in (self.port, self.tls_port or self.port)):
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Subscriber:
    """A QoS 1 subscriber with a persistent session: it gets what was published while it was
    away from a broker that was up."""

    def __init__(self, broker: Broker):
        import paho.mqtt.client as mqtt

        self.received, subscribed = [], threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="unattended-sub",
                                  clean_session=False)  # fmt: skip
        self.client.on_connect = lambda c, *a: c.subscribe("rig/events", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.append(json.loads(m.payload))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the subscriber did not subscribe"

    def close(self):
        self.client.loop_stop()


class Webhook:
    """An HTTP endpoint that takes each event (200), or, while it hangs, answers nothing (the
    request is held until the client gives up, and not taken)."""

    def __init__(self):
        self.bodies, self.hanging = [], threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hook.hanging.is_set():  # held: the client times out, nothing is taken
                    deadline = time.monotonic() + 10
                    while hook.hanging.is_set() and time.monotonic() < deadline:
                        time.sleep(0.1)
                    self.close_connection = True
                    return
                hook.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hang(self):
        self.hanging.set()

    def answer(self):
        self.hanging.clear()

    def close(self):
        self.hanging.clear()
        self.server.shutdown()


class FifoReader:
    """A FIFO for an events file, and its reader, which can stop draining it."""

    def __init__(self, path: Path):
        self.path, self.bytes = path, 0
        os.mkfifo(path)
        self.paused, self.closed = threading.Event(), threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        import fcntl

        fd = os.open(self.path, os.O_RDONLY)  # waits for the rig to open it
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
        except OSError:
            pass
        while not self.closed.is_set():
            if self.paused.is_set():
                time.sleep(0.05)
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                time.sleep(0.05)
            self.bytes += len(data)

    def stall(self):
        self.paused.set()

    def drain(self):
        self.paused.clear()

    def close(self):
        self.closed.set()


class ClipsDisk:
    """The clips folder: a 2 MB tmpfs where mounting is allowed (this needs root), else a plain
    folder (then the disk faults are left out, and the JSON says so)."""

    def __init__(self, path: Path, size: str = "2m"):
        self.path, self.filler = path, path.parent / "filler-mount"
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)  # fmt: skip
        self.mounted = done.returncode == 0
        self.kind = "tmpfs 2 MB" if self.mounted else f"plain folder ({done.stderr.strip()})"

    def fill(self):
        """Every byte of it taken (a clip then gets ENOSPC, or finds less than --min-free)."""
        with open(self.path / ".filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def free(self):
        (self.path / ".filler").unlink(missing_ok=True)

    def _remount(self, mode: str):
        for _ in range(50):  # a file open for writing makes a remount to ro busy a moment
            if subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)],
                              capture_output=True).returncode == 0:  # fmt: skip
                return
            time.sleep(0.1)
        raise RuntimeError(f"could not remount {self.path} {mode}")

    def read_only(self):
        self._remount("ro")

    def writable(self):
        self._remount("rw")

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


class Probe:
    """/healthz polled four times a second; what each camera and output was, when."""

    def __init__(self, port: int):
        self.port, self.reports = port, []
        self.closed = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while not self.closed.wait(0.25):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                ) as r:
                    body = r.read()
            except urllib.error.HTTPError as e:
                body = e.read()
            except OSError:
                continue
            self.reports.append((time.monotonic(), json.loads(body)))

    def last(self) -> dict:
        return self.reports[-1][1] if self.reports else {}

    def wait(self, condition, timeout: float) -> bool:
        deadline, seen = time.monotonic() + timeout, len(self.reports)
        while time.monotonic() < deadline:
            fresh = self.reports[seen:]
            seen += len(fresh)
            if any(condition(report) for _, report in fresh):
                return True
            time.sleep(0.05)
        return False

    def statuses(self, kind: str, name: str, since: float) -> set:
        return {r[kind].get(name, {}).get("status") for t, r in self.reports if t >= since} - {None}

    def close(self):
        self.closed.set()


class ClipChecker:
    """Each segment record as soon as it is published: the clip it names opened and played to
    its last frame (or the record says it was dropped)."""

    def __init__(self, segments: Path):
        self.segments, self.offset = segments, 0
        self.checked = self.dropped = self.unreadable = self.gone = 0
        self.reasons: collections.Counter = collections.Counter()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closed.wait(0.3):
            self._check_new()
        self._check_new()

    def _check_new(self):
        if not self.segments.exists():
            return
        with open(self.segments) as f:
            f.seek(self.offset)
            lines = f.readlines()
        for line in lines:
            if not line.endswith("\n"):
                break
            self.offset += len(line.encode())
            record = json.loads(line)
            if record.get("type") == "segment":
                self._check(record)

    def _check(self, record: dict):
        if record["clip"] is None:
            self.dropped += 1
            self.reasons[record["clip_dropped"].split(" (")[0]] += 1
            return
        self.checked += 1
        if not Path(record["clip"]).exists():
            self.gone += 1  # deleted by --retain before it was looked at
            return
        cap = cv2.VideoCapture(record["clip"])
        count, frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0
        while cap.read()[0]:
            frames += 1
        if not frames == count > 0:
            self.unreadable += 1

    def close(self):
        self.closed.set()
        self.thread.join(10)
