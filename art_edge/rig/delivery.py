"""Network events (MQTT, webhook) delivered in order from a thread of their own, through a
backlog that holds them while their endpoint is away: in memory (1000 events a sink), or, with
`--spool DIR`, on disk, bounded in bytes and kept across restarts.

    sinks = prepare_sinks(open_sinks(specs), config.unattended, rotation, header, stall_after)
    sinks.emit(event)     # never waits; the sink's thread sends, oldest first
    sinks.close()         # what is not delivered by then stays in the spool for the next run

An event leaves the backlog only once its endpoint took it (a 2xx answer; the broker's PUBACK
at QoS 1), so nothing is lost to an outage, a restart or a crash short of the bound: beyond it
the oldest events are dropped, counted. While the endpoint is away the sink retries with capped
back-off (0.5 s doubling to 10 s) and says so once; delivery resumes in order when it answers.
Delivery is at least once: an event whose acknowledgement was lost may come twice.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path

from art_edge.errors import format_size
from art_edge.rig.outlets import DEGRADED, FAILED, OK, Backoff, Deadline, Supervised, Trouble
from art_edge.rig.report import OutputSnapshot
from art_edge.rig.sinks import QUEUE_BOUND, JsonlSink, MqttSink, Sinks, WebhookSink

WINDOW = 32  # MQTT publishes awaiting their acknowledgement at once
SEGMENT_BYTES = 1 << 20  # a spool's file; the oldest whole file goes when the spool is full


class MemoryBacklog:
    """Events waiting in memory, `bound` at most (the oldest dropped beyond it)."""

    persistent = False

    def __init__(self, bound: int = QUEUE_BOUND):
        self.items: deque = deque()
        self.bound = bound

    def append(self, body: bytes) -> int:
        """→ how many events were dropped to make room."""
        self.items.append(body)
        if len(self.items) > self.bound:
            self.items.popleft()
            return 1
        return 0

    def peek(self, i: int) -> bytes | None:
        return self.items[i] if i < len(self.items) else None

    def pop(self):
        self.items.popleft()

    def __len__(self) -> int:
        return len(self.items)

    def close(self):
        pass


class Spool:
    """Events waiting on disk, in order: files of `SEGMENT_BYTES` (one event a line) in
    `folder`, and a cursor file (the first file's offset where the undelivered events start)
    written at most twice a second, so that a crash re-sends a moment's events rather than
    losing any. At most `max_bytes` are held: beyond it the oldest file goes (its events counted
    as dropped). What is left when the rig stops is sent by the next run."""

    persistent = True

    def __init__(self, folder, max_bytes: int, label: str = ""):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.segment_bytes = max(4096, min(SEGMENT_BYTES, max_bytes // 4))
        self.folder.mkdir(parents=True, exist_ok=True)
        if label:
            (self.folder / "sink.txt").write_text(label + "\n")
        self.files: list = []  # [number, bytes, events], oldest first
        self.offset = 0  # in the first file: where its undelivered events start
        self.consumed = 0  # events of the first file before `offset`
        self.loaded: deque = deque()  # (body, file number, offset after it), read ahead
        self.read_at: tuple | None = None  # (file number, offset) the read-ahead goes on from
        self.fd: int | None = None
        self._saved = 0.0
        self._load()

    def _path(self, number: int) -> Path:
        return self.folder / f"{number:08d}.jsonl"

    def _load(self):
        numbers = sorted(int(p.stem) for p in self.folder.glob("*.jsonl") if p.stem.isdigit())
        for number in numbers:
            data = self._path(number).read_bytes()
            self.files.append([number, len(data), data.count(b"\n")])
        cursor = self.folder / "cursor"
        if self.files and cursor.is_file():
            number, offset = (int(x) for x in cursor.read_text().split())
            self.files = [f for f in self.files if f[0] >= number]
            if self.files and self.files[0][0] == number:
                head = self._path(number).read_bytes()[:offset]
                self.offset, self.consumed = offset, head.count(b"\n")
        self.read_at = (self.files[0][0], self.offset) if self.files else None

    def __len__(self) -> int:
        return sum(f[2] for f in self.files) - self.consumed

    def append(self, body: bytes) -> int:
        """Write an event at the end; → how many events were dropped to keep within the bound.
        An OSError (the spool's disk) goes to the caller."""
        if not self.files or self.files[-1][1] >= self.segment_bytes:
            self._close_fd()
            number = self.files[-1][0] + 1 if self.files else 1
            self.files.append([number, 0, 0])
            if self.read_at is None:
                self.read_at = (number, 0)
        if self.fd is None:
            self.fd = os.open(self._path(self.files[-1][0]), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        line = body + b"\n"
        try:
            if os.write(self.fd, line) != len(line):
                raise OSError(errno.ENOSPC, "the spool's disk is full")
        except OSError:
            os.ftruncate(self.fd, self.files[-1][1])  # no half event left in the spool
            raise
        self.files[-1][1] += len(line)
        self.files[-1][2] += 1
        return self._bound()

    def _bound(self) -> int:
        dropped = 0
        while len(self.files) > 1 and sum(f[1] for f in self.files) - self.offset > self.max_bytes:
            number, _, events = self.files.pop(0)
            dropped += events - self.consumed
            self._path(number).unlink(missing_ok=True)
            self.offset = self.consumed = 0
            self.loaded = deque(item for item in self.loaded if item[1] != number)
            if self.read_at is not None and self.read_at[0] == number:
                self.read_at = (self.files[0][0], 0)
            self._save(force=True)
        return dropped

    def peek(self, i: int) -> bytes | None:
        while len(self.loaded) <= i and self._read_more():
            pass
        return self.loaded[i][0] if i < len(self.loaded) else None

    def _read_more(self) -> bool:
        """Read ahead the rest of the file at `read_at` (then the next); → whether any came."""
        if self.read_at is None:
            return False
        number, offset = self.read_at
        known = next((f for f in self.files if f[0] == number), None)
        if known is None or offset >= known[1]:
            later = [f[0] for f in self.files if f[0] > number]
            if not later:
                return False
            self.read_at = (later[0], 0)
            return self._read_more()
        with open(self._path(number), "rb") as f:
            f.seek(offset)
            data = f.read(known[1] - offset)
        for line in data.splitlines(keepends=True):
            offset += len(line)
            self.loaded.append((line.rstrip(b"\n"), number, offset))
        self.read_at = (number, offset)
        return bool(data)

    def pop(self):
        """The first event was delivered: the cursor moves past it."""
        _, number, offset = self.loaded.popleft()
        while self.files[0][0] != number:  # the files before it were delivered to their end
            self._drop_first()
        self.offset, self.consumed = offset, self.consumed + 1
        if offset >= self.files[0][1] and len(self.files) > 1:  # a whole file delivered
            self._drop_first()
        self._save()

    def _drop_first(self):
        self._path(self.files.pop(0)[0]).unlink(missing_ok=True)
        self.offset = self.consumed = 0

    def _save(self, force: bool = False):
        now = time.monotonic()
        if not (force or now - self._saved > 0.5) or not self.files:
            return
        self._saved = now
        cursor, tmp = self.folder / "cursor", self.folder / ".cursor.tmp"
        tmp.write_text(f"{self.files[0][0]} {self.offset}\n")
        os.replace(tmp, cursor)

    def _close_fd(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self):
        self._close_fd()
        if self.files and len(self) == 0:  # all delivered: start the next run empty
            for number, _, _ in self.files:
                self._path(number).unlink(missing_ok=True)
            (self.folder / "cursor").unlink(missing_ok=True)
        else:
            self._save(force=True)


class WebhookTransport:
    """A WebhookSink's POST, one try each (the Delivery does the retrying, its sink is quiet)."""

    def __init__(self, sink: WebhookSink):
        self.sink = sink
        sink.attempts, sink._warned = 1, True  # one try; the Delivery says what happens

    def submit(self, body: bytes):
        return True if self.sink._post(body) else None  # noqa: SLF001 (its own one-try POST)

    def done(self, handle) -> bool:
        return True

    def reason(self) -> str:
        return getattr(self.sink, "error", None) or "no answer, or an answer other than 2xx"

    def close(self, timeout: float):
        self.sink.close(timeout)


class MqttTransport:
    """An MqttSink's client: QoS 1 publishes while it is connected, done at their PUBACK (paho
    sends again, after a reconnect, what was not acknowledged)."""

    def __init__(self, sink: MqttSink):
        self.sink, self.client, self.topic = sink, sink.client, sink.topic
        self.started = time.monotonic()
        sink._warned = True  # the Delivery says what happens

    def submit(self, body: bytes):
        import paho.mqtt.client as mqtt

        if not self.client.is_connected():
            if time.monotonic() - self.started < 3.0:  # the first connection may take a moment
                time.sleep(0.05)
                return False
            return None
        info = self.client.publish(self.topic, body, qos=1)
        return None if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE else info

    def done(self, handle) -> bool:
        return handle.is_published()

    def reason(self) -> str:
        return getattr(self.sink, "error", None) or "not connected"

    def close(self, timeout: float):
        self.sink.close(timeout)


class Delivery:
    """A network sink's events, in order, from a thread of its own through a backlog (see the
    module docstring); the sink's name, counts and health for the summary and /healthz."""

    def __init__(self, sink, transport, backlog, stall_after: float = 10.0):
        self.sink, self.name, self.transport, self.backlog = sink, sink.name, transport, backlog
        self.window = WINDOW if isinstance(transport, MqttTransport) else 1
        self.intake: queue.Queue = queue.Queue(maxsize=QUEUE_BOUND)
        self.sent = self.failed = self.dropped = self.spooled = 0
        self.stall_after, self.last_drop = stall_after, None
        self.trouble = Trouble(f"events to {self.name}")
        self.inflight: deque = deque()
        self.away = False  # its last try failed
        self._stop, self._deadline = threading.Event(), None
        self.worker = Supervised(f"events to {self.name}", self._run, self._stop)
        self.worker.start()

    def emit(self, event: dict):
        try:
            self.intake.put_nowait(json.dumps(event).encode())
        except queue.Full:
            self._drop(1)

    def _drop(self, count: int):
        if count:
            self.dropped += count
            self.last_drop = time.monotonic()

    def _take_intake(self, wait: float):
        """Move what arrived into the backlog (waiting up to `wait` for the first)."""
        try:
            body = self.intake.get(timeout=wait) if wait > 0 else self.intake.get_nowait()
            while True:
                self._store(body)
                body = self.intake.get_nowait()
        except queue.Empty:
            pass

    def _store(self, body: bytes):
        try:
            self._drop(self.backlog.append(body))
        except OSError as e:  # the spool's own disk: the event cannot wait anywhere
            self._drop(1)
            self.trouble.failed(f"cannot spool ({e.strerror or e})", "events are dropped")

    def _run(self):
        backoff, retry_at = Backoff(), 0.0
        while True:
            self._take_intake(0.0)
            while self.inflight and self.transport.done(self.inflight[0]):
                self.inflight.popleft()
                self.backlog.pop()
                self.sent += 1
            if self._stop.is_set():  # closing: what waits goes until the deadline
                if not len(self.backlog) or not self._deadline.left():
                    return
                retry_at = min(retry_at, time.monotonic() + 0.25)
            if time.monotonic() < retry_at or len(self.inflight) >= self.window:
                self._take_intake(min(0.05, max(0.0, retry_at - time.monotonic())) or 0.02)
                continue
            body = self.backlog.peek(len(self.inflight))
            if body is None:
                if not self.away:
                    self.trouble.cleared()  # it has answered, and nothing failed since
                self._take_intake(0.0 if self._stop.is_set() else 0.2)
                continue
            handle = self.transport.submit(body)
            self.away = handle is None
            if handle is None:
                self.trouble.failed(self.transport.reason(), self._waiting_note())
                retry_at = time.monotonic() + backoff.next()
            elif handle is not False:
                self.inflight.append(handle)
                self.trouble.cleared()
                backoff.reset()

    def _waiting_note(self) -> str:
        where = "on disk" if self.backlog.persistent else "in memory"
        bound = getattr(self.backlog, "max_bytes", None)
        size = format_size(bound) if bound else f"{QUEUE_BOUND} events"
        return f"retrying; events wait {where}, in order (at most {size}), dropped beyond that"

    @property
    def error(self) -> str | None:
        """Why the endpoint is away (a refused login, a certificate, …) while it is; the summary
        and /metrics show it beside the counts."""
        return self.transport.reason() if self.away else None

    def health(self) -> tuple[str, str]:
        now = time.monotonic()
        if self.last_drop is not None and now - self.last_drop < self.stall_after:
            return FAILED, "dropping events: its backlog is full"
        if self.away or (self.trouble.since and self.trouble.recent(self.stall_after)):
            return DEGRADED, f"away ({self.trouble.reason}); {len(self.backlog)} events waiting"
        return OK, ""

    def snapshot(self) -> OutputSnapshot:
        counts = {"sent": self.sent, "dropped": self.dropped, "failed": self.failed,
                  "errors": self.trouble.errors, "pending": len(self.backlog),
                  "spooled": self.spooled}  # fmt: skip
        return OutputSnapshot(self.name, *self.health(), counts)

    def close_within(self, deadline: Deadline):
        """Send what waits until the deadline (not while the endpoint is away); what is left
        stays in the spool for the next run (`spooled`), or, in memory, counts as failed."""
        self._deadline = deadline
        self._stop.set()
        self.worker.join(deadline.left())
        self._take_intake(0.0)
        left = len(self.backlog)
        if self.backlog.persistent:
            self.spooled = left
        else:
            self.failed += left
        if not self.worker.is_alive():
            self.backlog.close()
            if not self.away:
                self.trouble.cleared(settled=True)
        self.transport.close(deadline.left(1.0))

    def close(self, timeout: float = 5.0):
        self.close_within(Deadline(timeout))


def spool_folder(root, name: str) -> Path:
    """A sink's own spool folder under `root`: named by a hash of its (masked) name, so that no
    secret of its URI ends up in a path."""
    kind = name.split(":", 1)[0] if "://" in name else "sink"
    return Path(root) / f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def prepare_sinks(sinks: Sinks, unattended, header: dict, stall_after: float = 10.0) -> Sinks:
    """The sinks of open_sinks made ready for a long run: JSONL files appended with `header`
    and rotated as `unattended` (art_edge.rig.config.UnattendedConfig) says; each network sink
    behind a Delivery, its backlog on disk under --spool or in memory."""
    prepared = []
    for sink in sinks.sinks:
        if isinstance(sink, JsonlSink):
            sink = JsonlSink(sink.name, unattended.rotation(), header, stall_after)
        elif isinstance(sink, (MqttSink, WebhookSink)):
            transport = (MqttTransport if isinstance(sink, MqttSink) else WebhookTransport)(sink)
            backlog = (
                Spool(
                    spool_folder(unattended.spool, sink.name), unattended.spool_bytes(), sink.name
                )
                if unattended.spool
                else MemoryBacklog()
            )
            sink = Delivery(sink, transport, backlog, stall_after)
        prepared.append(sink)
    sinks.sinks = prepared
    return sinks
