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
from pathlib import Path

import numpy as np

from art_edge.errors import (
    ArgumentParser,
    UserError,
    cli_entry,
    fraction,
    non_negative_float,
    non_negative_int,
    number,
    positive_int,
)
from art_edge.files import atomic_write_text, check_writable
from art_edge.sources import open_source
from art_edge.streaming import LatencyLog, StreamConfig, StreamingClassifier

smoothing = number(float, 0.0, 0.999, what="a number in [0, 1)")
# The clip head's inference threads when it runs on a thread of its own beside the encoder: the
# head's graphs are small, and a second thread of theirs takes a core from the encoder rather than
# speeding them up (art-edge-s INT8 on 2 cores: 0.85 → 0.89 of the encoder-only bound, docs/benchmarks.md).
HEAD_THREADS_THREADED = 1


@dataclass
class EdgeOptions:
    stream: StreamConfig = field(default_factory=StreamConfig)
    output: str | None = None  # a .mp4/.avi path or "display"
    events: str | None = None  # events.jsonl
    # "change": an event when the decided label changes; "decision": every decision
    emit: str = "change"
    headless: bool = False  # draw nothing
    max_frames: int = 0  # stop after this many frames (0: until the source ends)
    status: bool = True  # the one-line live status on the terminal
    # reading, encoding and the head on threads of their own (False: all in one, as a baseline)
    threaded: bool = True


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
    """One art-edge run: the source, the classifier, the outputs and the counters. Frames are
    read and preprocessed on the reader's thread, encoded and drawn on the caller's, decided on
    the head's (art_edge.pipeline): a decision never stalls encoding."""

    def __init__(self, engine, source, opts: EdgeOptions):
        from art_edge.outputs import StatusLine
        from art_edge.pipeline import FrameReader, HeadWorker, InlineHead, InlineReader

        if opts.emit not in ("change", "decision"):
            raise UserError(f"--emit {opts.emit!r}: use change or decision")
        self.source, self.opts, self.classes = source, opts, engine.classes
        self.clf = StreamingClassifier(engine, opts.stream)
        live = getattr(source, "live", False)
        if opts.threaded:
            self.reader = FrameReader(source, engine.preprocessing, bound=opts.stream.stride)
            self.head = HeadWorker(self.clf, self.on_decision, live)
        else:
            self.reader = InlineReader(source, engine.preprocessing)
            self.head = InlineHead(self.clf, self.on_decision)
        self.stats = RunStats()
        self.output = self.events = None
        self.status = StatusLine() if opts.status else None
        self.fps_ema, self.last_t, self.last_frame = 0.0, None, None
        self.decision = None  # the latest decision: written by the head thread, drawn by this one

    def open(self):
        from art_edge.outputs import EventLog, open_output

        self.source.open()
        opts = self.opts
        if opts.output and not opts.headless:
            self.output = open_output(opts.output, self.source.fps)
        if opts.events:
            self.events = EventLog(opts.events, self.classes)
        self.reader.start()
        self.head.start()

    def on_decision(self, d, end: bool):
        """The head thread's side: events, decision counters, and a clip's score at its end."""
        if d is not None:
            self.stats.decisions += 1
            self.stats.decision_latency.add(d.latency_ms)
            self.stats.head_ms.add(d.head_ms)
            if self.events and (self.opts.emit == "decision" or d.changed):
                self.events.write(d)
                self.stats.events += 1
        if end:
            self.stats.score_clip(d or self.decision)
            self.decision = None
        elif d is not None:
            self.decision = d

    def on_frame(self, frame, encoded) -> bool:
        """One encoded frame, on the encoding thread: into the window, a decision job when one is
        due, the overlay; → False when the user closed the display."""
        stats, last = self.stats, self.last_frame
        if last is not None and frame.segment != last.segment:  # a clip ended
            self.head.submit(self.clf.end_job(last), end=True)
        if self.clf.add(frame, encoded):
            self.head.submit(self.clf.job(frame))
        stats.frames += 1
        stats.frame_latency.add(self.clf.frame_latency_ms)
        stats.encode_ms.add(self.clf.encode_ms)
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
            self.status.update(_status_text(self))
        return True

    def _tick(self, frame):
        now = time.monotonic()
        if self.last_t is not None:
            rate = 1 / max(now - self.last_t, 1e-6)
            self.fps_ema = 0.9 * self.fps_ema + 0.1 * rate if self.fps_ema else rate
        self.last_t, self.last_frame = now, frame

    def step(self, stop: threading.Event) -> tuple[str, str | None] | None:
        """Encode the frames that are ready (up to a stride's worth, as one batch); → (how the run
        ended, the error if the source failed), or None to go on."""
        opts = self.opts
        if stop.is_set():
            return "interrupted", None
        left = opts.max_frames - self.stats.frames if opts.max_frames else opts.stream.stride
        if left <= 0:
            return "max frames", None
        items, end = self.reader.take(min(left, opts.stream.stride), timeout=0.5)
        if items:
            encoded = self.clf.encode_images(np.stack([image for _, image in items]))
            for (frame, _), enc in zip(items, encoded):
                if not self.on_frame(frame, enc):
                    return "closed by user", None
        if end is not None:
            return end.ended, end.error
        if not items and self.status:  # a live source with nothing new yet (or reconnecting)
            self.status.update(f"waiting for frames: {self.source.status}", force=True)
        return None

    def finish(self):
        """The decision in flight, and the last one on the window as it stands."""
        self.head.submit(self.clf.end_job(self.last_frame), end=self.last_frame is not None)
        self.head.drain()

    def close(self):
        """Stop the threads, then close everything, even when one close fails; a failure here
        never hides the error that ended the run (it is reported as itself when nothing else
        went wrong)."""
        failures = []
        for closable in (
            self.reader,
            self.head,
            self.source,
            self.output,
            self.events,
            self.status,
        ):
            try:
                if closable is not None:
                    closable.close()
            except Exception as e:  # noqa: BLE001 (each output is closed whatever the others did)
                failures.append(e)
        if failures and sys.exc_info()[1] is None:
            raise failures[0]


def run_edge(engine, source, opts: EdgeOptions, stop: threading.Event | None = None) -> dict:
    """Run until the source ends, `stop` is set or max_frames; → the summary, whose `ended` says
    which ended it (and `error` why, when the source failed: a camera that did not come back)."""
    stop = stop or threading.Event()
    run, started, outcome = _Run(engine, source, opts), time.monotonic(), None
    try:
        run.open()
        while outcome is None:
            outcome = run.step(stop)
        run.finish()
    except KeyboardInterrupt:
        outcome = ("interrupted", None)
        run.finish()
    finally:
        run.close()
    ended, error = outcome or ("interrupted", None)
    summary = _summary(run, time.monotonic() - started, opts)
    summary.update(ended=ended, **({"error": error} if error else {}))
    if getattr(run.output, "frames", None) is not None:
        summary["video_frames"] = run.output.frames
    return summary


def _status_text(run: _Run) -> str:
    decision, source, stats = run.decision, run.source, run.stats
    label = (
        f"{run.classes[decision.label]} {decision.score:.2f}"
        if decision
        else "(filling the window)"
    )
    p50 = stats.decision_latency.percentile(50)
    text = (
        f"{label:<32} {run.fps_ema:5.1f} FPS  decision {p50 or 0:5.0f} ms  frames {stats.frames}  "
        f"dropped {source.dropped + run.reader.dropped}"
    )
    if source.status not in ("live", "reading", "rendering"):
        text += f"  [{source.status}]"
    return text


def _summary(run: _Run, seconds: float, opts: EdgeOptions) -> dict:
    r = lambda v: None if v is None else round(v, 2)  # noqa: E731
    stats, source = run.stats, run.source
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
        "dropped": source.dropped + run.reader.dropped,
        "decisions_skipped": run.head.skipped,
        "corrupt": source.corrupt,
        "truncated": source.truncated,
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
    if summary.get("output") and Path(summary["output"]).is_file():  # only what was written
        print(
            f"annotated video: {summary['output']} ({summary.get('video_frames', 0)} frames)",
            file=out,
        )
    if summary.get("events_path") and Path(summary["events_path"]).is_file():
        print(f"events: {summary['events_path']} ({summary['events']} events)", file=out)
    print(
        f"ended: {summary.get('ended', 'source ended')}"
        + (f" ({summary['error']})" if summary.get("error") else ""),
        file=out,
    )


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="art-edge",
        description="Real-time fine-grained action recognition from a camera, file or stream.",
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
    ap.add_argument(
        "--threads", type=positive_int, help="inference threads (default: the runtime's)"
    )
    ap.add_argument(
        "--head-threads",
        type=positive_int,
        help=f"the clip head's inference threads (default: {HEAD_THREADS_THREADED} beside the "
        "encoder's, --threads with --no-threads)",
    )
    add_stream_flags(ap)
    ap.add_argument(
        "--max-frames",
        type=non_negative_int,
        default=0,
        help="stop after N frames (0: until the source ends)",
    )
    ap.add_argument("--root", help="folder for relative paths in a LIST source")
    ap.add_argument("--summary", help="write the run summary JSON here")
    return ap


def add_stream_flags(ap):
    """How decisions are made from the stream, and how the source is read."""
    ap.add_argument(
        "--window",
        type=non_negative_int,
        default=0,
        help="frames buffered; T are sampled from them (default 4·T)",
    )
    ap.add_argument("--stride", type=positive_int, default=4, help="frames between decisions")
    ap.add_argument(
        "--smoothing",
        type=smoothing,
        default=0.5,
        help="moving-average weight of past probabilities (0: off)",
    )
    ap.add_argument(
        "--hysteresis",
        type=fraction,
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
        type=non_negative_float,
        default=30.0,
        help="seconds to keep retrying a lost camera",
    )
    ap.add_argument(
        "--no-threads",
        action="store_true",
        help="read, encode and decide in one thread (a decision then holds up the frames behind it)",
    )


def quiet_opencv():
    """OpenCV logs its own warnings when a device or file fails to open; we say what failed in one
    line instead. OPENCV_LOG_LEVEL in the environment still wins, for debugging."""
    import os

    import cv2

    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET


def _outputs_checked(a):
    """Every path the run will write, checked before anything starts."""
    if a.headless and a.output:
        raise UserError("--headless draws nothing: drop --output, or drop --headless")
    if a.output and a.output not in ("display", "display://"):
        if Path(a.output).suffix.lower() not in (".mp4", ".avi"):
            raise UserError(f"--output {a.output}: give a .mp4 or .avi path, or 'display'")
        check_writable(a.output, "--output")
    for flag, path in (("--events", a.events), ("--summary", a.summary)):
        if path:
            check_writable(path, flag)


@cli_entry
def main(argv=None):
    from art_edge.engine import ARTEngine

    a = build_parser().parse_args(argv)
    quiet_opencv()
    _outputs_checked(a)
    head_threads = a.head_threads or (a.threads if a.no_threads else HEAD_THREADS_THREADED)
    engine = ARTEngine.load(a.engine, a.backend, threads=a.threads, head_threads=head_threads)
    if a.window and a.window < engine.num_frames:
        raise UserError(
            f"--window {a.window} is smaller than the T = {engine.num_frames} frames a decision samples; "
            f"use --window ≥ {engine.num_frames} (or 0: 4·T)"
        )
    uri = a.camera if a.camera is not None else a.video if a.video is not None else a.source
    if a.video is not None and not a.video.lower().endswith(".csv") and not Path(a.video).is_file():
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
        threaded=not a.no_threads,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(
            sig, lambda *_: stop.set()
        )  # finish the frame in flight, then shut down cleanly
    with engine:
        summary = run_edge(engine, source, opts, stop)
    return _finish(summary, a)


def _finish(summary: dict, a) -> int:
    """Print and write the summary in every ending; a run that processed nothing, or whose source
    failed, is an error (and leaves no empty outputs behind)."""
    import json

    if summary["frames"] == 0 and a.events and Path(a.events).is_file():
        Path(a.events).unlink()
    print_summary(summary)
    if a.summary:
        atomic_write_text(a.summary, json.dumps(summary, indent=2))
    if summary.get("error"):
        raise UserError(summary["error"])
    if summary["frames"] == 0 and summary["ended"] != "interrupted":
        skipped = (
            f"; {summary['corrupt']} clips or frames could not be read"
            if summary["corrupt"]
            else ""
        )
        raise UserError(
            f"no frames were processed{skipped}: check the source (its paths, --root, the device)"
        )
    return 0  # a live run's usual end is Ctrl-C: a clean stop, said in the summary


if __name__ == "__main__":
    sys.exit(main())
