"""Highlight clips: each action segment saved as a video, from `pre` seconds before its start to
`post` seconds after its end.

Each camera keeps a bounded history of its recent frames, JPEG-compressed on its capture thread
(`history` seconds at the source's frame rate: about 30 s × 30 FPS × 50 KB ≈ 45 MB for 720p); a
segment that ended is cut from it once `post` seconds of frames have followed, and handed to one
background writer shared by all cameras. The writer never blocks capture or inference: when its
queue is full the clip is dropped and counted, never a frame. A clip is written under a temporary
name and renamed when complete, so no half file is ever visible.

    recorder = ClipRecorder("pool", classes, fps=30, writer=ClipWriter(out_dir), pre=2, post=2)
    recorder.add_frame(frame)          # capture thread
    recorder.add_decision(decision)    # head thread, for the annotation
    recorder.add_segment(segment)      # head thread; written after `post` more seconds
"""

from __future__ import annotations

import bisect
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import UserError
from art_edge.files import check_writable
from art_edge.video.outputs import VideoFileOutput
from art_edge.video.overlay import annotate

JPEG_QUALITY = 85


@dataclass
class ClipJob:
    path: Path
    fps: float
    frames: list  # [(frame index, JPEG bytes)]
    decisions: list  # [(frame index, Decision)], for the annotation
    classes: list
    raw: bool
    roi_box: tuple | None = None


def clip_name(camera: str, label: str, start_ts: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start_ts))
    millis = int((start_ts % 1) * 1000)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)
    return f"{camera}_{safe}_{stamp}.{millis:03d}.mp4"


class ClipWriter:
    """One background thread writing clip jobs, `bound` waiting at most."""

    def __init__(self, out_dir, bound: int = 4):
        self.out_dir = Path(out_dir)
        self.queue: queue.Queue = queue.Queue(maxsize=bound)
        self.written, self.dropped = [], 0
        self._thread = threading.Thread(target=self._run, name="art-edge:clips", daemon=True)
        self._thread.start()

    def submit(self, job: ClipJob):
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1

    def _run(self):
        while True:
            job = self.queue.get()
            if job is None:
                return
            write_clip(job)
            self.written.append(str(job.path))

    def close(self, timeout: float = 60.0):
        """Write what is queued, then stop."""
        self.queue.put(None)
        self._thread.join(timeout=timeout)


def write_clip(job: ClipJob):
    out = VideoFileOutput(job.path, job.fps)
    indices = [i for i, _ in job.decisions]
    for index, jpeg in job.frames:
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if not job.raw:
            at = bisect.bisect_right(indices, index) - 1
            decision = job.decisions[at][1] if at >= 0 else None
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            bgr = annotate(rgb, decision, job.classes, job.fps, None, job.roi_box)
        out.write(bgr)
    out.close()


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
        self.pending: list = []  # (segment, clip path)
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

    def add_segment(self, segment) -> str:
        """→ the clip's path (written once `post` seconds of frames have followed)."""
        path = self.writer.out_dir / clip_name(self.camera, segment.label, segment.start_ts)
        with self.lock:
            self.pending.append((segment, path))
        return str(path)

    def flush(self):
        """The stream ended: the segments still waiting get what frames there are."""
        with self.lock:
            for p in self.pending:
                self._submit(*p)
            self.pending.clear()

    def _submit(self, segment, path):
        lo, hi = segment.start_frame - self.pre, segment.end_frame + self.post
        frames = [(i, j) for i, j in self.frames if lo <= i <= hi]
        if frames:
            decisions = [(i, d) for i, d in self.decisions if i <= hi]
            self.writer.submit(
                ClipJob(path, self.fps, frames, decisions, self.classes, self.raw, self.roi_box)
            )


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
