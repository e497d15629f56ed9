"""art-edge: the real-time pipeline — a source, the engine, decisions, overlays, events.

    art-edge --engine engines/tiny --camera 0 --output display
    art-edge --engine engines/tiny --video match.mp4 --output out.mp4 --events events.jsonl
    art-edge --engine engines/tiny --source rtsp://cam/stream --headless --events events.jsonl

Ctrl-C (SIGINT) or SIGTERM stops capture, finishes the decision in flight, flushes the events and
finalizes the video so it plays. A file or LIST that ends does the same and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from art_edge.errors import UserError, cli_entry
from art_edge.sources import EndOfStream, open_source
from art_edge.streaming import LatencyLog, StreamConfig, StreamingClassifier


@dataclass
class EdgeOptions:
    stream: StreamConfig = field(default_factory=StreamConfig)
    output: str | None = None  # a .mp4/.avi path or "display"
    events: str | None = None  # events.jsonl
    emit: str = (
        "change"  # "change": an event when the decided label changes; "decision": every decision
    )
    headless: bool = False  # draw nothing
    max_frames: int = 0  # stop after this many frames (0: until the source ends)
    status: bool = True  # the one-line live status on the terminal


@dataclass
class RunStats:
    frames: int = 0
    decisions: int = 0
    events: int = 0
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


class _Run:
    """One art-edge run: the source, the classifier, the outputs and the counters, frame by frame."""

    def __init__(self, engine, source, opts: EdgeOptions):
        from art_edge.outputs import StatusLine

        if opts.emit not in ("change", "decision"):
            raise UserError(f"--emit {opts.emit!r}: use change or decision")
        self.source, self.opts, self.classes = source, opts, engine.classes
        self.clf = StreamingClassifier(engine, opts.stream)
        self.stats = RunStats()
        self.output = self.events = None
        self.status = StatusLine() if opts.status else None
        self.fps_ema, self.last_t, self.decision, self.last_frame = 0.0, None, None, None

    def open(self):
        from art_edge.outputs import EventLog, open_output

        self.source.open()
        opts = self.opts
        if opts.output and not opts.headless:
            self.output = open_output(opts.output, self.source.fps)
        if opts.events:
            self.events = EventLog(opts.events, self.classes)

    def emit(self, d):
        if d is None:
            return
        self.stats.decisions += 1
        self.stats.decision_latency.add(d.latency_ms)
        self.stats.head_ms.add(d.head_ms)
        if self.events and (self.opts.emit == "decision" or d.changed):
            self.events.write(d)
            self.stats.events += 1

    def on_frame(self, frame) -> bool:
        """Push one frame through; → False when the user closed the display."""
        stats, last = self.stats, self.last_frame
        if last is not None and frame.segment != last.segment:  # a clip ended
            end = self.clf.flush(last)
            self.emit(end)
            stats.score_clip(end or self.decision)
            self.decision = None
        new = self.clf.push(frame)
        stats.frames += 1
        stats.frame_latency.add(self.clf.frame_latency_ms)
        stats.encode_ms.add(self.clf.encode_ms)
        if new is not None:
            self.emit(new)
            self.decision = new
        self._tick(frame)
        if self.output is not None:
            from art_edge.overlay import draw_overlay

            p50 = stats.decision_latency.percentile(50)
            self.output.write(
                draw_overlay(frame.image, self.decision, self.classes, self.fps_ema, p50)
            )
            if getattr(self.output, "closed_by_user", False):
                return False
        if self.status:
            self.status.update(
                _status_text(self.source, self.decision, self.classes, self.fps_ema, stats)
            )
        return True

    def _tick(self, frame):
        now = time.monotonic()
        if self.last_t is not None:
            rate = 1 / max(now - self.last_t, 1e-6)
            self.fps_ema = 0.9 * self.fps_ema + 0.1 * rate if self.fps_ema else rate
        self.last_t, self.last_frame = now, frame

    def finish(self):
        """The decision in flight: the window as it stands."""
        end = self.clf.flush(self.last_frame)
        self.emit(end)
        if self.last_frame is not None and self.last_frame.label is not None:
            self.stats.score_clip(end or self.decision)

    def close(self):
        for closable in (self.source, self.output, self.events, self.status):
            if closable is not None:
                closable.close()


def run_edge(engine, source, opts: EdgeOptions, stop: threading.Event | None = None) -> dict:
    """Run until the source ends, `stop` is set or max_frames; → the summary."""
    stop = stop or threading.Event()
    run, started = _Run(engine, source, opts), time.monotonic()
    try:
        run.open()
        while not stop.is_set() and not (opts.max_frames and run.stats.frames >= opts.max_frames):
            try:
                frame = source.capture(timeout=1.0)
            except EndOfStream:
                break
            if frame is None:  # a live source with nothing new yet (or reconnecting)
                if run.status:
                    run.status.update(f"waiting for frames: {source.status}", force=True)
                continue
            if not run.on_frame(frame):
                break
        run.finish()
    finally:
        run.close()
    return _summary(run.stats, source, time.monotonic() - started, opts)


def _status_text(source, decision, classes, fps, stats) -> str:
    label = (
        f"{classes[decision.label]} {decision.score:.2f}" if decision else "(filling the window)"
    )
    p50 = stats.decision_latency.percentile(50)
    text = (
        f"{label:<32} {fps:5.1f} FPS  decision {p50 or 0:5.0f} ms  frames {stats.frames}  "
        f"dropped {source.dropped}"
    )
    if source.status not in ("live", "reading", "rendering"):
        text += f"  [{source.status}]"
    return text


def _summary(stats: RunStats, source, seconds: float, opts: EdgeOptions) -> dict:
    r = lambda v: None if v is None else round(v, 2)  # noqa: E731
    summary = {
        "frames": stats.frames,
        "decisions": stats.decisions,
        "events": stats.events,
        "seconds": round(seconds, 2),
        "fps": round(stats.frames / seconds, 2) if seconds > 0 else 0.0,
        "frame_latency_ms": {
            "p50": r(stats.frame_latency.percentile(50)),
            "p95": r(stats.frame_latency.percentile(95)),
        },
        "decision_latency_ms": {
            "p50": r(stats.decision_latency.percentile(50)),
            "p95": r(stats.decision_latency.percentile(95)),
        },
        "encode_ms_p50": r(stats.encode_ms.percentile(50)),
        "head_ms_p50": r(stats.head_ms.percentile(50)),
        "dropped": source.dropped,
        "corrupt": source.corrupt,
        "reconnects": source.reconnects,
        "output": opts.output if not opts.headless else None,
        "events_path": opts.events,
    }
    if stats.clips_scored:
        summary.update(
            clips_scored=stats.clips_scored,
            clip_top1=round(stats.clips_correct / stats.clips_scored, 4),
        )
    return summary


def print_summary(summary: dict, out=sys.stdout):
    fl, dl = summary["frame_latency_ms"], summary["decision_latency_ms"]
    print(
        f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['fps']:.1f} FPS; "
        f"frame latency p50 {fl['p50']} ms p95 {fl['p95']} ms; decision latency p50 {dl['p50']} ms "
        f"p95 {dl['p95']} ms; {summary['decisions']} decisions, dropped {summary['dropped']}, "
        f"corrupt {summary['corrupt']}, reconnects {summary['reconnects']}",
        file=out,
    )
    if "clip_top1" in summary:
        print(
            f"clips scored against their labels: {summary['clips_scored']}, top-1 {summary['clip_top1']:.3f}",
            file=out,
        )
    if summary.get("output"):
        print(f"annotated video: {summary['output']}", file=out)
    if summary.get("events_path"):
        print(f"events: {summary['events_path']} ({summary['events']} events)", file=out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Real-time fine-grained action recognition from a camera, file or stream."
    )
    ap.add_argument("--engine", required=True, help="engine dir written by art-build-engine")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--camera",
        help="camera index N: opens V4L2 /dev/videoN (a USB camera); for a Jetson CSI camera use --source csi://N",
    )
    src.add_argument("--video", help="a video file")
    src.add_argument(
        "--source",
        help="URI: /dev/videoN, rtsp://, http(s)://, csi://N, a GStreamer pipeline, "
        "synthetic://?frames=32&size=96, or a LIST .csv played clip after clip",
    )
    ap.add_argument("--output", help="annotated video (.mp4/.avi) or 'display'")
    ap.add_argument("--events", help="events JSONL, one decision a line, flushed as written")
    ap.add_argument("--headless", action="store_true", help="draw nothing")
    ap.add_argument(
        "--backend",
        default="onnxruntime",
        choices=["onnxruntime", "tensorrt"],
        help="the runtime of the engine dir (tensorrt: engines built on this device)",
    )
    ap.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    add_stream_flags(ap)
    ap.add_argument("--max-frames", type=int, default=0, help="stop after N frames")
    ap.add_argument("--root", help="folder for relative paths in a LIST source")
    ap.add_argument("--summary", help="write the run summary JSON here")
    return ap


def add_stream_flags(ap):
    """How decisions are made from the stream, and how the source is read."""
    ap.add_argument(
        "--window",
        type=int,
        default=0,
        help="frames buffered; T are sampled from them (default 4·T)",
    )
    ap.add_argument("--stride", type=int, default=4, help="frames between decisions")
    ap.add_argument(
        "--smoothing",
        type=float,
        default=0.5,
        help="moving-average weight of past probabilities (0: off)",
    )
    ap.add_argument(
        "--hysteresis",
        type=float,
        default=0.1,
        help="lead another class needs to take over the label",
    )
    ap.add_argument(
        "--emit", default="change", choices=["change", "decision"], help="when to write an event"
    )
    ap.add_argument(
        "--realtime", action="store_true", help="play a file at its own frame rate (drop when slow)"
    )
    ap.add_argument(
        "--reconnect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying a lost camera",
    )


def quiet_opencv():
    """OpenCV logs its own warnings when a device or file fails to open; we say what failed in one
    line instead. OPENCV_LOG_LEVEL in the environment still wins, for debugging."""
    import os

    import cv2

    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET


@cli_entry
def main(argv=None):
    import json

    from art_edge.engine import ARTEngine

    a = build_parser().parse_args(argv)
    quiet_opencv()
    if a.headless and a.output:
        raise UserError("--headless draws nothing: drop --output, or drop --headless")
    if a.stride < 1 or a.window < 0 or not 0 <= a.smoothing < 1:
        raise UserError("--stride must be ≥ 1, --window ≥ 0, --smoothing in [0, 1)")
    engine = ARTEngine.load(a.engine, backend=a.backend, threads=a.threads)
    uri = a.camera if a.camera is not None else a.video if a.video is not None else a.source
    if a.video is not None and not a.video.lower().endswith(".csv"):
        from pathlib import Path

        if not Path(a.video).is_file():
            raise UserError(f"video file not found: {a.video}")
    source = open_source(
        uri,
        realtime=a.realtime,
        reconnect_timeout=a.reconnect_timeout,
        classes=engine.classes,
        root=a.root,
    )
    opts = EdgeOptions(
        StreamConfig(
            window=a.window, stride=a.stride, smoothing=a.smoothing, hysteresis=a.hysteresis
        ),
        output=a.output,
        events=a.events,
        emit=a.emit,
        headless=a.headless,
        max_frames=a.max_frames,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(
            sig, lambda *_: stop.set()
        )  # finish the frame in flight, then shut down cleanly
    with engine:
        summary = run_edge(engine, source, opts, stop)
    print_summary(summary)
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
