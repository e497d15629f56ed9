"""Actions as segments: a camera's decisions turned into start/end events.

    tracker = SegmentTracker("pool", classes, fps=30, min_score=0.5, min_duration=0.5)
    for d in decisions:
        for seg in tracker.update(d):   # the segments that ended with this decision
            print(seg.to_dict())
    tail = tracker.close()              # the one still open when the stream ends

A segment is a run of decisions with the same decided label whose smoothed score stays at or
above `min_score`; below it the camera is idle (no label). A run shorter than `min_duration`
seconds is dropped as flicker. Times are stream seconds (frame index / the source's frame rate,
so a file played as fast as possible gives the same segments as one played in real time) and wall
clock (epoch seconds, for a rig that joins events with other systems).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def wall_time(monotonic_ts: float) -> float:
    """A time.monotonic() stamp (frame capture) as epoch seconds."""
    return time.time() - (time.monotonic() - monotonic_ts)


@dataclass
class Segment:
    camera: str
    label: str
    start_frame: int
    end_frame: int
    start_s: float  # stream seconds
    end_s: float
    start_ts: float  # epoch seconds
    end_ts: float
    peak_score: float
    scores: list = field(default_factory=list, repr=False)

    def progress(self) -> dict:
        """A segment still open, as the dashboard's timeline draws it."""
        return {k: getattr(self, k) for k in ("label", "start_ts", "end_ts", "peak_score")}

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        return {
            "type": "segment",
            "camera": self.camera,
            "label": self.label,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "duration_s": round(self.duration_s, 3),
            "start_ts": round(self.start_ts, 3),
            "end_ts": round(self.end_ts, 3),
            "peak_score": round(self.peak_score, 4),
            "mean_score": round(sum(self.scores) / len(self.scores), 4),
        }


class SegmentTracker:
    """One camera's decisions → finished segments (see the module docstring)."""

    def __init__(
        self,
        camera: str,
        classes: list[str],
        fps: float,
        min_score: float = 0.5,
        min_duration: float = 0.0,
    ):
        self.camera, self.classes = camera, classes
        self.fps = fps if fps and fps > 0 else 30.0
        self.min_score, self.min_duration = min_score, min_duration
        self.current: Segment | None = None
        self.dropped_short = 0  # runs shorter than min_duration

    def update(self, decision) -> list[Segment]:
        """Add a decision; → the segments it ended (zero or one)."""
        active = decision.score >= self.min_score
        cur = self.current
        if cur is not None and active and self.classes[decision.label] == cur.label:
            self._extend(cur, decision)
            return []
        ended = self.close()
        if active:
            self.current = self._start(decision)
        return ended

    def close(self) -> list[Segment]:
        """End the open segment (the stream ended, or the camera went idle); → it, if it counts."""
        cur, self.current = self.current, None
        if cur is None:
            return []
        if cur.duration_s < self.min_duration:
            self.dropped_short += 1
            return []
        return [cur]

    def _start(self, d) -> Segment:
        at, ts = d.frame / self.fps, wall_time(d.timestamp)
        return Segment(
            self.camera, self.classes[d.label], d.frame, d.frame, at, at, ts, ts, d.score, [d.score]
        )

    def _extend(self, seg: Segment, d):
        seg.end_frame, seg.end_s, seg.end_ts = d.frame, d.frame / self.fps, wall_time(d.timestamp)
        seg.peak_score = max(seg.peak_score, d.score)
        seg.scores.append(d.score)
