"""art-edge: the real-time pipeline — a source, the engine, decisions, overlays, events.

    art-edge --engine engines/tiny --camera 0 --output display
    art-edge --engine engines/tiny --video match.mp4 --output out.mp4 --events events.jsonl
    art-edge --engine engines/tiny --source rtsp://cam/stream --headless --events events.jsonl

Ctrl-C (SIGINT) or SIGTERM stops capture, finishes the decision in flight, flushes the events and
finalizes the video so it plays. A file or LIST that ends does the same and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from art_edge.api import ARTEngine, open_cameras, run
from art_edge.errors import ArgumentParser, UserError, cli_entry, positive_int
from art_edge.files import atomic_write_text, check_writable
from art_edge.rig.camera import parse_source_specs
from art_edge.rig.config import RigConfig, add_flags, from_flags, one_of, setting, validate
from art_edge.rig.config_file import config_text, parse_with_config
from art_edge.runtime.engine import (
    HEAD_THREADS_THREADED,
    default_encoder_workers,
    default_head_threads,
)
from art_edge.serve.systemd import unit_text


def _camera_line(c: dict) -> str:
    fl, dl = c["frame_latency_ms"], c["decision_latency_ms"]
    return (
        f"{c['fps']:.1f} FPS; frame latency p50 {fl['p50']} ms p95 {fl['p95']} ms; decision "
        f"latency p50 {dl['p50']} ms p95 {dl['p95']} ms; {c['decisions']} decisions, dropped "
        f"{c['dropped']}, corrupt {c['corrupt']}, reconnects {c['reconnects']}"
    ) + (
        f"; {c['tracks']} tracks" + (f" ({c['tracks_left_out']} live left out by --max-tracks)"
                                     if c["tracks_left_out"] else "")
        if "tracks" in c else ""
    )  # fmt: skip


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
            error = f"; {counts['error']}" if counts.get("error") else ""
            print(
                f"events: {name} ({counts['sent']} sent"
                + (f", {lost} lost" if lost else "")
                + f"{error})",
                file=out,
            )
    if summary.get("segments"):
        print(f"segments: {summary['segments']}", file=out)
    if "clips" in summary:
        dropped = summary["clips_dropped"]
        print(
            f"clips: {summary['clips_written']} written"
            + (f", {dropped} dropped (each segment's clip_dropped says why)" if dropped else ""),
            file=out,
        )
    print_troubles(summary, out)
    print(
        f"ended: {summary.get('ended', 'source ended')}"
        + (f" ({summary['error']})" if summary.get("error") else ""),
        file=out,
    )


def print_troubles(summary: dict, out=sys.stdout):
    """A line for each output that had write errors, lost events at the end, or left events in
    its spool for the next run."""
    for name, o in summary.get("outputs", {}).items():
        parts = [f"{o[k]} {k}" for k in ("errors", "lost", "spooled") if o.get(k)]
        if parts:
            print(f"output {name}: {', '.join(parts)} (now {o['status']})", file=out)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog="art-edge",
        description="Real-time fine-grained action recognition from a camera, file or stream.",
    )
    ap.add_argument(
        "--config",
        metavar="FILE",
        help="a .toml file of settings by name (any flag's; a flag given beside it wins): "
        "what --print-config writes",
    )
    ap.add_argument(
        "--print-config",
        action="store_true",
        help="write the effective settings as a --config file (secrets masked) and exit",
    )
    ap.add_argument(
        "--print-systemd-unit",
        action="store_true",
        help="write a systemd unit (Type=notify, watchdog, restart on failure) that runs the "
        "rig of --config FILE, and exit",
    )
    ap.add_argument("--engine", help="engine dir written by art-build-engine")
    src = ap.add_mutually_exclusive_group()
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
    ap.add_argument(
        "--roi",
        action="append",
        default=[],
        help="NAME=x,y,w,h (pixels, or fractions of the frame): the part of a camera the model sees",
    )
    add_flags(ap, EngineFlags)
    add_flags(ap)
    ap.add_argument("--summary", help="write the run summary JSON here")
    return ap


@dataclass(frozen=True)
class EngineFlags:
    """Which runtime runs the engine, and on how many threads: ARTEngine.load's arguments, the
    head's threads and the encoder's workers picked for the pipeline when not given."""

    backend: str = setting(
        "onnxruntime",
        "the runtime of the engine dir (tensorrt: engines built on this device)",
        one_of("onnxruntime", "tensorrt"),
        metavar="{onnxruntime,tensorrt}",
    )
    threads: int | None = setting(None, "inference threads (default: the runtime's)", positive_int)
    head_threads: int | None = setting(
        None,
        f"the clip head's inference threads (default: {HEAD_THREADS_THREADED} beside the "
        "encoder's, --threads with --no-threads)",
        positive_int,
    )
    encoder_workers: int | None = setting(
        None,
        "encode each batch in N parts side by side, on threads/N inference threads each "
        "(default: 1 for one camera, for the lowest frame latency; one a camera up to the cores "
        "with several, for the most frames a second; onnxruntime only)",
        positive_int,
    )

    def __post_init__(self):
        validate(self)


def quiet_opencv():
    """OpenCV logs its own warnings when a device or file fails to open; we say what failed in one
    line instead. OPENCV_LOG_LEVEL in the environment still wins, for debugging."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's AV_LOG_QUIET


def named_sources(a) -> list[tuple[str, str]]:
    """--camera, --video or each --source → (name, URI)."""
    if a.camera is not None or a.video is not None:
        uri = a.camera if a.camera is not None else a.video
        is_file = a.video is None or a.video.lower().endswith(".csv") or Path(a.video).is_file()
        if not is_file:
            raise UserError(f"video file not found: {a.video}")
        return [("cam0", uri)]
    return parse_source_specs(a.source)


def rois(a) -> dict[str, str]:
    """Each --roi NAME=x,y,w,h → {NAME: "x,y,w,h"}."""
    found = {}
    for value in a.roi:
        name, sep, box = value.partition("=")
        if not sep:
            raise UserError(f"--roi {value!r}: give NAME=x,y,w,h (the camera's name from --source)")
        found[name] = box
    return found


def load_engine(a, config: RigConfig, cameras: int) -> ARTEngine:
    """The engine as the flags say."""
    flags = from_flags(EngineFlags, a)
    threads, threaded = flags.threads, config.threaded
    return ARTEngine.load(
        a.engine,
        flags.backend,
        threads=threads,
        head_threads=flags.head_threads or default_head_threads(threads, threaded),
        encoder_workers=flags.encoder_workers
        or default_encoder_workers(cameras, threads, flags.backend, threaded=threaded),
    )


def parse_args(argv=None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """art-edge's flags over the settings of its --config file, if any."""
    parser = build_parser()
    return parse_with_config(parser, argv, (RigConfig, EngineFlags)), parser


def check_required(a):
    if not a.engine:
        raise UserError('give --engine ENGINE_DIR (or engine = "…" in the --config file)')
    if a.camera is None and a.video is None and not a.source:
        raise UserError(
            "give a source: --camera N, --video PATH or --source [NAME=]URI (or source = […] in "
            "the --config file)"
        )


def print_systemd_unit(a) -> int:
    if not a.config:
        raise UserError(
            "--print-systemd-unit runs the rig of a --config file: give --config FILE (art-edge "
            "--print-config … > rig.toml writes one)"
        )
    config = RigConfig.from_flags(a)
    print(unit_text(a.config, config.unattended.stop_timeout), end="")
    return 0


@cli_entry
def main(argv=None):
    a, parser = parse_args(argv)
    if a.print_systemd_unit:
        return print_systemd_unit(a)
    quiet_opencv()
    check_required(a)
    if a.summary:
        check_writable(a.summary, "--summary", is_file=True)
    config = RigConfig.from_flags(a)
    from_flags(EngineFlags, a)  # checked now, before anything starts
    named = named_sources(a)
    rois(a)
    if a.print_config:
        print(config_text(parser, a), end="")
        return 0
    engine = load_engine(a, config, len(named))
    cameras = open_cameras(engine, named, rois(a), config.source)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the frame in flight, then shut down
        signal.signal(sig, lambda *_: stop.set())
    with engine:
        summary = run(engine, cameras, config, stop, status=True)
    return _finish(summary, a, config)


def _finish(summary: dict, a, config: RigConfig) -> int:
    """Print and write the summary in every ending; a run that processed nothing, or whose source
    failed, is an error (its JSONL outputs are as they were before it: art_edge.api.run)."""
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
