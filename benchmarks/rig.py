"""Several cameras in one process against one process per camera, side by side.

    python benchmarks/rig.py [--cameras 4] [--frames 600] [--blocks 3]

art-edge-s INT8 (random weights), file cameras played as fast as possible, headless, on the
machine's cores. In alternating blocks: one `art-edge` process with N `--source`s (its encoder
batches the frames of all of them, in parts on its encoder workers); N `art-edge` processes with
one camera each, started together; one camera alone — each with art-edge's defaults; and, for the
record, the N cameras with one encoder worker and one camera with a worker per thread. Aggregate
FPS: the sum of each process's own frames / run seconds (engine loading left out); the wall-clock
figures, loading included, are written beside them.
Writes benchmarks/results/rig.json with `four_cameras_vs_four_processes` and
`four_cameras_vs_one_camera` at its top level.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import RESULTS, RssSampler, free_port, write_result
from edge import build_engines, long_video


def art_edge(
    engine: Path, videos: list, summary: Path, threads: int, extra: tuple = ()
) -> subprocess.Popen:
    """One art-edge process over `videos`; its stderr beside the summary, for a failure's reason."""
    sources = [arg for i, v in enumerate(videos) for arg in ("--source", f"cam{i}={v}")]
    cmd = [sys.executable, "-m", "art_edge.cli", "--engine", str(engine), *sources, "--headless",
           "--threads", str(threads), "--summary", str(summary), *extra]  # fmt: skip
    log = open(summary.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


def run_processes(engine: Path, groups: list, tmp: Path, threads: int, extra=()) -> dict:
    """Each group of videos in a process of its own, all started together; → aggregate FPS: `fps`
    sums each process's own rate over its run (engine loading left out: it is paid once per
    process, not per frame), `wall_fps` is all frames over the wall time, loading included."""
    t0 = time.perf_counter()
    procs = [art_edge(engine, g, tmp / f"s{i}.json", threads, extra) for i, g in enumerate(groups)]
    for i, p in enumerate(procs):
        if p.wait() != 0:
            raise SystemExit(f"art-edge failed: {(tmp / f's{i}.log').read_text()[-600:]}")
    seconds = time.perf_counter() - t0
    summaries = [json.loads((tmp / f"s{i}.json").read_text()) for i in range(len(groups))]
    frames = sum(s["frames"] for s in summaries)
    return {
        "frames": frames,
        "seconds": round(seconds, 2),
        "fps": round(sum(s["fps"] for s in summaries), 2),
        "wall_fps": round(frames / seconds, 2),
    }


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def memory_run(engine: Path, frames: int, tmp: Path, threads: int) -> dict:
    """RSS every half second while one process runs 2 synthetic cameras at full speed with
    segments (any score: random weights rarely pass 0.5), clips, JSONL + webhook (+ MQTT when a
    mosquitto is on PATH) events and metrics."""
    from art_edge.api import run
    from art_edge.rig.camera import CameraSpec
    from art_edge.rig.config import RigConfig
    from art_edge.runtime.engine import HEAD_THREADS_THREADED, ARTEngine, default_encoder_workers
    from art_edge.runtime.streaming import StreamConfig
    from art_edge.video.sources import open_source

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    events = [str(tmp / "events.jsonl"), f"http://127.0.0.1:{hook.server_address[1]}/hook"]
    broker = None
    if shutil.which("mosquitto"):
        port = free_port()
        broker = subprocess.Popen(["mosquitto", "-p", str(port)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        events.append(f"mqtt://127.0.0.1:{port}/rig/events")
    opts = RigConfig.from_settings(stream=StreamConfig(), events=events, headless=True,
                       segments=str(tmp / "segments.jsonl"), min_score=0.0, min_duration=0.0, clips=str(tmp / "clips"),
                       pre=0.5, post=0.5, metrics=f"127.0.0.1:{free_port()}")  # fmt: skip
    uri = f"synthetic://?frames=32&size=160&clips={-(-frames // 64)}"
    try:
        with (
            ARTEngine.load(
                engine,
                threads=threads,
                head_threads=HEAD_THREADS_THREADED,
                encoder_workers=default_encoder_workers(2, threads),  # as art-edge picks
            ) as eng,
            RssSampler() as mem,
        ):
            specs = [CameraSpec(n, open_source(uri, classes=eng.classes)) for n in ("a", "b")]
            summary = run(eng, specs, opts)
    finally:
        hook.shutdown()
        if broker is not None:
            broker.terminate()
    return {
        "frames": summary["frames"],
        "seconds": summary["seconds"],
        "segments": summary["segments"],
        "clips": len(summary["clips"]),
        "clips_dropped": summary["clips_dropped"],
        "sinks": summary["sinks"],
        "rss_mb_first_quarter_max": mem.quarter_max("first"),
        "rss_mb_last_quarter_max": mem.quarter_max("last"),
        "rss_mb_samples": [round(x, 1) for x in mem.samples],
    }


def print_figures(result: dict, fps: dict, memory):
    print(
        f"{result['config']} INT8, {result['cameras']} file cameras at full speed, {os.cpu_count()} cores: one process "
        f"{fps['one_process']:.1f} FPS in all; {result['cameras']} processes {fps['separate_processes']:.1f}; one "
        f"camera {fps['one_camera']:.1f} → {result['four_cameras_vs_four_processes']:.2f}× the "
        f"processes, {result['four_cameras_vs_one_camera']:.2f}× one camera (counting engine loading: "
        f"{result['wall_four_cameras_vs_four_processes']:.2f}× and "
        f"{result['wall_four_cameras_vs_one_camera']:.2f}×)"
    )
    print(
        f"for the record: one process, {result['cameras']} cameras, --encoder-workers 1 "
        f"{fps['one_process_one_worker']:.1f} FPS; one camera, --encoder-workers {result['threads']} "
        f"{fps['one_camera_workers']:.1f} FPS"
    )
    if memory:
        print(
            f"long run: {memory['frames']} frames from 2 cameras in {memory['seconds']:.0f} s with "
            f"segments ({memory['segments']}), clips ({memory['clips']} written, "
            f"{memory['clips_dropped']} dropped), {len(memory['sinks'])} event sinks and metrics; RSS "
            f"{memory['rss_mb_first_quarter_max']:.0f} MB (first quarter) → "
            f"{memory['rss_mb_last_quarter_max']:.0f} MB (last quarter)"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="art-edge-s")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument(
        "--frames",
        type=int,
        default=600,
        help="frames in each camera's video (long enough that starting and stopping weigh little)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument(
        "--memory-frames", type=int, default=20000, help="frames of the 2-camera long run (0: skip)"
    )
    ap.add_argument("--out", default=str(RESULTS / "rig.json"))
    a = ap.parse_args(argv)
    n = a.cameras
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engines, _ = build_engines(tmp, a.config, a.threads)
        videos = [long_video(tmp / f"cam{i}.mp4", a.frames, seed=3 + i) for i in range(n)]
        modes = {  # name: (each process's videos, extra flags); the defaults first
            "one_process": ([videos], ()),
            "separate_processes": ([[v] for v in videos], ()),
            "one_camera": ([videos[:1]], ()),
            # what the encoder workers add, apart from batching (not defaults: for the record)
            "one_process_one_worker": ([videos], ("--encoder-workers", "1")),
            "one_camera_workers": ([videos[:1]], ("--encoder-workers", str(a.threads))),
        }
        runs = {m: [] for m in modes}
        memory = (
            memory_run(engines["int8"], a.memory_frames, tmp, a.threads)
            if a.memory_frames
            else None
        )
        for _ in range(a.blocks):
            for mode, (groups, extra) in modes.items():
                runs[mode].append(run_processes(engines["int8"], groups, tmp, a.threads, extra))
    fps = {m: statistics.median(r["fps"] for r in rs) for m, rs in runs.items()}
    wall = {m: statistics.median(r["wall_fps"] for r in rs) for m, rs in runs.items()}
    result = {
        "benchmark": "rig",
        "config": a.config,
        "precision": "int8",
        "cameras": n,
        "threads": a.threads,
        "cpus": os.cpu_count(),
        "runs": runs,
        "fps": fps,
        "wall_fps": wall,
        "wall_four_cameras_vs_four_processes": wall["one_process"] / wall["separate_processes"],
        "wall_four_cameras_vs_one_camera": wall["one_process"] / wall["one_camera"],
        "four_cameras_vs_four_processes": fps["one_process"] / fps["separate_processes"],
        "four_cameras_vs_one_camera": fps["one_process"] / fps["one_camera"],
        "memory": memory,
        "targets": {"four_cameras_vs_four_processes": 1.2, "four_cameras_vs_one_camera": 1.2},
    }
    print_figures(result, fps, memory)
    write_result(a.out, result)


if __name__ == "__main__":
    main()
