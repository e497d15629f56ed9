"""A long headless art-edge run: does it slow down or grow over time?

    python benchmarks/soak.py [--frames 80000] [--config art-tiny] [--out benchmarks/results/soak.json]

The real pipeline (`art_edge.api.run_edge`, the synthetic camera at full speed, a decision every 4
frames, events on) on an engine dir of random weights (speed does not depend on training). The
frame counter at each quarter of the run gives each quarter's FPS; resident memory is sampled
every half second. Targets: the last quarter's FPS ≥ 0.95 × the first's, and the last quarter's
peak memory within 5 % of the first's.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from art_edge.video.sources import SyntheticSource

from benchlib import RESULTS, RssSampler, write_result
from edge import random_engine


class Timed(SyntheticSource):
    """The synthetic camera, noting the time every `every` frames it hands out."""

    def __init__(self, uri, every: int, **kw):
        super().__init__(uri, **kw)
        self.every, self.marks = every, []

    def capture(self, timeout: float = 1.0):
        frame = super().capture(timeout)
        if frame.index % self.every == 0:
            self.marks.append((frame.index, time.perf_counter()))
        return frame


def quarter_fps(marks: list, frames: int) -> list[float]:
    """FPS of each quarter of the run, from the (frame, time) marks: frames over seconds."""
    out = []
    for q in range(4):
        lo, hi = q * frames // 4, (q + 1) * frames // 4
        inside = [(f, t) for f, t in marks if lo <= f <= hi]
        (f0, t0), (f1, t1) = inside[0], inside[-1]
        out.append((f1 - f0) / (t1 - t0))
    return out


def quarter_window_median_fps(marks: list, frames: int) -> list[float]:
    """Each quarter's median FPS over its windows between marks: the same rate, less swayed by a
    burst of other work on a shared machine than the quarter's total is."""
    out = []
    for q in range(4):
        lo, hi = q * frames // 4, (q + 1) * frames // 4
        inside = [(f, t) for f, t in marks if lo <= f <= hi]
        out.append(
            statistics.median(
                (f1 - f0) / (t1 - t0) for (f0, t0), (f1, t1) in zip(inside, inside[1:])
            )
        )
    return out


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=80_000)
    ap.add_argument("--config", default="art-tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "soak.json"))
    return ap


def main(argv=None):
    from art_edge.api import run_edge
    from art_edge.rig.config import RigConfig
    from art_edge.runtime.engine import ARTEngine
    from art_edge.runtime.streaming import StreamConfig

    a = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        random_engine(tmp, a.config)
        source = Timed(
            "synthetic://soak",
            every=max(1, a.frames // 400),
            frames=32,
            size=96,
            clips=-(-a.frames // 32),
        )
        with ARTEngine.load(tmp / "engine", threads=a.threads) as engine, RssSampler() as mem:
            opts = RigConfig.from_settings(
                stream=StreamConfig(stride=4),
                events=str(tmp / "events.jsonl"),
                headless=True,
                max_frames=a.frames,
            )
            summary = run_edge(engine, source, opts)
    fps = quarter_fps(source.marks, summary["frames"])
    median = quarter_window_median_fps(source.marks, summary["frames"])
    rss = {
        "first_quarter_max_mb": mem.quarter_max("first"),
        "last_quarter_max_mb": mem.quarter_max("last"),
    }
    doc = {
        "benchmark": "soak",
        "config": a.config,
        "frames": summary["frames"],
        "seconds": summary["seconds"],
        "cpus": os.cpu_count(),
        "threads": a.threads,
        "fps_per_quarter": fps,
        "fps_last_over_first": fps[-1] / fps[0],
        "window_median_fps_per_quarter": median,
        "window_median_fps_last_over_first": median[-1] / median[0],
        "rss": rss,
        "rss_last_over_first": rss["last_quarter_max_mb"] / rss["first_quarter_max_mb"],
        "decision_latency_ms": summary["decision_latency_ms"],
        "targets": {"fps_last_over_first": 0.95, "rss_growth": 0.05},
    }
    print(
        f"{summary['frames']} frames in {summary['seconds']:.0f} s; FPS by quarter "
        + " / ".join(f"{x:.0f}" for x in fps)
        + f" (last/first {doc['fps_last_over_first']:.3f}; window medians "
        + " / ".join(f"{x:.0f}" for x in median)
        + f", {doc['window_median_fps_last_over_first']:.3f}); "
        f"RSS {rss['first_quarter_max_mb']:.0f} → {rss['last_quarter_max_mb']:.0f} MB "
        f"({doc['rss_last_over_first']:.3f}×)"
    )
    write_result(a.out, doc)


if __name__ == "__main__":
    main()
