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
from dataclasses import dataclass, field
from pathlib import Path

from art_edge.errors import (
    ArgumentParser,
    UserError,
    cli_entry,
    fraction,
    non_negative_float,
    non_negative_int,
    number,
    positive_float,
    positive_int,
)
from art_edge.files import atomic_write_text, check_writable
from art_edge.sources import open_source
from art_edge.streaming import StreamConfig

smoothing = number(float, 0.0, 0.999, what="a number in [0, 1)")
# The clip head's inference threads when it runs on a thread of its own beside the encoder: the
# head's graphs are small, and a second thread of theirs takes a core from the encoder rather than
# speeding them up (art-edge-s INT8 on 2 cores: 0.85 → 0.89 of the encoder-only bound, docs/benchmarks.md).
HEAD_THREADS_THREADED = 1


@dataclass
class EdgeOptions:
    stream: StreamConfig = field(default_factory=StreamConfig)
    output: str | None = None  # a .mp4/.avi path or "display" (one camera)
    # event sinks: .jsonl paths, mqtt://HOST:PORT/TOPIC, http(s):// webhooks (a str: one of them)
    events: list = field(default_factory=list)
    # "change": an event when the decided label changes; "decision": every decision
    emit: str = "change"
    headless: bool = False  # draw nothing
    max_frames: int = 0  # stop after this many frames (0: until the source ends)
    status: bool = True  # the one-line live status on the terminal
    # reading, encoding and the head on threads of their own (False: all in one, as a baseline)
    threaded: bool = True
    segments: str | None = None  # segments.jsonl: one line per finished action
    min_score: float = 0.5  # a segment's smoothed score stays at or above this
    min_duration: float = 0.5  # seconds; shorter runs are flicker
    clips: str | None = None  # folder for a video per segment
    pre: float = 2.0  # seconds of video before a segment's start, and after its end
    post: float = 2.0
    clip_history: float = 30.0  # seconds of frames each camera keeps for its clips
    raw_clips: bool = False  # clips without the annotation
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint
    stale_after: float = 10.0  # /healthz fails when a camera delivered no frame for this long
    web: str | None = None  # HOST:PORT of the dashboard
    web_token: str | None = None  # required beyond localhost; every request then carries it
    web_fps: float = 5.0  # the page's frames per camera, at most

    def __post_init__(self):
        if isinstance(self.events, str):
            self.events = [self.events]


def run_edge(engine, source, opts: EdgeOptions, stop: threading.Event | None = None) -> dict:
    """One source (named cam0) until it ends, `stop` is set or max_frames; → the summary, whose
    `ended` says which ended it (and `error` why, when the source failed: a camera that did not
    come back). Several cameras: art_edge.rig.Rig."""
    from art_edge.rig import CameraSpec, Rig

    return Rig(engine, [CameraSpec("cam0", source)], opts).run(stop)


def _camera_line(c: dict) -> str:
    fl, dl = c["frame_latency_ms"], c["decision_latency_ms"]
    return (
        f"{c['fps']:.1f} FPS; frame latency p50 {fl['p50']} ms p95 {fl['p95']} ms; decision "
        f"latency p50 {dl['p50']} ms p95 {dl['p95']} ms; {c['decisions']} decisions, dropped "
        f"{c['dropped']}, corrupt {c['corrupt']}, reconnects {c['reconnects']}"
    )


def print_summary(summary: dict, out=sys.stdout):
    cams = summary.get("cameras") or {}
    if len(cams) > 1:
        print(
            f"{summary['frames']} frames from {len(cams)} cameras in {summary['seconds']:.1f} s: "
            f"{summary['fps']:.1f} FPS in all",
            file=out,
        )
        for name, c in cams.items():
            ended = f"; ended: {c['ended']}" + (f" ({c['error']})" if c.get("error") else "")
            print(f"  {name}: {c['frames']} frames, {_camera_line(c)}{ended}", file=out)
    else:
        print(
            f"{summary['frames']} frames in {summary['seconds']:.1f} s: {_camera_line(summary)}",
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
    for name, counts in summary.get("sinks", {}).items():
        if "://" in name or Path(name).is_file():
            lost = counts["failed"] + counts["dropped"]
            print(
                f"events: {name} ({counts['sent']} sent" + (f", {lost} lost)" if lost else ")"),
                file=out,
            )
    if summary.get("segments"):
        print(f"segments: {summary['segments']}", file=out)
    if "clips" in summary:
        dropped = summary["clips_dropped"]
        print(
            f"clips: {len(summary['clips'])} written"
            + (f", {dropped} dropped (the writer fell behind)" if dropped else ""),
            file=out,
        )
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
        action="append",
        help="[NAME=]URI, repeatable (a camera each, in one process): /dev/videoN, rtsp://, "
        "http(s)://, csi://N, a GStreamer pipeline, synthetic://?frames=32&size=96, or a LIST "
        ".csv played clip after clip; unnamed sources are cam0, cam1, …",
    )
    ap.add_argument("--output", help="annotated video (.mp4/.avi) or 'display' (one camera)")
    ap.add_argument(
        "--events",
        action="append",
        default=[],
        help="repeatable: a .jsonl path (one event a line), mqtt://HOST:PORT/TOPIC (QoS 1) or "
        "http(s)://… (a JSON POST each, retried)",
    )
    ap.add_argument(
        "--roi",
        action="append",
        default=[],
        help="NAME=x,y,w,h (pixels, or fractions of the frame): the part of a camera the model sees",
    )
    add_rig_flags(ap)
    ap.add_argument("--headless", action="store_true", help="draw nothing")
    add_runtime_flags(ap)
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


def add_runtime_flags(ap):
    """Which runtime runs the engine, and on how many threads."""
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
    ap.add_argument(
        "--encoder-workers",
        type=positive_int,
        help="encode each batch in N parts side by side, on threads/N inference threads each "
        "(default: 1 for one camera, for the lowest frame latency; one a camera up to the cores "
        "with several, for the most frames a second; onnxruntime only)",
    )


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


def add_rig_flags(ap):
    """Segments, their clips, and the metrics endpoint."""
    ap.add_argument("--segments", help="segments JSONL: one line per finished action")
    ap.add_argument(
        "--min-score",
        type=fraction,
        default=0.5,
        help="a segment's smoothed score stays at or above this (below: idle)",
    )
    ap.add_argument(
        "--min-duration",
        type=non_negative_float,
        default=0.5,
        help="seconds: shorter segments are dropped as flicker",
    )
    ap.add_argument("--clips", help="folder: a video per segment")
    ap.add_argument(
        "--pre", type=float, default=2.0, help="seconds of video before a segment's start"
    )
    ap.add_argument("--post", type=float, default=2.0, help="seconds after its end")
    ap.add_argument(
        "--clip-history",
        type=positive_float,
        default=30.0,
        help="seconds of frames each camera keeps for its clips (JPEG: ~45 MB for 720p at 30 FPS)",
    )
    ap.add_argument("--raw", action="store_true", help="clips without the annotation")
    ap.add_argument(
        "--metrics", help="HOST:PORT: Prometheus /metrics and /healthz (HOST default 127.0.0.1)"
    )
    ap.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="a live dashboard in the browser (HOST default 127.0.0.1; any other "
        "address needs --web-token)",
    )
    ap.add_argument(
        "--web-token", metavar="SECRET", help="a secret every dashboard request must carry"
    )
    ap.add_argument(
        "--web-fps",
        metavar="N",
        type=positive_float,
        default=5.0,
        help="the dashboard's frames per camera, at most (recognition never waits for the page)",
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
    """Every path the run will write, every sink and rig option, checked before anything starts."""
    from art_edge.clips import check_clip_options
    from art_edge.metrics import parse_host_port
    from art_edge.sinks import check_sink_specs
    from art_edge.web import check_web_options

    if a.headless and a.output:
        raise UserError("--headless draws nothing: drop --output, or drop --headless")
    if a.output and a.output not in ("display", "display://"):
        if Path(a.output).suffix.lower() not in (".mp4", ".avi"):
            raise UserError(f"--output {a.output}: give a .mp4 or .avi path, or 'display'")
        check_writable(a.output, "--output", is_file=True)
    check_sink_specs(a.events)
    for flag, path in (("--summary", a.summary), ("--segments", a.segments)):
        if path:
            check_writable(path, flag, is_file=True)
    check_clip_options(a.clips, a.pre, a.post, a.clip_history)
    if a.metrics:
        parse_host_port(a.metrics, "--metrics")
    check_web_options(a.web, a.web_token)


def _camera_specs(a, engine) -> list:
    """--camera, --video or each --source → named cameras, with their --roi."""
    from art_edge.rig import CameraSpec, parse_source_specs
    from art_edge.roi import Roi

    if a.camera is not None or a.video is not None:
        uri = a.camera if a.camera is not None else a.video
        named = [("cam0", uri)]
        if (
            a.video is not None
            and not a.video.lower().endswith(".csv")
            and not Path(a.video).is_file()
        ):
            raise UserError(f"video file not found: {a.video}")
    else:
        named = parse_source_specs(a.source)
    rois = {}
    for value in a.roi:
        name, sep, box = value.partition("=")
        if not sep:
            raise UserError(f"--roi {value!r}: give NAME=x,y,w,h (the camera's name from --source)")
        if name not in dict(named):
            raise UserError(
                f"--roi {value!r}: no camera named {name!r}; the cameras are {', '.join(dict(named))}"
            )
        rois[name] = Roi.parse(box)
    return [
        CameraSpec(
            name,
            open_source(
                uri,
                realtime=a.realtime,
                reconnect_timeout=a.reconnect_timeout,
                classes=engine.classes,
                root=a.root,
            ),
            rois.get(name),
        )
        for name, uri in named
    ]


def edge_options(a) -> EdgeOptions:
    return EdgeOptions(
        StreamConfig(
            window=a.window, stride=a.stride, smoothing=a.smoothing, hysteresis=a.hysteresis
        ),
        output=a.output,
        events=a.events,
        emit=a.emit,
        headless=a.headless,
        max_frames=a.max_frames,
        threaded=not a.no_threads,
        segments=a.segments,
        min_score=a.min_score,
        min_duration=a.min_duration,
        clips=a.clips,
        pre=a.pre,
        post=a.post,
        clip_history=a.clip_history,
        raw_clips=a.raw,
        metrics=a.metrics,
        web=a.web,
        web_token=a.web_token,
        web_fps=a.web_fps,
    )


@cli_entry
def main(argv=None):
    from art_edge.engine import ARTEngine, default_encoder_workers
    from art_edge.rig import Rig

    a = build_parser().parse_args(argv)
    quiet_opencv()
    _outputs_checked(a)
    head_threads = a.head_threads or (a.threads if a.no_threads else HEAD_THREADS_THREADED)
    engine = ARTEngine.load(
        a.engine,
        a.backend,
        threads=a.threads,
        head_threads=head_threads,
        encoder_workers=a.encoder_workers
        or default_encoder_workers(
            1 if a.camera is not None or a.video is not None else len(a.source or [0]),
            a.threads,
            a.backend,
            threaded=not a.no_threads,
        ),
    )
    if a.window and a.window < engine.num_frames:
        raise UserError(
            f"--window {a.window} is smaller than the T = {engine.num_frames} frames a decision samples; "
            f"use --window ≥ {engine.num_frames} (or 0: 4·T)"
        )
    rig = Rig(engine, _camera_specs(a, engine), edge_options(a))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(
            sig, lambda *_: stop.set()
        )  # finish the frame in flight, then shut down cleanly
    with engine:
        summary = rig.run(stop)
    return _finish(summary, a)


def _finish(summary: dict, a) -> int:
    """Print and write the summary in every ending; a run that processed nothing, or whose source
    failed, is an error (and leaves no empty outputs behind)."""
    import json

    for path in summary["events_paths"] + [a.segments] if summary["frames"] == 0 else []:
        if path and Path(path).is_file():
            Path(path).unlink()
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
