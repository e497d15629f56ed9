"""Several cameras in one process against one process per camera, side by side.

    python benchmarks/rig.py [--cameras 4] [--frames 240] [--blocks 2]

art-edge-s INT8 (random weights), file cameras played as fast as possible, headless, on the
machine's cores. In alternating blocks: one `art-edge` process with N `--source`s (its encoder
batches the frames of all of them); N `art-edge` processes with one camera each, started
together; one camera alone. Aggregate FPS: the sum of each process's own frames / run seconds (engine loading
left out); the wall-clock figures, loading included, are written beside them.
Writes benchmarks/results/rig.json with `four_cameras_vs_four_processes` and
`four_cameras_vs_one_camera` at its top level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import RESULTS, write_result
from edge import build_engines, long_video


def art_edge(engine: Path, videos: list, summary: Path, threads: int) -> subprocess.Popen:
    """One art-edge process over `videos`; its stderr beside the summary, for a failure's reason."""
    sources = [arg for i, v in enumerate(videos) for arg in ("--source", f"cam{i}={v}")]
    cmd = [sys.executable, "-m", "art_edge.app", "--engine", str(engine), *sources, "--headless",
           "--threads", str(threads), "--summary", str(summary)]  # fmt: skip
    log = open(summary.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


def run_processes(engine: Path, groups: list, tmp: Path, threads: int) -> dict:
    """Each group of videos in a process of its own, all started together; → aggregate FPS: `fps`
    sums each process's own rate over its run (engine loading left out: it is paid once per
    process, not per frame), `wall_fps` is all frames over the wall time, loading included."""
    t0 = time.perf_counter()
    procs = [art_edge(engine, g, tmp / f"s{i}.json", threads) for i, g in enumerate(groups)]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="art-edge-s")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--frames", type=int, default=240, help="frames in each camera's video")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "rig.json"))
    a = ap.parse_args(argv)
    n = a.cameras
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engines, _ = build_engines(tmp, a.config, a.threads)
        videos = [long_video(tmp / f"cam{i}.mp4", a.frames, seed=3 + i) for i in range(n)]
        modes = {
            "one_process": [videos],
            "separate_processes": [[v] for v in videos],
            "one_camera": [videos[:1]],
        }
        runs = {m: [] for m in modes}
        for _ in range(a.blocks):
            for mode, groups in modes.items():
                runs[mode].append(run_processes(engines["int8"], groups, tmp, a.threads))
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
        "targets": {"four_cameras_vs_four_processes": 1.2, "four_cameras_vs_one_camera": 1.2},
    }
    print(
        f"{a.config} INT8, {n} file cameras at full speed, {os.cpu_count()} cores: one process "
        f"{fps['one_process']:.1f} FPS in all; {n} processes {fps['separate_processes']:.1f}; one "
        f"camera {fps['one_camera']:.1f} → {result['four_cameras_vs_four_processes']:.2f}× the "
        f"processes, {result['four_cameras_vs_one_camera']:.2f}× one camera (counting engine loading: "
        f"{result['wall_four_cameras_vs_four_processes']:.2f}× and "
        f"{result['wall_four_cameras_vs_one_camera']:.2f}×)"
    )
    write_result(a.out, result)


if __name__ == "__main__":
    main()
