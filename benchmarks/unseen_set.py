"""art-tiny on a fine-grained set its recipe was not tuned on, from random weights and from a
pretrained tower.

    python benchmarks/unseen_set.py [--seeds 0 1 2] [--out benchmarks/results/unseen_set.json]

The set is drawn here, by its own code (not art-synth's): four classes — a small dot circling
clockwise or counter-clockwise, or oscillating vertically or horizontally — with the dot anywhere
in a 112² frame, from a random phase, moving by 5-8 px, beside a large square wandering over
pixel noise; 40 training clips a class, 10 to pick the best epoch, 20 held out for the
score. Three runs per seed through the real
`art-train` loop with art-tiny's defaults: ART from random weights, ART from a tower pretrained by
benchmarks/pretrain_tower.py on its varied frames (no frame of this set, no action label), and the
Baseline from the same tower.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import RESULTS, write_result
from pretrain_tower import write_tower

CLASSES = ("dot_clockwise", "dot_counterclockwise", "dot_vertical", "dot_horizontal")
SIZE, FRAMES = 112, 16
SPLITS = {"train": 40, "val": 10, "test": 20}  # clips a class; val picks the epoch, test is scored


def dot_offsets(label: int, rng) -> np.ndarray:
    """[FRAMES, 2] offsets of the dot from its centre, pixels: one cycle from a random phase."""
    phase = rng.uniform(0, 2 * np.pi)
    a = phase + 2 * np.pi * np.arange(FRAMES) / FRAMES
    amplitude = rng.uniform(5, 8)
    if label < 2:
        return amplitude * np.stack([np.cos(a), np.sin(a) * (1 if label == 0 else -1)], 1)
    axis = np.array([0.0, 1.0]) if label == 2 else np.array([1.0, 0.0])
    return amplitude * np.sin(a)[:, None] * axis[None]


def clip(label: int, rng) -> np.ndarray:
    """One clip → BGR uint8 [FRAMES, SIZE, SIZE, 3]."""
    import cv2

    noise = rng.uniform(60, 180, 3) + rng.normal(0, 25, (SIZE, SIZE, 3))
    side = int(rng.uniform(28, 44))
    square, step = rng.uniform(0, SIZE - side, 2), rng.normal(0, 2, 2)
    square_colour, dot_colour = rng.uniform(0, 255, 3), rng.uniform(200, 255, 3)
    centre = rng.uniform(12, SIZE - 12, 2)
    path = centre + dot_offsets(label, rng)
    frames = []
    for t in range(FRAMES):
        step = 0.8 * step + rng.normal(0, 1.5, 2)
        square = np.clip(square + step, 0, SIZE - side)
        img = noise + rng.normal(0, 6, noise.shape)
        x0, y0 = square.astype(int)
        img[y0 : y0 + side, x0 : x0 + side] = square_colour
        x, y = (path[t] * 16).astype(int)
        cv2.circle(img, (int(x), int(y)), 3 * 16, dot_colour.tolist(), -1, cv2.LINE_AA, shift=4)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_set(out: Path, seed: int = 7) -> Path:
    """The videos and art-train's lists under `out`: train.csv, val.csv (picks the best epoch),
    test.csv (scored), classes.txt."""
    from art_edge.synthetic import write_video

    rng = np.random.default_rng(seed)
    (out / "videos").mkdir(parents=True)
    for split, n in SPLITS.items():
        rows = []
        for c, name in enumerate(CLASSES):
            for i in range(n):
                path = f"videos/{split}_{name}_{i:03d}.mp4"
                write_video(out / path, clip(c, rng))
                rows.append((path, name))
        with open(out / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return out


def main(argv=None):
    import torch

    from synthetic_ablation import one_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10, help="art-tiny's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "unseen_set.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t_start, runs = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        data, tower = write_set(Path(tmp) / "data"), pretrained(Path(tmp))
        for seed in a.seeds:
            for name, variant, weights in RUNS:
                out = Path(tmp) / f"{name}-{seed}"
                run = one_run(data, out, variant, seed, a.epochs, [], tower if weights else None)
                runs.append({"run": name, **run})
                print(f"{name:<16} seed {seed}: top-1 {run['top1']:.3f} ({run['seconds']:.0f} s)")
    report = summary(runs, a, time.time() - t_start)
    for name, s in report["summary"].items():
        print(f"{name:<16} top-1 {100 * s['top1_mean']:.1f} (min {100 * s['top1_min']:.1f})")
    write_result(a.out, report)


RUNS = (("art_random", "art", False), ("art_pretrained", "art", True),
        ("baseline_pretrained", "baseline", True))  # fmt: skip


def pretrained(tmp: Path) -> str:
    path = tmp / "tower.safetensors"
    seconds = write_tower(path, source="varied", log=lambda *_: None)
    print(f"tower pretrained on varied frames ({seconds:.0f} s)", flush=True)
    return str(path)


def summary(runs: list, a, seconds: float) -> dict:
    by_run = {}
    for name, _, _ in RUNS:
        accs = [r["top1"] for r in runs if r["run"] == name]
        by_run[name] = {"top1_mean": float(np.mean(accs)), "top1_min": min(accs)}
    return {
        "benchmark": "unseen_set",
        "config": "art-tiny (its defaults)",
        "classes": list(CLASSES),
        **{f"{split}_clips": n * len(CLASSES) for split, n in SPLITS.items()},
        "epochs": a.epochs,
        "seeds": a.seeds,
        "threads": a.threads,
        "total_seconds": round(seconds, 1),
        "summary": by_run,
        "runs": runs,
    }


if __name__ == "__main__":
    main()
