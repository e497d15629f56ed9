"""The outputs of a rig are its observers: the rig calls them and knows nothing else of them.

    rig = Rig(engine, cameras, config)
    rig.observe(AnnotatedVideo("out.mp4", source, classes, rig.snapshot))   # a front door does
    rig.run(stop)               # on_frame, on_decision, on_segment as they come; close at the end

`on_frame` runs on the encoding thread (the frames wait for it), `on_decision` and `on_segment`
on the head thread (decisions wait for them): an output that needs time of its own (a network
sink, a server, the status line) does its work on a thread of its own. Outputs that show the
rig's state read snapshots of it (art_edge.rig.report), never the rig.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path

from art_edge.rig.outlets import Outlet, Supervised
from art_edge.rig.report import status_text
from art_edge.video.outputs import StatusLine, VideoFileOutput, is_display, open_output
from art_edge.video.overlay import draw_overlay


class RigObserver:
    """What the rig calls on each of its outputs; each does nothing here."""

    def on_frame(self, camera: str, frame) -> bool | None:
        """An encoded frame of `camera` (art_edge.runtime.streaming.Frame); False ends the run
        (the user closed the display)."""

    def on_decision(self, camera: str, decision) -> None:
        """A decision of `camera` (art_edge.runtime.streaming.Decision)."""

    def on_segment(self, camera: str, record: dict) -> None:
        """A finished segment of `camera`: its record (art_edge.rig.segments), with its clip's path
        when clips are on."""

    def close(self) -> None:
        """The run ended: write what is left, stop."""

    def close_within(self, deadline) -> None:
        """close(), done by `deadline` (art_edge.rig.outlets.Deadline) whatever state the output
        is in; outputs that write on threads of their own give what they hold until then."""
        self.close()

    def outputs(self) -> list:
        """What this output writes to, each as an OutputSnapshot (art_edge.rig.report): its
        health (ok, degraded, failed and why) and counts, for /healthz and the summary."""
        return []


class Observers(RigObserver):
    """The rig's observers, each called in the order they were registered."""

    def __init__(self):
        self.observers: list[RigObserver] = []

    def add(self, observer: RigObserver) -> RigObserver:
        self.observers.append(observer)
        return observer

    def on_frame(self, camera: str, frame) -> bool:
        goes_on = [observer.on_frame(camera, frame) for observer in self.observers]
        return False not in goes_on

    def on_decision(self, camera: str, decision):
        for observer in self.observers:
            observer.on_decision(camera, decision)

    def on_segment(self, camera: str, record: dict):
        for observer in self.observers:
            observer.on_segment(camera, record)

    def close(self, failures: list, deadline=None):
        """Close each (by `deadline`, those that take one), even when one close fails; the
        failures go to `failures`."""
        for observer in self.observers:
            try:
                close_within = getattr(observer, "close_within", None)
                close_within(deadline) if close_within and deadline else observer.close()
            except Exception as e:  # noqa: BLE001 (each output is closed whatever the others did)
                failures.append(e)

    def outputs(self) -> list:
        return [o for observer in self.observers for o in getattr(observer, "outputs", list)()]


class AnnotatedVideo(RigObserver):
    """`--output`: one camera's frames with its decision drawn, to a video file (drawn and
    written on a thread of its own: VideoFile) or the display (on the encoding thread)."""

    def __init__(self, spec: str, source, classes: list[str], snapshot, stall_after=10.0):
        """`source`: the camera's (its frame rate, once open, is the video's); `snapshot()`: the
        rig's (art_edge.rig.report)."""
        self.spec, self.source, self.classes, self.snapshot = spec, source, classes, snapshot
        self.output = self.file = None
        if not is_display(spec):
            self.file = VideoFile(spec, lambda: source.fps, classes, stall_after).start()

    @property
    def frames(self) -> int | None:
        """Frames in the video file (None for the display)."""
        return self.file.frames if self.file is not None else None

    def on_frame(self, camera: str, frame) -> bool:
        cam = self.snapshot().camera(camera)
        p50, tracks = cam.decision_latency_ms[0], cam.tracks_in(frame)
        if self.file is not None:  # a file played as fast as it goes waits a little for room
            wait = 0.0 if getattr(self.source, "live", False) else 5.0
            self.file.put((frame.image, cam.decision, cam.fps, p50, tracks), wait)
            return True
        if self.output is None:
            self.output = open_output(self.spec, self.source.fps)
        self.output.write(
            draw_overlay(frame.image, cam.decision, self.classes, cam.fps, p50, tracks=tracks)
        )
        return not getattr(self.output, "closed_by_user", False)

    def outputs(self) -> list:
        return [self.file.snapshot()] if self.file is not None else []

    def close_within(self, deadline):
        if self.file is not None:
            self.file.close(deadline)
        self.close()

    def close(self):
        if self.output is not None:
            self.output.close()
        if self.file is not None and not self.file.worker.is_alive():
            self.file.finish()


class VideoFile(Outlet):
    """The annotated video file, drawn and written from its own queue: a write error ends the
    file there (what was written is kept when it can be finished, else removed), pauses the
    output (its frames are dropped, counted) until a probe finds the folder writable, and the
    video goes on in a new file (NAME.2.mp4, NAME.3.mp4, … after one that was kept)."""

    retry_note = "the video pauses (its frames are dropped), retrying"

    def __init__(self, path, fps_of, classes: list, stall_after: float = 10.0, bound: int = 64):
        super().__init__(str(path), bound, stall_after)
        self.path, self.fps_of, self.classes = Path(path), fps_of, classes
        self.output, self.part, self.frames = None, 1, 0

    def put(self, item, wait: float = 0.0) -> bool:
        if self.paused:  # a frame is not worth keeping for later
            self.dropped += 1
            return False
        return super().put(item, wait)

    def write(self, item):
        image, decision, fps, p50, tracks = item
        bgr = draw_overlay(image, decision, self.classes, fps, p50, tracks=tracks)
        if self.output is None:
            path = self.path
            if self.part > 1:
                path = path.with_name(f"{path.stem}.{self.part}{path.suffix}")
            self.output = VideoFileOutput(path, self.fps_of())
        try:
            self.output.write(bgr)
        except Exception as e:
            self.finish()
            if isinstance(e, OSError):
                raise
            raise OSError(errno.EIO, f"{type(e).__name__}: {e}", str(self.path)) from e
        self.frames += 1

    def give_up(self, item):
        return None  # a frame is not retried: the next one is the probe

    def probe(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".art-probe-", dir=self.path.parent)
        os.close(fd)
        os.unlink(probe)

    def finish(self):
        """The current file finished (renamed into place), or removed when it cannot be."""
        output, self.output = self.output, None
        if output is None or output.writer is None:
            return
        try:
            output.close()
        except Exception:  # noqa: BLE001 (a file that cannot be finished is not left half)
            output.abandon()
            return  # nothing kept: the next file takes its name
        self.part += 1

    def counts(self) -> dict:
        return {**super().counts(), "written": self.frames}


class StatusReport(RigObserver):
    """The live status line on the terminal, redrawn from a snapshot of the rig on a thread of
    its own (a few times a second on a terminal, every few seconds in a log)."""

    def __init__(self, snapshot, stream=None):
        self.snapshot, self.line = snapshot, StatusLine(stream)
        self._stop = threading.Event()
        self._thread = Supervised("the status line", self._run, self._stop)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.line.interval):
            self.line.update(status_text(self.snapshot()), force=True)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.line.close()
