"""The rig's report: the counters its cameras keep as they run, and the immutable snapshots of
them that every reader takes (the status line, the summary, /metrics, the dashboard), never the
rig's own objects.

    snap = rig.snapshot()             # RigSnapshot: a CameraSnapshot a camera, segments, clips
    status_text(snap)                 # the live status line
    rig_summary(snap, events)         # the run's summary (art-edge --summary)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
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
    reconnect) moves it by what it adds to the window, not by its instantaneous rate; a camera
    that stops falls to 0 within the window."""

    def __init__(self, window: float = 2.0):
        self.window, self.times, self.started = window, deque(), None

    def tick(self, now: float):
        if self.started is None:
            self.started = now
        self.times.append(now)
        while now - self.times[0] > self.window:
            self.times.popleft()

    def fps_at(self, now: float) -> float:
        recent = [t for t in tuple(self.times) if now - t <= self.window]
        span = min(self.window, now - self.started) if self.started is not None else 0.0
        if len(recent) < 2 or span <= 0:
            return 0.0
        return len(recent) / span


class History:
    """The last `keep` items of a series that only grows (segment records, clips written), so
    that a run of weeks holds a bounded number of them; `view()` is indexed as the whole series
    (see HistoryView)."""

    def __init__(self, keep: int = 1000):
        self.items: deque = deque(maxlen=keep)
        self.total = 0
        self.lock = threading.Lock()

    def append(self, item):
        with self.lock:
            self.items.append(item)
            self.total += 1

    def view(self) -> HistoryView:
        with self.lock:
            return HistoryView(tuple(self.items), self.total)


class HistoryView(Sequence):
    """A History at one moment, as a sequence of every item ever added: `len()` counts them all,
    index i is the i-th ever added, and those before the last `keep` are gone (a slice over them
    skips them; an index of one raises IndexError)."""

    def __init__(self, items: tuple = (), total: int | None = None):
        self.items, self.total = tuple(items), len(items) if total is None else total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index):
        first = self.total - len(self.items)
        if isinstance(index, slice):
            start, stop, step = index.indices(self.total)
            return tuple(self.items[i - first] for i in range(start, stop, step) if i >= first)
        index = index + self.total if index < 0 else index
        if not first <= index < self.total:
            raise IndexError(f"item {index} is no longer kept (the last {len(self.items)} are)")
        return self.items[index - first]

    def __iter__(self):
        return iter(self.items)

    def __eq__(self, other):
        return (
            tuple(self) == tuple(other)
            if isinstance(other, (tuple, HistoryView))
            else NotImplemented
        )

    __hash__ = None


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
    since_decision_s: float = 0.0  # since its last decision (since the run started: none yet)
    seconds: float = 0.0  # processing time: from the run's start to its end (or now)
    restarts: int = 0  # its reader or capture thread failed and was restarted
    problem: str | None = None  # what its source or reader last ran into (a lost stream)
    # a tracked camera's live tracks: (id, box, label, score), label None before a decision
    tracks: tuple | None = None
    tracks_left_out: int = 0  # live tracks beyond --max-tracks, not served
    tracks_served: int = 0  # tracks that had a lane in the run so far

    def tracks_in(self, frame) -> list | None:
        """A tracked camera's frame: its tracks' boxes in it, each with its lane's label and
        score; None for a camera without tracking."""
        if frame is None or frame.tracks is None:
            return None
        labels = {tid: (label, score) for tid, _, label, score in self.tracks or ()}
        return [(t.id, t.box, *labels.get(t.id, (None, None))) for t in frame.tracks]

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
    segments: Sequence  # every finished segment's record so far (a HistoryView: the last 1000 kept)
    clips: Sequence | None  # the clips written so far (a HistoryView; None: clips are off)
    clips_dropped: int  # clips the writer had no room for
    batches: int  # encoder batches
    max_batch: int
    encoder_workers: int
    head_batches: int | None  # clip-head batches (None: one thread, no head thread)
    head_jobs: int
    max_head_batch: int
    ended: str | None = None  # how the run ended (None: still running)
    error: str | None = None

    outputs: tuple = ()  # OutputSnapshot, an output each
    processing_seconds: float = 0.0  # the run's start to the end of its processing (no shutdown)
    loop_idle_s: float = 0.0  # since the rig's loop last went round (a stuck loop: failed)
    running: bool = False  # open and going round (from after its cameras opened to its end)

    def camera(self, name: str) -> CameraSnapshot:
        return next(cam for cam in self.cameras if cam.name == name)


@dataclass(frozen=True)
class OutputSnapshot:
    """One output of the rig (a JSONL file, the clips, a network sink) at one moment."""

    name: str
    status: str  # ok, degraded (paused, dropping, spooling) or failed (stuck)
    reason: str
    counts: dict  # written or sent, dropped, lost, errors, pending (and spooled: network sinks)


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
        if cam.tracks is not None:  # a tracked camera: each live track's label
            label = " ".join(f"#{tid} {classes[c] if c is not None else '…'}"
                             for tid, _, c, _ in cam.tracks) or "(no tracks)"  # fmt: skip
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


def camera_summary(cam: CameraSnapshot, events: int) -> dict:
    """A camera's part of the summary; `events`: those its decisions and segments made. Its FPS
    is over its processing time (the run's start to the camera's end), not the shutdown."""
    (fl50, fl95), (dl50, dl95) = cam.frame_latency_ms, cam.decision_latency_ms
    summary = {
        "frames": cam.frames,
        "decisions": cam.decisions,
        "events": events,
        "fps": round(cam.frames / cam.seconds, 2) if cam.seconds > 0 else 0.0,
        "frame_latency_ms": {"p50": _round(fl50), "p95": _round(fl95)},
        "decision_latency_ms": {"p50": _round(dl50), "p95": _round(dl95)},
        "encode_ms_p50": _round(cam.encode_ms_p50),
        "head_ms_p50": _round(cam.head_ms_p50),
        "dropped": cam.dropped,
        "decisions_skipped": cam.decisions_skipped,
        "corrupt": cam.corrupt,
        "truncated": cam.truncated,
        "reconnects": cam.reconnects,
        "restarts": cam.restarts,
        "ended": cam.ended or "interrupted",
    }
    if cam.error:
        summary["error"] = cam.error
    if cam.clips_scored:
        summary.update(
            clips_scored=cam.clips_scored,
            clip_top1=round(cam.clips_correct / cam.clips_scored, 4),
        )
    if cam.tracks is not None:  # a tracked camera: the tracks it served, and left out
        summary.update(tracks=cam.tracks_served, tracks_left_out=cam.tracks_left_out)
    return summary


def rig_summary(snap: RigSnapshot, events: dict) -> dict:
    """The rig's part of the run's summary (`events`: per camera). One camera: its figures at
    the top level (as art-edge always wrote them); several: the totals at the top level; per
    camera under `cameras` in both."""
    seconds = snap.processing_seconds  # the FPS: frames over processing time, not shutdown
    cams = {c.name: camera_summary(c, events.get(c.name, 0)) for c in snap.cameras}
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
        seconds=round(snap.seconds, 2),
        processing_seconds=round(seconds, 2),
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
        summary.update(clips=list(snap.clips), clips_written=len(snap.clips),
                       clips_dropped=snap.clips_dropped)  # fmt: skip
    summary["outputs"] = {o.name: {**o.counts, "status": o.status} for o in snap.outputs}
    return summary
