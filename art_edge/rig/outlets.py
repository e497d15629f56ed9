"""The rig's outputs that write, each on a thread of its own behind a bounded queue, so that a
slow, stuck or failing output never holds up capture, encoding or decisions.

    log = JsonlFile("events.jsonl", Rotation(max_bytes=100e6, keep=5), header=run_header())
    log.start()
    log.put(event)              # never waits: a full queue drops the item (counted)
    log.health()                # (ok | degraded | failed, why)
    log.close(Deadline(5))      # writes what it holds until the deadline, the rest is counted lost

A write that fails (a full disk, a read-only or vanished folder, too many open files) pauses the
output with one warning naming the path and the error, is counted, and is retried on a schedule
(0.5 s doubling to 10 s); the output says once when it writes again. A write that never returns
(a FIFO nobody drains, a hung network mount) fills the queue, then the queue drops; health says
the output is stuck. Every thread here is Supervised: an unexpected exception is reported once,
counted, and the thread goes on after a pause; none dies silently.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import stat
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from art_edge.errors import warn
from art_edge.rig.report import OutputSnapshot

OK, DEGRADED, FAILED = "ok", "degraded", "failed"
RETRY_FIRST, RETRY_MAX = 0.5, 10.0  # seconds: the retry schedule of a paused output


class Deadline:
    """A point in time that several closes share: each gets what is left of it."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def left(self, at_most: float | None = None) -> float:
        left = max(0.0, self.at - time.monotonic())
        return left if at_most is None else min(left, at_most)


class Backoff:
    """Delays that double from `first` up to `cap`; reset when the trouble is over."""

    def __init__(self, first: float = RETRY_FIRST, cap: float = RETRY_MAX):
        self.first, self.cap, self.delay = first, cap, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self):
        self.delay = self.first


class Trouble:
    """One output's outages: a warning when one starts (not at every failed retry), a line when
    it is over — once it has worked for SETTLE seconds with no failure, so that a cause that
    comes and goes (a disk with a few bytes free) is one outage, not many; each failure counted."""

    SETTLE = 10.0

    def __init__(self, name: str):
        self.name = name
        self.errors = 0  # failed writes or sends, every retry counted
        self.outages = 0
        self.since: float | None = None  # when the current outage started (time.monotonic())
        self.reason: str | None = None
        self.ok_since: float | None = None  # working again since (not yet said)
        self.last_failure: float | None = None

    def recent(self, seconds: float) -> bool:
        """Whether it failed in the last `seconds`."""
        return self.last_failure is not None and time.monotonic() - self.last_failure < seconds

    def failed(self, reason: str, what_now: str):
        self.errors += 1
        self.reason, self.ok_since, self.last_failure = reason, None, time.monotonic()
        if self.since is None:
            self.since, self.outages = time.monotonic(), self.outages + 1
            warn(f"{self.name}: {reason}; {what_now}")

    def cleared(self, settled: bool = False):
        """It worked; the outage is over (and said so) once it has worked for SETTLE seconds,
        or at once when `settled`."""
        if self.since is None:
            return
        now = time.monotonic()
        self.ok_since = self.ok_since or now
        if settled or now - self.ok_since >= self.SETTLE:
            warn(f"{self.name}: working again after {self.ok_since - self.since:.0f} s")
            self.since = self.reason = self.ok_since = None


class Supervised:
    """A thread that never dies silently: `body()` runs until it returns; an exception in it is
    reported (with its traceback the first time), counted, and `body` runs again after a pause
    (0.5 s doubling to 10 s) unless `stop` is set."""

    def __init__(self, name: str, body, stop: threading.Event):
        self.name, self.body, self.stop = name, body, stop
        self.crashes, self.error = 0, None
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self):
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float):
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _main(self):
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                self.body()
                return
            except Exception as e:  # noqa: BLE001 (reported and counted; the thread goes on)
                self.crashes += 1
                error = f"{type(e).__name__}: {e}"
                if error != self.error:  # the same failure again is counted, not repeated
                    where = f"\n{traceback.format_exc().rstrip()}" if self.crashes == 1 else ""
                    warn(f"{self.name} failed ({error}); restarting it{where}")
                self.error = error
            if self.stop.wait(backoff.next()):
                return


class Outlet:
    """An output's own thread behind a bounded queue (see the module docstring). A subclass
    writes one item in `write(item)`, raising OSError when it cannot (the item is then retried
    after a pause, or given up by `give_up`); `describe(error)` words a failure for the one
    warning."""

    retry_note = "paused, retrying"

    def __init__(self, name: str, bound: int, stall_after: float = 10.0):
        self.name, self.stall_after = name, stall_after
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, bound))
        self.written = self.dropped = self.lost = 0  # lost: still held when the run ended
        self.trouble, self.backoff = Trouble(name), Backoff()
        self.paused = False  # its last write or probe failed: retried on the back-off schedule
        self.busy_since: float | None = None  # when the write in progress started
        self.last_drop: float | None = None
        self._stop, self._deadline = threading.Event(), Deadline(0)
        self.worker = Supervised(f"art-edge:{name}", self._run, self._stop)

    def start(self):
        self.worker.start()
        return self

    def put(self, item, wait: float = 0.0) -> bool:
        """Queue `item`, waiting `wait` seconds at most for room (0: not at all); → False when
        the queue stayed full (the item is dropped, counted, and `dropped_item(item)` told)."""
        try:
            self.queue.put(item, timeout=wait) if wait > 0 else self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            self.last_drop = time.monotonic()
            self.dropped_item(item, "its queue was full (the output fell behind or is stuck)")
            return False

    def dropped_item(self, item, why: str):
        """An item that will never be written (a subclass may say so where it matters)."""

    def _run(self):
        self.on_start()
        backoff, held, probe_at = self.backoff, None, 0.0
        while True:
            if held is None:
                try:
                    held = self.queue.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    if self.paused and time.monotonic() >= probe_at:
                        probe_at = time.monotonic() + backoff.next()
                        self._probe()
                    elif not self.paused:
                        self.trouble.cleared()
                    self.idle()
                    continue
            if self._attempt(held):
                held = None
                continue
            if self._stop.is_set():  # closing: retried until the deadline, then given up
                if self._deadline.left() > 0:
                    time.sleep(min(0.25, self._deadline.left()))
                    continue
                self.lost += 1
                self.dropped_item(held, "the run ended while the output was paused")
                held = None
                continue
            held = self.give_up(held)
            if held is None:  # nothing to retry: the next item, or a probe, tries again
                probe_at = time.monotonic() + backoff.next()
            else:
                self._stop.wait(backoff.next())

    def _probe(self):
        """Paused with nothing to retry: whether the cause is gone (`probe()`)."""
        try:
            self.probe()
        except OSError as e:
            self.paused = True
            self.trouble.failed(self.describe(e), self.retry_note)
            return
        self.paused = False
        self.trouble.cleared()
        self.backoff.reset()

    def on_start(self):
        """On the output's thread, before its first item (again after a restart)."""

    def idle(self):
        """On the output's thread, whenever its queue is empty (a few times a second)."""

    def probe(self):
        """Raise OSError while the output still cannot write (default: it can)."""

    def _attempt(self, item) -> bool:
        self.busy_since = time.monotonic()
        try:
            self.write(item)
        except OSError as e:
            self.paused = True
            self.trouble.failed(self.describe(e), self.retry_note)
            return False
        finally:
            self.busy_since = None
        self.written += 1
        self.paused = False
        self.trouble.cleared()
        self.backoff.reset()
        return True

    def write(self, item):
        raise NotImplementedError

    def give_up(self, item):
        """After a failed write: → the item to retry (the default), or None to drop it."""
        return item

    def describe(self, error: OSError) -> str:
        """The error, naming the path it happened on when that is not the output's own."""
        where = f" {error.filename}" if error.filename and str(error.filename) != self.name else ""
        return f"cannot write{where} ({error.strerror or error})"

    def health(self) -> tuple[str, str]:
        """(ok | degraded | failed, why): failed while a write has been stuck for
        `stall_after` seconds; degraded while paused by errors or dropping."""
        now, busy = time.monotonic(), self.busy_since
        if busy is not None and now - busy > self.stall_after:
            return FAILED, f"a write has not returned for {now - busy:.0f} s"
        if self.paused or (self.trouble.since and self.trouble.recent(self.stall_after)):
            return DEGRADED, f"paused: {self.trouble.reason}"
        if self.last_drop is not None and now - self.last_drop < self.stall_after:
            return DEGRADED, "dropping: its queue is full"
        return OK, ""

    def snapshot(self) -> OutputSnapshot:
        return OutputSnapshot(self.name, *self.health(), self.counts())

    def counts(self) -> dict:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "lost": self.lost,
            "errors": self.trouble.errors,
            "pending": self.queue.qsize(),
        }

    def close(self, deadline: Deadline) -> bool:
        """Write what is queued until the deadline; → False when the thread is still stuck
        then (what it holds is counted lost; the thread is left, a daemon, to the process's
        end)."""
        self._deadline = deadline
        self._stop.set()
        self.worker.join(deadline.left())
        if not self.worker.is_alive():
            if not self.paused:
                self.trouble.cleared(settled=True)
            return True
        left = self.queue.qsize() + (1 if self.busy_since is not None else 0)
        self.lost += left
        while True:
            try:
                self.dropped_item(self.queue.get_nowait(), "the run ended before it was written")
            except queue.Empty:
                break
        return False


@dataclass(frozen=True)
class Rotation:
    """When a JSONL file starts anew: at `max_bytes` (0: no size limit) and/or when the day
    changes; `keep` old files (NAME.1 the newest) are kept, older ones deleted."""

    max_bytes: int = 0
    daily: bool = False
    keep: int = 5

    def due(self, size: int, adding: int, day: str) -> bool:
        if size == 0:
            return False
        too_big = self.max_bytes > 0 and size + adding > self.max_bytes
        return too_big or (self.daily and day != today())


def today() -> str:
    return time.strftime("%Y-%m-%d")


def run_header(**facts) -> dict:
    """The line each JSONL output starts a run (and each new file after a rotation) with."""
    now = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
    return {"type": "run", "ts": round(now, 3), "started": started, "pid": os.getpid(),
            "host": socket.gethostname(), **facts}  # fmt: skip


class JsonlFile(Outlet):
    """One JSON object a line, appended (never truncated: a restart keeps the history), a
    `header` line first in each run and in each new file, rotated by `rotation`. Written
    through the file descriptor itself (no buffer: a line is on disk, or not, when `write`
    returns); a line a failure cut short is cut off the file, so that every line parses."""

    def __init__(self, path, rotation: Rotation = Rotation(), header: dict | None = None,
                 bound: int = 1000, stall_after: float = 10.0):  # fmt: skip
        super().__init__(str(path), bound, stall_after)
        self.path, self.rotation, self.header = Path(path), rotation, header
        self.fd: int | None = None
        self.regular = False  # a regular file (sized, rotated); else a FIFO or a device
        self.size, self.day = 0, today()
        self.header_due = header is not None
        self.size_before: int | None = None  # the file's size when the run first opened it
        self.existed: bool | None = None

    def write(self, item):
        line = (item if isinstance(item, str) else json.dumps(item)) + "\n"
        data = line.encode()
        if self.fd is None:
            self._open()
        if self.regular and self.rotation.due(self.size, len(data), self.day):
            self._rotate()
        if self.header_due:
            self._append((json.dumps(self.header) + "\n").encode())
            self.header_due = False
        self._append(data)

    def _open(self):
        """Open for appending; the part of a line a crash left at the end is cut off. Opening a
        FIFO waits for its reader: on this thread, never the rig's."""
        if self.existed is None:
            self.existed = self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # a FIFO or a device opens for writing only (read too, a FIFO would be its reader)
            special = not stat.S_ISREG(os.stat(self.path).st_mode)
        except FileNotFoundError:
            special = False
        mode = os.O_WRONLY if special else os.O_RDWR | os.O_CREAT  # read: the last line's check
        fd = os.open(self.path, mode | os.O_APPEND, 0o644)
        info = os.fstat(fd)
        self.fd, self.regular = fd, stat.S_ISREG(info.st_mode)
        if self.regular:
            self.size = trim_partial_line(fd, info.st_size)
            if self.size_before is None:
                self.size_before = self.size
            if self.size:
                self.day = time.strftime("%Y-%m-%d", time.localtime(info.st_mtime))

    def _append(self, data: bytes):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
            self.size += len(data)
        except OSError:
            if self.regular:  # no half line left behind
                try:
                    os.ftruncate(self.fd, self.size)
                except OSError:
                    pass  # trimmed when the file is next opened
            self._close_fd()
            raise

    def _rotate(self):
        """NAME → NAME.1 → NAME.2 …, the oldest beyond `keep` deleted; a new NAME, with the
        header."""
        self._close_fd()
        keep = self.rotation.keep
        old = self.path.with_name(f"{self.path.name}.{keep}")
        if keep == 0 or old.exists():
            (old if keep else self.path).unlink(missing_ok=True)
        for n in range(keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if keep and self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.size_before = 0  # what came before this run is in NAME.1 now
        self._open()
        self.day, self.header_due = today(), self.header is not None

    def _close_fd(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def close(self, deadline: Deadline) -> bool:
        done = super().close(deadline)
        if done:
            self._close_fd()
        return done

    def discard(self):
        """Take back what this run wrote (a run that processed nothing leaves no trace): the
        file as it was before, or no file when there was none. Only once closed."""
        if self.worker.is_alive() or self.existed is None or not self.regular:
            return
        if not self.existed:
            self.path.unlink(missing_ok=True)
        elif self.size_before is not None:
            os.truncate(self.path, self.size_before)


def trim_partial_line(fd: int, size: int, tail: int = 1 << 16) -> int:
    """Cut a half-written last line off the file (after a crash or a full disk); → its size."""
    if size == 0:
        return 0
    start = max(0, size - tail)
    block = os.pread(fd, size - start, start)
    if block.endswith(b"\n"):
        return size
    cut = block.rfind(b"\n")
    if cut < 0 and start > 0:  # a line longer than the tail: end it rather than lose more
        os.write(fd, b"\n")
        return size + 1
    keep = start + cut + 1
    os.ftruncate(fd, keep)
    return keep
