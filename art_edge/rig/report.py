"""The rig's report: the counters its cameras keep as they run, and the immutable snapshots of
them that every reader takes (the status line, the summary, /metrics, the dashboard), never the
rig's own objects.

    snap = rig.snapshot()             # RigSnapshot: a CameraSnapshot a camera, segments, clips
    status_text(snap)                 # the live status line
    rig_summary(snap, events)         # the run's summary (art-edge --summary)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


class LatencyLog:
    """Latency percentiles in constant time and memory per sample, however long the run: a
    histogram of log-spaced bins (1.6 % apart) from 0.01 ms to 100 s. A percentile is read at the
    upper edge of its bin, so it is within 1.6 % of the exact one."""

    EDGES = np.geomspace(0.01, 1e5, 1001)

    def __init__(self):
        self.counts = np.zeros(len(self.EDGES) + 1, np.int64)
        self.n = 0

    def add(self, ms: float):
        self.counts[int(np.searchsorted(self.EDGES, ms))] += 1
        self.n += 1

    def percentile(self, q: float) -> float | None:
        if not self.n:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.n))
        return float(self.EDGES[min(i, len(self.EDGES) - 1)])


@dataclass
class RunStats:
    """A camera's counters, written by the rig's threads."""

    frames: int = 0
    decisions: int = 0
    clips_scored: int = 0
    clips_correct: int = 0
    frame_latency: LatencyLog = field(default_factory=LatencyLog)
    decision_latency: LatencyLog = field(default_factory=LatencyLog)
    encode_ms: LatencyLog = field(default_factory=LatencyLog)
    head_ms: LatencyLog = field(default_factory=LatencyLog)

    def score_clip(self, decision):
        """The last decision of a clip against the clip's label (sources that know it)."""
        if decision is not None and decision.truth is not None:
            self.clips_scored += 1
            self.clips_correct += int(decision.label == decision.truth)


class RateMeter:
    """Frames per second over the last `window` seconds: a burst (a stream's backlog after a
    reconnect) moves it by what it adds to the window, not by its instantaneous rate."""

    def __init__(self, window: float = 2.0):
        self.window, self.times, self.started = window, deque(), None

    def tick(self, now: float):
        if self.started is None:
            self.started = now
        self.times.append(now)
        while now - self.times[0] > self.window:
            self.times.popleft()

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = min(self.window, self.times[-1] - self.started)
        return (len(self.times) - 1) / span if span > 0 else 0.0


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True)
class CameraSnapshot:
    """One camera at one moment."""

    name: str
    status: str  # its source's: live, reading, rendering, reconnecting (…), no signal, ended
    frames: int  # encoded
    decisions: int
    dropped: int  # by the source and by the pipeline
    decisions_skipped: int  # live decisions a newer one replaced before the head took them
    corrupt: int
    truncated: int
    reconnects: int
    fps: float  # over the last seconds
    frame_latency_ms: tuple  # (p50, p95): capture → encoded; None before the first
    decision_latency_ms: tuple  # (p50, p95): capture of a decision's newest frame → decision
    encode_ms_p50: float | None  # a frame's share of its encoder batch
    head_ms_p50: float | None
    clips_scored: int  # clips of a labelled source scored by their last decision
    clips_correct: int
    idle_s: float  # since the source last delivered a frame
    ended: str | None = None  # how it ended (None: still running)
    error: str | None = None  # why, when its source failed
    decision: object = None  # the last decision (art_edge.runtime.streaming.Decision)
    last_frame: object = None  # the newest frame encoded (art_edge.runtime.streaming.Frame)
    roi: object = None  # art_edge.video.roi.Roi
    open_segment: dict | None = None  # the segment in progress: label, start_ts, end_ts, peak_score

    def silent(self, stale_after: float) -> bool:
        """No frame delivered in the last `stale_after` seconds (/healthz, the dashboard)."""
        return self.idle_s > stale_after

    def counters(self) -> dict:
        return {
            "frames": self.frames,
            "decisions": self.decisions,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "reconnects": self.reconnects,
            "fps": round(self.fps, 2),
        }


@dataclass(frozen=True)
class RigSnapshot:
    """The whole rig at one moment."""

    cameras: tuple  # CameraSnapshot, in the order the cameras were given
    classes: tuple
    seconds: float  # since the run started (to its end, once it ended)
    segments: tuple  # every finished segment's record so far
    clips: tuple | None  # the clips written so far (None: clips are off)
    clips_dropped: int  # clips the writer had no room for
    batches: int  # encoder batches
    max_batch: int
    encoder_workers: int
    head_batches: int | None  # clip-head batches (None: one thread, no head thread)
    head_jobs: int
    max_head_batch: int
    ended: str | None = None  # how the run ended (None: still running)
    error: str | None = None

    def camera(self, name: str) -> CameraSnapshot:
        return next(cam for cam in self.cameras if cam.name == name)


def status_text(snap: RigSnapshot) -> str:
    """One camera: its label, FPS, decision latency, frames, dropped; several: a short part each.
    While no camera has delivered a frame for half a second: what each is doing."""
    classes, cams = snap.classes, snap.cameras
    running = [c for c in cams if c.ended is None]
    if running and all(c.idle_s > 0.5 for c in running):
        return f"waiting for frames ({', '.join(f'{c.name}: {c.status}' for c in running)})"
    parts = []
    for cam in cams:
        d = cam.decision
        label = f"{classes[d.label]} {d.score:.2f}" if d else "(filling the window)"
        if len(cams) == 1:
            p50 = cam.decision_latency_ms[0]
            text = (
                f"{label:<32} {cam.fps:5.1f} FPS  decision {p50 or 0:5.0f} ms  frames "
                f"{cam.frames}  dropped {cam.dropped}"
            )
        else:
            text = f"{cam.name}: {label} {cam.fps:4.1f} FPS d{cam.dropped}"
        if cam.status not in ("live", "reading", "rendering"):
            text += f" [{cam.status}]"
        parts.append(text)
    return " | ".join(parts)


def camera_summary(cam: CameraSnapshot, seconds: float, events: int) -> dict:
    """A camera's part of the summary; `events`: those its decisions and segments made."""
    (fl50, fl95), (dl50, dl95) = cam.frame_latency_ms, cam.decision_latency_ms
    summary = {
        "frames": cam.frames,
        "decisions": cam.decisions,
        "events": events,
        "fps": round(cam.frames / seconds, 2) if seconds > 0 else 0.0,
        "frame_latency_ms": {"p50": _round(fl50), "p95": _round(fl95)},
        "decision_latency_ms": {"p50": _round(dl50), "p95": _round(dl95)},
        "encode_ms_p50": _round(cam.encode_ms_p50),
        "head_ms_p50": _round(cam.head_ms_p50),
        "dropped": cam.dropped,
        "decisions_skipped": cam.decisions_skipped,
        "corrupt": cam.corrupt,
        "truncated": cam.truncated,
        "reconnects": cam.reconnects,
        "ended": cam.ended or "interrupted",
    }
    if cam.error:
        summary["error"] = cam.error
    if cam.clips_scored:
        summary.update(
            clips_scored=cam.clips_scored,
            clip_top1=round(cam.clips_correct / cam.clips_scored, 4),
        )
    return summary


def rig_summary(snap: RigSnapshot, events: dict) -> dict:
    """The rig's part of the run's summary (`events`: per camera). One camera: its figures at
    the top level (as art-edge always wrote them); several: the totals at the top level; per
    camera under `cameras` in both."""
    seconds = snap.seconds
    cams = {c.name: camera_summary(c, seconds, events.get(c.name, 0)) for c in snap.cameras}
    if len(cams) == 1:
        summary = dict(next(iter(cams.values())))
        del summary["ended"]
        summary.pop("error", None)
    else:
        keys = ("frames", "decisions", "events", "dropped", "corrupt", "truncated", "reconnects")
        summary = {k: sum(c[k] for c in cams.values()) for k in keys}
        summary["fps"] = round(summary["frames"] / seconds, 2) if seconds > 0 else 0.0
        summary["decisions_skipped"] = sum(c["decisions_skipped"] for c in cams.values())
    summary.update(
        seconds=round(seconds, 2),
        cameras=cams,
        segments=len(snap.segments),
        frames_per_batch=round(summary["frames"] / snap.batches, 2) if snap.batches else 0.0,
        max_batch=snap.max_batch,
        encoder_workers=snap.encoder_workers,
    )
    if snap.head_batches is not None:
        per_batch = snap.head_jobs / snap.head_batches if snap.head_batches else 0.0
        summary.update(
            decisions_per_head_batch=round(per_batch, 2), max_head_batch=snap.max_head_batch
        )
    if snap.clips is not None:
        summary.update(clips=list(snap.clips), clips_dropped=snap.clips_dropped)
    return summary
