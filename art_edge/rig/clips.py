"""Highlight clips: each action segment saved as a video, from `pre` seconds before its start to
`post` seconds after its end.

Each camera keeps a bounded history of its recent frames, JPEG-compressed on its capture thread
(`history` seconds at the source's frame rate: about 30 s × 30 FPS × 50 KB ≈ 45 MB for 720p); a
segment that ended is cut from it once `post` seconds of frames have followed, and handed to one
background writer shared by all cameras. The writer never blocks capture or inference: when its
queue is full the clip is dropped and counted, never a frame. A clip is written under a temporary
name and renamed when complete, so no half file is ever visible. The segment's record is
published only then, naming its clip, or, when the clip was dropped, saying why.

A write error or too little free space (`min_free`) pauses the writer with one warning (the
clips of that time are dropped, their records say so) until a probe finds the folder writable
again; `Retention` (`--retain`) deletes the oldest clips.

    writer = ClipWriter(out_dir, retain=Retention(max_bytes=20e9), min_free=500e6).start()
    recorder = ClipRecorder("pool", classes, fps=30, writer=writer, pre=2, post=2)
    recorder.add_frame(frame)          # capture thread
    recorder.add_decision(decision)    # head thread, for the annotation
    recorder.add_segment(segment, record, publish)   # head thread; written after `post` s more
"""

from __future__ import annotations

import bisect
import errno
import math
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import UserError, format_size
from art_edge.files import check_writable
from art_edge.rig.outlets import Deadline, Outlet
from art_edge.rig.report import History
from art_edge.video.outputs import VideoFileOutput
from art_edge.video.overlay import annotate

JPEG_QUALITY = 85
PROBE_EVERY = 2.0  # seconds between the clip writer's checks of its folder while idle


@dataclass
class ClipJob:
    path: Path
    fps: float
    frames: list  # [(frame index, JPEG bytes)]
    decisions: list  # [(frame index, Decision)], for the annotation
    classes: list
    raw: bool
    roi_box: tuple | None = None
    record: dict | None = None  # the segment's record, published once the clip exists or not
    publish: object = None  # publish(record)
    settled: bool = False

    def settle(self, clip: str | None, dropped: str | None = None) -> bool:
        """The clip exists (`clip`), or will not (`dropped`: why): the record says which and is
        published, once, whichever thread gets here first; → whether this call did it."""
        with _SETTLE:
            if self.settled:
                return False
            self.settled = True
        if self.record is not None:
            self.record["clip"] = clip
            if dropped:
                self.record["clip_dropped"] = dropped
            if self.publish is not None:
                self.publish(self.record)
        return True


_SETTLE = threading.Lock()


def clip_name(camera: str, label: str, start_ts: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start_ts))
    millis = int((start_ts % 1) * 1000)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
    return f"{camera}_{safe}_{stamp}.{millis:03d}.mp4"


class LowSpace(OSError):
    """Less free space than --min-free where the clips go: clip writing pauses."""


@dataclass(frozen=True)
class Retention:
    """`--retain`: the clips folder kept under `max_bytes` and/or `max_age` seconds, the oldest
    clips deleted first (0: no limit of that kind)."""

    max_bytes: int = 0
    max_age: float = 0.0

    def enforce(self, folder: Path) -> int:
        """Delete the oldest clips until the folder is within the limits; → clips deleted."""
        if not (self.max_bytes or self.max_age):
            return 0
        clips = []
        for path in folder.glob("*.mp4"):
            try:
                info = path.stat()
            except OSError:
                continue  # gone meanwhile
            if not path.name.startswith("."):
                clips.append((info.st_mtime, info.st_size, path))
        clips.sort()
        total, now, deleted = sum(size for _, size, _ in clips), time.time(), 0
        for mtime, size, path in clips:
            too_big = self.max_bytes and total > self.max_bytes
            if not (too_big or (self.max_age and now - mtime > self.max_age)):
                break
            path.unlink(missing_ok=True)
            total, deleted = total - size, deleted + 1
        return deleted


class ClipWriter(Outlet):
    """One background thread writing clip jobs, `bound` waiting at most (an Outlet: a write
    error or free space below `min_free` bytes pauses it with one warning, and while paused a
    clip is dropped at once; it resumes when the folder takes files again). Each job's segment
    record is published when its clip exists, or says why it does not. `retain` deletes the
    oldest clips."""

    retry_note = "clip writing paused (their segments say so), retrying"

    def __init__(self, out_dir, bound: int = 4, retain: Retention = Retention(),
                 min_free: int = 0, stall_after: float = 30.0):  # fmt: skip
        super().__init__(f"clips {out_dir}", bound, stall_after)
        self.out_dir, self.retain, self.min_free = Path(out_dir), retain, min_free
        self.clips = History()  # the paths written (the last 1000)
        self.clips_dropped = self.deleted = 0
        self.current: ClipJob | None = None
        self._cancel = threading.Event()  # set at the shutdown's deadline
        self._retained_at = self._checked_at = 0.0

    def put(self, job: ClipJob) -> bool:
        if self.paused:  # its record goes now, not after the pause
            self.dropped += 1
            self.dropped_item(job, f"clip writing paused ({self.trouble.reason})")
            return False
        return super().put(job)

    def dropped_item(self, job: ClipJob, why: str):
        if job.settle(None, why):
            self.clips_dropped += 1

    def give_up(self, job: ClipJob):
        self.dropped_item(job, f"not written ({self.trouble.reason})")
        return None

    def on_start(self):
        """Half-written clips of an earlier run that was killed go; the retention applies."""
        self._remove_parts()
        self.idle()

    def _remove_parts(self):
        """Half-written clips (none is being written when this runs)."""
        for part in self.out_dir.glob(".*.part.mp4"):
            part.unlink(missing_ok=True)

    def idle(self):
        """Between clips: every few seconds a probe (free space, a file made), so a full or
        read-only disk pauses clip writing before a clip is lost to it; every minute the
        retention."""
        now = time.monotonic()
        if now - self._checked_at > PROBE_EVERY and not self.paused:
            self._checked_at = now
            self._probe()
        if now - self._retained_at > 60 or not self._retained_at:
            self._retained_at = now
            self.deleted += self.retain.enforce(self.out_dir)

    def probe(self):
        """Whether clips can be written again (free space, a file made and removed); the half
        clip a failed write may have left where the folder was goes then."""
        self._check_space()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".art-probe-", dir=self.out_dir)
        os.close(fd)
        os.unlink(probe)
        self._remove_parts()

    def _check_space(self):
        if not self.min_free:
            return
        free = shutil.disk_usage(self.out_dir if self.out_dir.exists() else ".").free
        if free < self.min_free:
            raise LowSpace(
                errno.ENOSPC,
                f"{format_size(free)} free, below --min-free {format_size(self.min_free)}",
                str(self.out_dir),
            )

    def write(self, job: ClipJob):
        self._check_space()
        self.current = job
        try:
            write_clip(job, self._cancel.is_set)
        except Cancelled:
            self.dropped_item(job, "the run ended before it was written")
            return
        except OSError:
            raise
        except Exception as e:  # an encoder error without an errno: a write error all the same
            raise OSError(errno.EIO, f"{type(e).__name__}: {e}", str(job.path)) from e
        finally:
            self.current = None
        self.clips.append(str(job.path))
        job.settle(str(job.path))
        self.deleted += self.retain.enforce(self.out_dir)

    def counts(self) -> dict:
        return {"written": self.clips.total, "dropped": self.clips_dropped,
                "errors": self.trouble.errors,
                "pending": self.queue.qsize(), "deleted": self.deleted}  # fmt: skip

    def close(self, deadline: Deadline) -> bool:
        """Write what is queued until the deadline; a clip still being written then is given up
        (its half file removed: no clip appears after its record said it was dropped)."""
        done = super().close(deadline)
        self._cancel.set()
        if not done and self.current is not None:
            self.dropped_item(self.current, "the run ended before it was written")
        return done


class Cancelled(Exception):
    """The run's shutdown gave up on the clip being written (its deadline passed)."""


def write_clip(job: ClipJob, cancelled=lambda: False):
    """The clip under its temporary name, renamed when complete; nothing of it is left when the
    write fails or `cancelled()` turns true (it is asked between frames)."""
    out = VideoFileOutput(job.path, job.fps)
    try:
        indices = [i for i, _ in job.decisions]
        for index, jpeg in job.frames:
            if cancelled():
                raise Cancelled
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if not job.raw:
                at = bisect.bisect_right(indices, index) - 1
                decision = job.decisions[at][1] if at >= 0 else None
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                tracks = None  # a track's clip: its box, id and label as they were decided
                if getattr(decision, "track", None) is not None:
                    tracks = [(decision.track, decision.box, decision.label, decision.score)]
                bgr = annotate(rgb, decision, job.classes, job.fps, None, job.roi_box,
                               tracks=tracks)  # fmt: skip
            out.write(bgr)
        out.close()
    except BaseException:
        out.abandon()
        raise


class ClipRecorder:
    """One camera's frame history and the segments waiting for their `post` seconds."""

    def __init__(
        self,
        camera: str,
        classes: list,
        fps: float,
        writer: ClipWriter,
        pre: float,
        post: float,
        history: float = 30.0,
        raw: bool = False,
        roi=None,
    ):
        self.camera, self.classes, self.writer, self.raw, self.roi = (
            camera,
            classes,
            writer,
            raw,
            roi,
        )
        self.fps = fps if fps and fps > 0 else 30.0
        self.pre, self.post = math.ceil(pre * self.fps), math.ceil(post * self.fps)
        self.frames: deque = deque(maxlen=max(1, math.ceil(history * self.fps)))
        self.decisions: deque = deque(maxlen=self.frames.maxlen)
        self.pending: list = []  # (segment, ClipJob) waiting for their `post` seconds
        self.lock = threading.Lock()
        self.roi_box = None

    def add_frame(self, frame):
        ok, jpeg = cv2.imencode(
            ".jpg",
            cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        )
        if self.roi is not None and self.roi_box is None:
            self.roi_box = self.roi.box(*frame.image.shape[:2])
        with self.lock:
            if ok:
                self.frames.append((frame.index, jpeg.tobytes()))
            due = [p for p in self.pending if frame.index >= p[0].end_frame + self.post]
            for p in due:
                self.pending.remove(p)
                self._submit(*p)

    def add_decision(self, decision):
        with self.lock:
            self.decisions.append((decision.frame, decision))

    def add_segment(self, segment, record: dict, publish):
        """A segment that ended: its clip is cut once `post` seconds of frames have followed;
        then `publish(record)` with the record naming the clip once it exists (`clip`), or
        saying why there is none (`clip: null`, `clip_dropped`)."""
        track = record.get("track")  # a track's segment: its clip is named and drawn for it
        camera = self.camera if track is None else f"{self.camera}-track{track}"
        path = self.writer.out_dir / clip_name(camera, segment.label, segment.start_ts)
        job = ClipJob(path, self.fps, [], [], self.classes, self.raw, None, record, publish)
        with self.lock:
            self.pending.append((segment, job))

    def flush(self):
        """The stream ended: the segments still waiting get what frames there are."""
        with self.lock:
            for p in self.pending:
                self._submit(*p)
            self.pending.clear()

    def _submit(self, segment, job: ClipJob):
        lo, hi = segment.start_frame - self.pre, segment.end_frame + self.post
        job.frames = [(i, j) for i, j in self.frames if lo <= i <= hi]
        track = (job.record or {}).get("track")
        job.decisions = [(i, d) for i, d in self.decisions
                         if i <= hi and (track is None or getattr(d, "track", None) == track)]  # fmt: skip
        job.roi_box = self.roi_box
        if job.frames:
            self.writer.put(job)
        else:
            self.writer.dropped_item(job, "no frame of it was left in the clip history")


def check_clip_options(clips: str | None, pre: float, post: float, history: float):
    if pre < 0 or post < 0:
        raise UserError(f"--pre {pre:g} / --post {post:g}: seconds must be ≥ 0")
    if pre + post >= history:
        raise UserError(
            f"--pre {pre:g} + --post {post:g} s leave nothing of the {history:g} s frame history "
            "for the action itself: lower them, or raise --clip-history"
        )
    if clips:
        path = Path(clips)
        if path.exists() and not path.is_dir():
            raise UserError(f"--clips {clips}: a file, not a folder; give a folder for the clips")
        check_writable(path / ".probe", "--clips")
