"""A tracked camera's lanes: each live track has its own streaming lane — frame window, decisions,
smoothing, segments — fed with its tubelet's crops (art_edge.video.tracks).

    lanes = TrackLanes(camera)
    lanes.on_frame(frame, encoded)   # the encoding thread: each track's crop into its lane
    lanes.finish()                   # the end: every lane's last decision and open segment

A track born gets a lane; a track lost ends its lane: its last decision is made on what its
window holds, its open segment ends, and the lane is freed. Lanes come and go without holding
the others back: their heads run in the rig's head batches like the cameras'.
"""

from __future__ import annotations

import threading
import time

from art_edge.rig.pipeline import InlineHead
from art_edge.rig.segments import SegmentTracker
from art_edge.runtime.streaming import StreamingClassifier


class TrackLane:
    """One track's window, smoothing, head lane and segments."""

    def __init__(self, track_id: int, camera):
        rig = camera.rig
        self.id, self.camera = track_id, camera
        self.clf = StreamingClassifier(rig.engine, rig.config.stream)
        if rig.heads is not None:
            live = getattr(camera.source, "live", False)
            self.head = rig.heads.lane(self.clf, self.on_decision, live)
        else:
            self.head = InlineHead(self.clf, self.on_decision)
        self.segments = None
        if camera.segments is not None:  # the camera's segments are on (and its frame rate known)
            seg = rig.config.segment
            self.segments = SegmentTracker(
                camera.name, rig.classes, camera.source.fps, seg.min_score, seg.min_duration
            )
        self.boxes: dict = {}  # frame index → the track's box, for the frames its window holds
        self.box = self.decision = self.last_frame = None
        self.frames = 0

    def on_frame(self, frame, track, encoded):
        self.boxes[frame.index] = self.box = track.box
        if len(self.boxes) > 2 * self.clf.window:  # older frames leave the window
            for index in sorted(self.boxes)[: len(self.boxes) - self.clf.window]:
                del self.boxes[index]
        if self.clf.add(frame, encoded):
            self.head.submit(self.clf.job(frame))
        self.last_frame, self.frames = frame, self.frames + 1

    def end(self):
        """The track was lost (or the stream ended): a last decision on its window, then free."""
        self.head.submit(self.clf.end_job(self.last_frame), end=True)

    def on_decision(self, d, end: bool):
        """The head thread's side: the decision names its track and box; at the end the open
        segment ends and the lane is freed."""
        if d is not None:
            d.track, d.box = self.id, self.boxes.get(d.frame, self.box)
            self.decision = d
            self.camera.on_track_decision(self, d)
        if end:
            for segment in self.segments.close() if self.segments is not None else ():
                self.camera.finish_segment(segment, self)
            self.camera.lanes.freed(self)


class TrackLanes:
    """The lanes of one tracked camera, by track id."""

    def __init__(self, camera):
        self.camera = camera
        self.live: dict[int, TrackLane] = {}
        self.ending: list[TrackLane] = []  # lost, their last decision not made yet
        self.lock = threading.Lock()
        self.born = self.lost = 0

    def on_frame(self, frame, encoded: list):
        """A frame's tracks and their encoded crops (same order) into their lanes; the lanes of
        tracks no longer served end."""
        served = {t.id for t in frame.tracks}
        with self.lock:
            gone = [lane for tid, lane in self.live.items() if tid not in served]
            for lane in gone:
                del self.live[lane.id]
                self.ending.append(lane)
            self.lost += len(gone)
        for lane in gone:
            lane.end()
        for track, enc in zip(frame.tracks, encoded):
            lane = self.live.get(track.id)
            if lane is None:
                lane = TrackLane(track.id, self.camera)
                with self.lock:
                    self.live[track.id] = lane
                    self.born += 1
            lane.on_frame(frame, track, enc)

    def freed(self, lane: TrackLane):
        with self.lock:
            if lane in self.ending:
                self.ending.remove(lane)
        heads = self.camera.rig.heads
        if heads is not None:
            heads.remove(lane.head)

    def finish(self, timeout: float):
        """The end of the stream: every lane's last decision and open segment."""
        with self.lock:
            lanes = list(self.live.values())
            self.live.clear()
            self.ending.extend(lanes)
        for lane in lanes:
            lane.end()
        deadline = time.monotonic() + timeout
        for lane in list(self.ending):
            lane.head.drain(max(0.1, deadline - time.monotonic()))

    def skipped(self) -> int:
        with self.lock:
            return sum(lane.head.skipped for lane in self.live.values())

    def snapshot(self) -> tuple:
        """The live tracks: (id, box, label, score) each, label None before its first decision."""
        with self.lock:
            lanes = list(self.live.values())
        return tuple(
            (lane.id, lane.box, *(
                (lane.decision.label, lane.decision.score) if lane.decision else (None, None)))
            for lane in lanes
        )  # fmt: skip
