"""A camera of the rig: its source, capture thread, frame window, head lane, counters, segments
and clip history.

    specs = [CameraSpec(name, open_source(uri), roi) for name, uri in parse_source_specs(values)]

The rig (art_edge.rig.loop) makes a Camera of each spec; the camera hands its decisions and
segments to the rig's observers, and says what it is doing in a snapshot (art_edge.rig.report).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from art_edge.errors import UserError, warn
from art_edge.rig.clips import ClipRecorder
from art_edge.rig.lanes import TrackLanes
from art_edge.rig.pipeline import FrameReader, InlineHead, InlineReader
from art_edge.rig.report import CameraSnapshot, RateMeter, RunStats
from art_edge.rig.segments import SegmentTracker
from art_edge.runtime.streaming import StreamingClassifier
from art_edge.video.detect import open_detector
from art_edge.video.tracks import Tubelets

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class CameraSpec:
    name: str
    source: object  # a VideoSource, not yet opened
    roi: object = None  # art_edge.video.roi.Roi
    track: str | None = None  # its detector (art_edge.video.detect): a lane for each track


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
        self.last_decision_at: float | None = None
        self.ended_at: float | None = None  # when it ended (its processing time stops there)
        self.away_since: float | None = None  # when it went away (said once, and when back)
        self.opens = 0  # its source's opens when it went away
        self._trackers = threading.Lock()
        live = getattr(self.source, "live", False)
        self.tubelets = self.lanes = None
        if spec.track:
            t = config.tracking
            self.tubelets = Tubelets(
                open_detector(spec.track, t.every), t.every, t.max_tracks, t.pad
            )
            self.lanes = TrackLanes(self)
        if config.threaded:
            self.reader = FrameReader(self.source, engine.preprocessing, config.stream.stride,
                                      spec.roi, rig.ready, self._on_read, f"camera {self.name}",
                                      self.tubelets)  # fmt: skip
            self.head = rig.heads.lane(self.clf, self.on_decision, live)
        else:
            self.reader = InlineReader(self.source, engine.preprocessing, spec.roi, self._on_read,
                                       self.tubelets)  # fmt: skip
            self.head = InlineHead(self.clf, self.on_decision)

    def open(self):
        """Open the source (a camera or stream goes on opening on its own thread) and start its
        threads; its segments and clip history start with its first frame (they need its frame
        rate), or now where the source knows it already."""
        self.source.open()
        if self.source.fps:
            self._start_trackers()
        self.reader.start()
        self.head.start()

    def _start_trackers(self):
        rig = self.rig
        segment, clip = rig.config.segment, rig.config.clip
        with self._trackers:
            if self.segments is not None or not (segment.path or rig.clip_writer):
                return
            fps = self.source.fps
            if rig.clip_writer:
                self.clips = ClipRecorder(self.name, rig.classes, fps, rig.clip_writer, clip.pre,
                                          clip.post, clip.history, clip.raw, self.roi)  # fmt: skip
            self.segments = SegmentTracker(
                self.name, rig.classes, fps, segment.min_score, segment.min_duration
            )

    def _on_read(self, frame):
        """The capture thread's side: the frame's time, and the clip history."""
        self.last_frame_at = time.monotonic()
        if self.segments is None:
            self._start_trackers()
        if self.clips is not None:
            self.clips.add_frame(frame)

    def on_decision(self, d, end: bool):
        """The head thread's side: events, segments, counters, and a clip's score at its end."""
        if d is not None:
            self._decided(d)
            if self.segments is not None:
                for segment in self.segments.update(d):
                    self.finish_segment(segment)
        if end:
            self.stats.score_clip(d or self.decision)
            self.decision = None
        elif d is not None:
            self.decision = d

    def _decided(self, d):
        """A decision of this camera's (or of one of its tracks'): counted, timed, drawn into the
        clip in the making, and given to the outputs."""
        self.last_decision_at = time.monotonic()
        self.stats.decisions += 1
        self.stats.decision_latency.add(d.latency_ms)
        self.stats.head_ms.add(d.head_ms)
        if self.clips is not None:
            self.clips.add_decision(d)
        self.observers.on_decision(self.name, d)

    def on_track_decision(self, lane, d):
        """A track's decision (its lane's head, on the head thread): counters, events, the
        track's segments."""
        self._decided(d)
        self.decision = d
        for segment in lane.segments.update(d) if lane.segments is not None else ():
            self.finish_segment(segment, lane)

    def finish_segment(self, segment, lane=None):
        """A segment that ended: its record goes out now, or, with clips, once its clip exists
        (or is dropped: the record says why). A track's names the track and its last box."""
        record = segment.to_dict()
        if lane is not None:
            record.update(track=lane.id, box=lane.box)
        if self.clips is not None:
            self.clips.add_segment(segment, record, self.publish_segment)
        else:
            self.publish_segment(record)

    def publish_segment(self, record: dict):
        self.rig.segment_records.append(record)
        self.observers.on_segment(self.name, record)

    def on_frame(self, frame, encoded, encode_ms: float) -> bool:
        """One encoded frame (`encode_ms`: its share of the batch it was encoded in), on the
        encoding thread: into the window, a decision job when one is due, the observers; → False
        when one of them ends the run (the user closed the display)."""
        stats, last = self.stats, self.last_frame
        if self.lanes is not None:  # encoded: each track's crop
            self.lanes.on_frame(frame, encoded)
            latency = 1000 * (time.monotonic() - frame.timestamp)
        else:
            if last is not None and frame.segment != last.segment:  # a clip ended
                self.head.submit(self.clf.end_job(last), end=True)
            if self.clf.add(frame, encoded):
                self.head.submit(self.clf.job(frame))
            latency = self.clf.frame_latency_ms
        stats.frames += 1
        stats.frame_latency.add(latency)
        stats.encode_ms.add(encode_ms)
        self.rate.tick(time.monotonic())
        self.last_frame = frame
        return self.observers.on_frame(self.name, frame)

    def watch(self, now: float):
        """The rig's loop, a few times a second: one warning when the camera goes away (it
        cannot be opened, or it was lost), one line when it is back (it opened again, however
        briefly)."""
        status, opens = self.source.status, getattr(self.source, "opens", None)
        away = status.startswith(("connecting", "reconnecting"))
        if self.away_since is not None and (not away if opens is None else opens > self.opens):
            warn(f"camera {self.name}: back after {now - self.away_since:.0f} s")
            self.away_since = None
        if away and self.away_since is None and self.ended is None:
            self.away_since, self.opens = now, opens
            problem = getattr(self.source, "problem", None) or status
            warn(f"camera {self.name}: {problem}; retrying until it is back (the rig goes on)")

    def finish(self, timeout: float = 60.0):
        """The decision in flight, the last one on the window, the open segment and its clip."""
        if self.lanes is not None:
            self.lanes.finish(timeout)
        self.head.submit(self.clf.end_job(self.last_frame), end=self.last_frame is not None)
        self.head.drain(timeout)
        if self.segments is not None:
            for segment in self.segments.close():
                self.finish_segment(segment)
        if self.clips is not None:
            self.clips.flush()

    def snapshot(self) -> CameraSnapshot:
        stats, source, ended = self.stats, self.source, self.ended or (None, None)
        current = self.segments.current if self.segments is not None else None
        now, started = time.monotonic(), self.rig.started or time.monotonic()
        return CameraSnapshot(
            name=self.name,
            status=source.status,
            frames=stats.frames,
            decisions=stats.decisions,
            dropped=source.dropped + self.reader.dropped,
            decisions_skipped=self.head.skipped + (self.lanes.skipped() if self.lanes else 0),
            corrupt=source.corrupt,
            truncated=source.truncated,
            reconnects=source.reconnects,
            fps=self.rate.fps_at(now),
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
            idle_s=now - self.last_frame_at,
            ended=ended[0],
            error=ended[1],
            decision=self.decision,
            last_frame=self.last_frame,
            roi=self.roi,
            open_segment=None if current is None else current.progress(),
            since_decision_s=now - (self.last_decision_at or started),
            seconds=(self.ended_at or self.rig.processing_end() or now) - started,
            restarts=getattr(self.reader, "restarts", 0) + getattr(source, "failures", 0),
            problem=getattr(source, "problem", None),
            tracks=None if self.lanes is None else self.lanes.snapshot(),
            tracks_left_out=0 if self.tubelets is None else self.tubelets.over_limit,
            tracks_served=0 if self.lanes is None else self.lanes.born,
        )

    def close(self, failures: list):
        for closable in (self.reader, self.head, self.source):
            try:
                closable.close()
            except Exception as e:  # noqa: BLE001 (each part is closed whatever the others did)
                failures.append(e)
