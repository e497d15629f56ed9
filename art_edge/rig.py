"""Several cameras in one process: one engine, one encoder batch for all of them.

    rig = Rig(engine, [CameraSpec("pool", source), CameraSpec("board", source2, roi)], config)
    summary = rig.run(stop)          # until every camera ended, `stop` is set, or max frames

Each camera keeps its own capture thread (newest-frame policy, reconnect), frame ring, decision
smoothing, segments and clip history. The encoder, on the caller's thread, takes whatever frames
arrived from all cameras since its last run (a stride's worth per camera at most) and encodes
them as one batch, as DeepStream batches streams; the clip heads of the cameras due for a
decision run as one batch too, on one head thread (art_edge.pipeline.HeadThread). A camera that
stalls, reconnects or ends contributes nothing to a batch and holds nobody back.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from art_edge.clips import ClipRecorder, ClipWriter
from art_edge.config import RigConfig
from art_edge.errors import UserError, warn
from art_edge.observers import Observers, RigObserver
from art_edge.pipeline import FrameReader, HeadThread, InlineHead, InlineReader
from art_edge.report import CameraSnapshot, RateMeter, RigSnapshot, RunStats
from art_edge.segments import SegmentTracker
from art_edge.streaming import StreamingClassifier

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class CameraSpec:
    name: str
    source: object  # a VideoSource, not yet opened
    roi: object = None  # art_edge.roi.Roi


def parse_source_specs(values: list[str]) -> list[tuple[str, str]]:
    """`--source` values → (name, URI): NAME=URI, or a bare URI named cam0, cam1, … by position."""
    specs = []
    for i, value in enumerate(values):
        name, sep, uri = value.partition("=")
        if not sep or not NAME.match(name):  # a URI's own '=' (a query) is not a name
            name, uri = f"cam{i}", value
        if not uri:
            raise UserError(f"--source {value!r}: give NAME=URI or a URI")
        specs.append((name, uri))
    names = [n for n, _ in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(
            f"--source: camera name {', '.join(duplicates)} given twice; name each camera once "
            "(NAME=URI)"
        )
    return specs


class Camera:
    """One camera's part of the rig: reader, classifier, head, counters, segments and clips."""

    def __init__(self, spec: CameraSpec, rig):
        config, engine = rig.config, rig.engine
        self.name, self.source, self.roi, self.rig = spec.name, spec.source, spec.roi, rig
        self.observers = rig.observers
        self.clf = StreamingClassifier(engine, config.stream)
        self.stats = RunStats()
        self.taken = 0  # frames taken for encoding (some may still be in flight)
        self.clips = self.segments = None
        self.decision = self.last_frame = self.ended = None
        self.rate, self.last_frame_at = RateMeter(), time.monotonic()
        live = getattr(self.source, "live", False)
        if config.threaded:
            self.reader = FrameReader(
                self.source,
                engine.preprocessing,
                config.stream.stride,
                spec.roi,
                rig.ready,
                self._on_read,
            )
            self.head = rig.heads.lane(self.clf, self.on_decision, live)
        else:
            self.reader = InlineReader(self.source, engine.preprocessing, spec.roi, self._on_read)
            self.head = InlineHead(self.clf, self.on_decision)

    def open(self):
        """Open the source; then its segments and clip history, which need its frame rate."""
        rig = self.rig
        segment, clip = rig.config.segment, rig.config.clip
        self.source.open()
        fps = self.source.fps
        if segment.path or rig.clip_writer:
            self.segments = SegmentTracker(
                self.name, rig.classes, fps, segment.min_score, segment.min_duration
            )
        if rig.clip_writer:
            self.clips = ClipRecorder(
                self.name,
                rig.classes,
                fps,
                rig.clip_writer,
                clip.pre,
                clip.post,
                clip.history,
                clip.raw,
                self.roi,
            )
        self.reader.start()
        self.head.start()

    def _on_read(self, frame):
        """The capture thread's side: the frame's time, and the clip history."""
        self.last_frame_at = time.monotonic()
        if self.clips is not None:
            self.clips.add_frame(frame)

    def on_decision(self, d, end: bool):
        """The head thread's side: events, segments, counters, and a clip's score at its end."""
        if d is not None:
            self.stats.decisions += 1
            self.stats.decision_latency.add(d.latency_ms)
            self.stats.head_ms.add(d.head_ms)
            if self.clips is not None:
                self.clips.add_decision(d)
            self.observers.on_decision(self.name, d)
            if self.segments is not None:
                for segment in self.segments.update(d):
                    self.finish_segment(segment)
        if end:
            self.stats.score_clip(d or self.decision)
            self.decision = None
        elif d is not None:
            self.decision = d

    def finish_segment(self, segment):
        record = segment.to_dict()
        if self.clips is not None:
            record["clip"] = self.clips.add_segment(segment)
        self.rig.segment_records.append(record)
        self.observers.on_segment(self.name, record)

    def on_frame(self, frame, encoded, encode_ms: float) -> bool:
        """One encoded frame (`encode_ms`: its share of the batch it was encoded in), on the
        encoding thread: into the window, a decision job when one is due, the observers; → False
        when one of them ends the run (the user closed the display)."""
        stats, last = self.stats, self.last_frame
        if last is not None and frame.segment != last.segment:  # a clip ended
            self.head.submit(self.clf.end_job(last), end=True)
        if self.clf.add(frame, encoded):
            self.head.submit(self.clf.job(frame))
        stats.frames += 1
        stats.frame_latency.add(self.clf.frame_latency_ms)
        stats.encode_ms.add(encode_ms)
        self.rate.tick(time.monotonic())
        self.last_frame = frame
        return self.observers.on_frame(self.name, frame)

    def finish(self):
        """The decision in flight, the last one on the window, the open segment and its clip."""
        self.head.submit(self.clf.end_job(self.last_frame), end=self.last_frame is not None)
        self.head.drain()
        if self.segments is not None:
            for segment in self.segments.close():
                self.finish_segment(segment)
        if self.clips is not None:
            self.clips.flush()

    def snapshot(self) -> CameraSnapshot:
        stats, source, ended = self.stats, self.source, self.ended or (None, None)
        current = self.segments.current if self.segments is not None else None
        return CameraSnapshot(
            name=self.name,
            status=source.status,
            frames=stats.frames,
            decisions=stats.decisions,
            dropped=source.dropped + self.reader.dropped,
            decisions_skipped=self.head.skipped,
            corrupt=source.corrupt,
            truncated=source.truncated,
            reconnects=source.reconnects,
            fps=self.rate.fps,
            frame_latency_ms=(
                stats.frame_latency.percentile(50),
                stats.frame_latency.percentile(95),
            ),
            decision_latency_ms=(
                stats.decision_latency.percentile(50),
                stats.decision_latency.percentile(95),
            ),
            encode_ms_p50=stats.encode_ms.percentile(50),
            head_ms_p50=stats.head_ms.percentile(50),
            clips_scored=stats.clips_scored,
            clips_correct=stats.clips_correct,
            idle_s=time.monotonic() - self.last_frame_at,
            ended=ended[0],
            error=ended[1],
            decision=self.decision,
            last_frame=self.last_frame,
            roi=self.roi,
            open_segment=None if current is None else current.progress(),
        )

    def close(self, failures: list):
        for closable in (self.reader, self.head, self.source):
            try:
                closable.close()
            except Exception as e:  # noqa: BLE001 (each part is closed whatever the others did)
                failures.append(e)


class Rig:
    """The cameras, their shared encoder batch and head thread, the clip writer they share, and
    the observers the front doors registered (art_edge.observers): the outputs."""

    def __init__(self, engine, specs: list[CameraSpec], config: RigConfig):
        window = config.stream.window
        if window and window < engine.num_frames:
            raise UserError(
                f"--window {window} is smaller than the T = {engine.num_frames} frames a decision "
                f"samples; use --window ≥ {engine.num_frames} (or 0: 4·T)"
            )
        self.engine, self.config, self.classes = engine, config, engine.classes
        self.observers = Observers()
        self.ready = threading.Event()  # set by any reader that queued a frame
        # the clip heads of all cameras on one thread, the jobs due together in one batch
        self.heads = HeadThread() if config.threaded else None
        self.clip_writer = None
        self.segment_records: list = []
        self.started = self.stopped = None  # the run's start and end (time.monotonic())
        self.outcome: tuple | None = None  # (how the run ended, why when a source failed)
        self.batches = self.max_batch = 0  # encoder runs (frames / batches: the mean batch)
        # encoder batches not handed on yet: [(camera, frame) pairs, PendingEncode]
        self.in_flight: deque = deque()
        self.cameras = [Camera(spec, self) for spec in specs]
        self._finished: set = set()

    def observe(self, observer: RigObserver) -> RigObserver:
        """Register an output; → it. The rig closes it when the run ends."""
        return self.observers.add(observer)

    def open(self):
        if self.config.clip.folder:
            self.clip_writer = ClipWriter(self.config.clip.folder)
        if self.heads is not None:
            self.heads.start()
        for cam in self.cameras:
            cam.open()

    def step(self, stop: threading.Event) -> tuple[str, str | None] | None:
        """Encode the frames that are ready on every camera as one batch; → how the run ended
        (and the error, when a camera's source failed), or None to go on."""
        if stop.is_set():
            return "interrupted", None
        active = [c for c in self.cameras if c.ended is None]
        if not active:
            return self._outcome()
        self.ready.clear()
        batch, ends = self._take(active)
        if batch:
            self.batches += 1
            self.max_batch = max(self.max_batch, len(batch))
            pending = self.engine.submit_encode(np.stack([image for _, _, image in batch]))
            self.in_flight.append(([(cam, frame) for cam, frame, _ in batch], pending))
        # Hand on the earlier batches while this one encodes on the encoder workers (they go
        # straight on to it, no pause between batches); all of them before a camera ends.
        keep = 1 if batch and not ends and self.in_flight[-1][1].asynchronous else 0
        while len(self.in_flight) > keep:
            if not self._hand_on(*self.in_flight.popleft()):
                return "closed by user", None
        for cam, end in ends:
            cam.ended = end
            self._finish(cam)
            if end[1] and len(self.cameras) > 1:  # one camera: its error ends the run, said once
                warn(f"camera {cam.name}: {end[1]}")
        if not batch and not ends and self.config.threaded:
            self.ready.wait(0.5)
        return None

    def _hand_on(self, frames: list, pending) -> bool:
        """An encoded batch to its cameras; → False when the user closed the display."""
        patches, tokens = pending.result()
        encode_ms = 1000 * pending.seconds / len(frames)  # each frame's share of the batch
        for (cam, frame), encoded in zip(frames, zip(patches, tokens)):
            if not cam.on_frame(frame, encoded, encode_ms):
                return False
        return True

    def _take(self, active: list) -> tuple[list, list]:
        """The ready frames of each active camera (a stride's worth at most) and the cameras that
        ended; a camera past --max-frames ends here."""
        config, batch, ends = self.config, [], []
        stride = config.stream.stride
        # one thread (--no-threads): each camera's read waits a little, in turn
        timeout = 0.0 if config.threaded else 0.5 / len(active)
        for cam in active:
            left = config.max_frames - cam.taken if config.max_frames else stride
            if left <= 0:
                ends.append((cam, ("max frames", None)))
                continue
            items, end = cam.reader.take(min(left, stride), timeout=timeout)
            cam.taken += len(items)
            batch += [(cam, frame, image) for frame, image in items]
            if end is not None:
                ends.append((cam, (end.ended, end.error)))
        return batch, ends

    def _outcome(self) -> tuple[str, str | None]:
        if len(self.cameras) == 1:
            return self.cameras[0].ended
        failed = [f"camera {c.name}: {c.ended[1]}" for c in self.cameras if c.ended[1]]
        return ("sources ended", "; ".join(failed) or None)

    def _finish(self, cam: Camera):
        if cam.name not in self._finished:
            self._finished.add(cam.name)
            cam.finish()

    def finish(self):
        while self.in_flight:  # frames encoded before a stop still count
            self._hand_on(*self.in_flight.popleft())
        for cam in self.cameras:
            self._finish(cam)

    def close(self):
        """Stop the threads, then close everything, even when one close fails; a failure here
        never hides the error that ended the run (it is reported as itself when nothing else
        went wrong)."""
        failures: list = []
        for cam in self.cameras:
            cam.close(failures)
        for closable in (self.heads, self.clip_writer):
            try:
                if closable is not None:
                    closable.close()
            except Exception as e:  # noqa: BLE001 (each part is closed whatever the others did)
                failures.append(e)
        self.observers.close(failures)
        if failures and sys.exc_info()[1] is None:
            raise failures[0]

    def run(self, stop: threading.Event | None = None) -> RigSnapshot:
        """Run until every camera ended, `stop` is set or max frames, then close the cameras and
        the observers; → the last snapshot, which says how the run ended."""
        stop = stop or threading.Event()
        self.started, outcome = time.monotonic(), None
        try:
            self.open()
            while outcome is None:
                outcome = self.step(stop)
            self.finish()
        except KeyboardInterrupt:
            outcome = ("interrupted", None)
            self.finish()
        finally:
            self.outcome = outcome or ("interrupted", None)
            self.close()
        self.stopped = time.monotonic()  # the seconds of the run include closing its outputs
        return self.snapshot()

    def snapshot(self) -> RigSnapshot:
        """The rig now, for its readers (art_edge.report)."""
        heads, writer, (ended, error) = self.heads, self.clip_writer, self.outcome or (None, None)
        now = self.stopped or time.monotonic()
        return RigSnapshot(
            cameras=tuple(cam.snapshot() for cam in self.cameras),
            classes=tuple(self.classes),
            seconds=now - self.started if self.started is not None else 0.0,
            segments=tuple(self.segment_records),
            clips=tuple(writer.written) if writer is not None else None,
            clips_dropped=writer.dropped if writer is not None else 0,
            batches=self.batches,
            max_batch=self.max_batch,
            encoder_workers=self.engine.encoder_workers,
            head_batches=heads.batches if heads is not None else None,
            head_jobs=heads.jobs if heads is not None else 0,
            max_head_batch=heads.max_jobs if heads is not None else 0,
            ended=ended,
            error=error,
        )
