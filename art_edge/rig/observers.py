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

import threading

from art_edge.rig.outlets import Supervised
from art_edge.rig.report import status_text
from art_edge.video.outputs import StatusLine, open_output
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
    """`--output`: one camera's frames with its decision drawn, to a video file or the display."""

    def __init__(self, spec: str, source, classes: list[str], snapshot):
        """`source`: the camera's (its frame rate, once open, is the video's); `snapshot()`: the
        rig's (art_edge.rig.report)."""
        self.spec, self.source, self.classes, self.snapshot = spec, source, classes, snapshot
        self.output = None

    @property
    def frames(self) -> int | None:
        """Frames in the video file (None for the display)."""
        return getattr(self.output, "frames", None)

    def on_frame(self, camera: str, frame) -> bool:
        if self.output is None:
            self.output = open_output(self.spec, self.source.fps)
        cam = self.snapshot().camera(camera)
        p50 = cam.decision_latency_ms[0]
        self.output.write(draw_overlay(frame.image, cam.decision, self.classes, cam.fps, p50))
        return not getattr(self.output, "closed_by_user", False)

    def close(self):
        if self.output is not None:
            self.output.close()


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
