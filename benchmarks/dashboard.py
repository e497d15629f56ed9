"""What the dashboard costs the pipeline: `art-edge` without `--web`, against `--web` with one
browser showing the page, side by side.

    python benchmarks/dashboard.py [--config art-edge-s] [--blocks 4] [--seconds 15]
    python benchmarks/dashboard.py --threads 1 --cpus 1 --busy 1 --out benchmarks/results/dashboard_slow_cpu.json

art-edge-s INT8 (random weights), two synthetic cameras rendered as fast as the pipeline takes
them, headless, one rig in this process (as `art-edge` runs it), in alternating blocks:

- `without_web`: no `--web`;
- `with_page`: `--web`, and a headless Chromium on the dashboard at the lowest CPU priority
  (nice 19): the page's work on the rig (drawing, encoding and sending its frames and state) is
  charged in full, the browser's own rendering hardly at all, as for an operator's laptop or
  tablet, which is where the page is watched from;
- `with_page_browser_on_the_rig`: the same with the browser at normal priority, competing with
  the pipeline for the same cores (a screen attached to the rig itself).

A slower machine: `--threads 1 --cpus 1 --busy 1` runs the rig on one core that a program
spinning at the same priority shares with it (about half a core for the rig, as on a CPU half as
fast), the low-priority browser on the other core.

Each run measures the rig's frames over `--seconds`, after the page shows both cameras and a
warm-up, and the frames the page received. Writes benchmarks/results/dashboard.json with
`fps_cost_fraction` (1 − FPS `with_page` / FPS `without_web`, medians; target ≤ 0.05) and
`fps_cost_fraction_browser_on_the_rig` at its top level.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from art_edge.rig.observers import RigObserver

from benchlib import (
    MACHINE,
    RESULTS,
    alternating,
    free_port,
    headless_chromium,
    medians,
    write_result,
)
from edge import build_engines

BOTH_TILES_SHOWN = """return ['a', 'b'].every(c => {
  const frame = document.querySelector(`.tile[data-camera="${c}"] canvas.frame`);
  return frame && frame.dataset.frame !== undefined; });"""


class RigRun:
    """One rig with two endless synthetic cameras (240², rendered as fast as it takes them) on a
    thread of this process, as `art-edge` runs it, with art-edge's `settings` by name; counts
    its frames.

        with RigRun(engine, web="127.0.0.1:8080") as rig:
            fps = rig.fps(seconds=10)
    """

    def __init__(self, engine, **settings):
        from art_edge.api import run
        from art_edge.rig.camera import CameraSpec
        from art_edge.rig.config import RigConfig
        from art_edge.runtime.streaming import StreamConfig
        from art_edge.video.sources import open_source

        opts = RigConfig.from_settings(stream=StreamConfig(), headless=True, **settings)
        uri = "synthetic://?frames=32&size=240&seed={}"
        specs = [
            CameraSpec(n, open_source(uri.format(i), classes=engine.classes))
            for i, n in enumerate("ab")
        ]
        self.counter, self.stop = FrameCounter(), threading.Event()
        self.thread = threading.Thread(
            target=run, args=(engine, specs, opts, self.stop), kwargs={"observers": [self.counter]}
        )

    def __enter__(self):
        self.thread.start()
        return self

    def fps(self, seconds: float, during=None) -> float:
        """Frames a second over `seconds` (`during()`: called once they started)."""
        frames0, t0 = self.counter.frames, time.perf_counter()
        if during is not None:
            during()
        time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
        return round((self.counter.frames - frames0) / (time.perf_counter() - t0), 2)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def rig_flags(doc: str, blocks: int, seconds: float, out: str) -> argparse.ArgumentParser:
    """The flags of a benchmark of RigRuns in alternating blocks (this one's, web_load's)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--config", default="art-edge-s")
    ap.add_argument("--threads", type=int, default=2, help="the engine's inference threads")
    ap.add_argument("--blocks", type=int, default=blocks)
    ap.add_argument("--seconds", type=float, default=seconds, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before each measurement")
    ap.add_argument("--out", default=str(RESULTS / out))
    return ap


def run_facts(benchmark: str, a) -> dict:
    """What a JSON of RigRuns says first: the command and what it ran on."""
    return {
        "benchmark": benchmark,
        "command": f"python benchmarks/{benchmark}.py " + " ".join(sys.argv[1:]),
        "machine": MACHINE,
        "config": a.config,
        "precision": "int8",
        "cameras": 2,
        "threads": a.threads,
        "cpus": os.cpu_count(),
        "seconds_per_run": a.seconds,
    }


def measured_run(engine, driver, web: bool, a) -> dict:
    """One rig, with the page in `driver` or without --web; → the FPS of its frames over
    `a.seconds` (after `a.warmup`) and the frames the page received."""
    port, warmup, seconds = free_port(), a.warmup, a.seconds
    settings = {"web": f"127.0.0.1:{port}", "web_cpu": a.web_cpu} if web else {}
    with RigRun(engine, **settings) as rig:
        if web:
            wait_until_shown(driver, f"http://127.0.0.1:{port}/")
        else:
            driver.get("about:blank")
        time.sleep(warmup)
        page0, t0 = page_frames(driver, web), time.perf_counter()
        fps = rig.fps(seconds)
        page1, t1 = page_frames(driver, web), time.perf_counter()
    return {"fps": fps, "page_frames_per_second": round((page1 - page0) / (t1 - t0), 2)}


def wait_until_shown(driver, url: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.get(url)
            break
        except Exception:  # noqa: BLE001 (the server is still starting)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    while not driver.execute_script(BOTH_TILES_SHOWN):
        if time.monotonic() > deadline:
            raise SystemExit(f"the dashboard at {url} showed no frames in {timeout:g} s")
        time.sleep(0.2)


class FrameCounter(RigObserver):
    """An output of the rig that counts the frames of all its cameras."""

    frames = 0

    def on_frame(self, camera: str, frame):
        self.frames += 1


def page_frames(driver, web: bool) -> int:
    return driver.execute_script("return window.artDashboard.frames") if web else 0


def heatmaps_at_full_resolution(frame_bgr, attention, alpha: float = 0.55):
    """The overlay's heatmaps as first written (each map scaled up to the frame, then mixed): the
    reference the grid-level mix of art_edge.video.overlay.attention_heatmaps is timed against."""
    import cv2
    import numpy as np

    from art_edge.video.overlay import TRACKLET_COLOURS, crop_box

    k, length = attention.shape
    grid = int(round(np.sqrt(length)))
    x0, y0, side = crop_box(*frame_bgr.shape[:2])
    region = frame_bgr[y0 : y0 + side, x0 : x0 + side].astype(np.float32)
    tint, weight = np.zeros_like(region), np.zeros(region.shape[:2], np.float32)
    for i in range(k):
        m = attention[i].reshape(grid, grid).astype(np.float32)
        m = (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
        m = cv2.resize(m, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1) ** 2
        tint += m[..., None] * np.asarray(TRACKLET_COLOURS[i % len(TRACKLET_COLOURS)], np.float32)
        weight += m
    w = (alpha * np.clip(weight, 0, 1))[..., None]
    out = frame_bgr.copy()
    tint = tint / np.maximum(weight, 1e-6)[..., None]
    out[y0 : y0 + side, x0 : x0 + side] = (region * (1 - w) + tint * w).astype(np.uint8)
    return out


def overlay_timings(repeats: int = 20) -> dict:
    """ms per frame of the heatmaps, grid-level mix against full resolution, side by side, on
    frames the size the page draws (4 tracklets over a 7 × 7 token grid)."""
    import numpy as np

    from art_edge.video.overlay import attention_heatmaps

    rng = np.random.default_rng(0)
    attention = rng.random((4, 49)).astype(np.float32)
    result = {}
    for height, width in ((360, 480), (480, 640)):
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        times = alternating(
            {
                "grid_mix": lambda f=frame: attention_heatmaps(f, attention),
                "full_resolution": lambda f=frame: heatmaps_at_full_resolution(f, attention),
            },
            repeats,
        )
        result[f"{width}x{height}"] = {k: round(v, 2) for k, v in medians(times, 1000).items()}
    return result


MODES = ("without_web", "with_page", "with_page_browser_on_the_rig")


def run_blocks(engine, drivers: dict, a) -> dict:
    """Each mode once per block, in turn; the browsers not in use wait on a blank page."""
    runs = {m: [] for m in MODES}
    for _ in range(a.blocks):
        for mode in MODES:
            for driver in drivers.values():
                driver.get("about:blank")
            driver = drivers["on_the_rig" if mode.endswith("on_the_rig") else "low_priority"]
            run = measured_run(engine, driver, mode != "without_web", a)
            runs[mode].append(run)
            print(
                f"{mode}: {run['fps']:.1f} FPS (page: {run['page_frames_per_second']:.1f} frames/s)"
            )
    return runs


def slower_cpu(cpus: int | None, busy: int) -> tuple[set | None, list]:
    """This process (the rig) on its first `cpus` cores, and `busy` programs that only spin, at
    normal priority, on those cores: the rig gets part of each, as on a slower CPU; → (the
    rig's cores, None for all; the busy programs, to kill at the end)."""
    import subprocess

    cores = set(range(cpus)) if cpus else None
    if cores:
        os.sched_setaffinity(0, cores)
    spin = [sys.executable, "-c", "while True: pass"]
    return cores, [subprocess.Popen(spin) for _ in range(busy)]  # they inherit the affinity


def main(argv=None):
    ap = rig_flags(__doc__, blocks=4, seconds=15.0, out="dashboard.json")
    ap.add_argument("--cpus", type=int, help="the rig on its first N cores only (browsers on all)")
    ap.add_argument("--busy", type=int, default=0, help="N programs spinning on the rig's cores")
    ap.add_argument(
        "--web-cpu", type=float, default=0.03, help="art-edge's --web-cpu (1: no budget)"
    )
    a = ap.parse_args(argv)
    from art_edge.runtime.engine import HEAD_THREADS_THREADED, ARTEngine

    overlay_ms = overlay_timings()
    print(f"overlay heatmaps, ms a frame (grid-level mix, full resolution): {overlay_ms}")
    cores, spinning = slower_cpu(a.cpus, a.busy)
    with tempfile.TemporaryDirectory() as tmp:
        engines, _ = build_engines(Path(tmp), a.config, a.threads)
        drivers = {"low_priority": headless_chromium(nice=19),
                   "on_the_rig": headless_chromium(cpus=cores)}  # fmt: skip
        try:
            head = HEAD_THREADS_THREADED
            with ARTEngine.load(engines["int8"], threads=a.threads, head_threads=head) as engine:
                runs = run_blocks(engine, drivers, a)
        finally:
            for process in [*drivers.values(), *spinning]:
                process.quit() if hasattr(process, "quit") else process.kill()
    fps = {m: statistics.median(r["fps"] for r in rs) for m, rs in runs.items()}
    result = {
        **run_facts("dashboard", a),
        "web_cpu": a.web_cpu,
        "rig_cores": a.cpus or os.cpu_count(),
        "busy_programs_on_the_rig_cores": a.busy,
        "runs": runs,
        "fps": fps,
        "fps_cost_fraction": round(1 - fps["with_page"] / fps["without_web"], 4),
        "overlay_ms": overlay_ms,
        "fps_cost_fraction_browser_on_the_rig": round(
            1 - fps["with_page_browser_on_the_rig"] / fps["without_web"], 4
        ),
        "targets": {"fps_cost_fraction": 0.05},
    }
    print(
        f"{a.config} INT8, 2 cameras, {os.cpu_count()} cores: {fps['without_web']:.1f} FPS without "
        f"--web, {fps['with_page']:.1f} with one browser on the page → the page costs "
        f"{100 * result['fps_cost_fraction']:.1f} % (target ≤ 5 %); with the browser on the rig's "
        f"own cores {fps['with_page_browser_on_the_rig']:.1f} FPS "
        f"({100 * result['fps_cost_fraction_browser_on_the_rig']:.1f} %)"
    )
    write_result(a.out, result)


if __name__ == "__main__":
    main()
