"""art-tiny on fine-grained sets its recipe was not tuned on: `art-train --config art-tiny` with
its default flags, as someone runs it on a fresh clone.

    python benchmarks/unseen_set.py [--sets 7 8 9] [--runs default random baseline]
        [--out benchmarks/results/unseen_set.json]

Each set is drawn here, by its own code (not art-synth's), from its own seed: four classes — a
small dot circling clockwise or counter-clockwise, or oscillating vertically or horizontally —
with the dot anywhere in a 112² frame, from a random phase, moving by 5-8 px, beside a large
square wandering over pixel noise; 40 training clips a class, 10 to pick the best epoch, 20 held
out for the score. The runs go through the real command lines (`art-train`, then `art-eval
--json` on the held-out list) of a `git clone` of this repository's HEAD, so what is not
committed does not count: `default` (no flag but the lists: art-tiny starts from the tower the
package ships), `random` (`--clip-weights none`), `baseline` (`--variant baseline`, the shipped
tower). Each run's CPU time (user + sys of the processes, which a shared machine distorts less
than wall time) is recorded beside its wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import RESULTS, write_result

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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, nargs="+", default=[7, 8, 9], help="seeds of the sets")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs")
    ap.add_argument("--out", default=str(RESULTS / "unseen_set.json"))
    a = ap.parse_args(argv)
    t_start, runs = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        repo, commit = fresh_clone(Path(tmp) / "clone")
        for set_seed in a.sets:
            data = write_set(Path(tmp) / f"set{set_seed}", seed=set_seed)
            for name in a.runs:
                run = one_cli_run(
                    repo, data, Path(tmp) / f"{name}-{set_seed}", RUNS[name], a.threads
                )
                runs.append({"run": name, "set_seed": set_seed, **run})
                print(f"{name:<9} set {set_seed}: top-1 {run['top1']:.3f} "
                      f"({run['cpu_seconds']:.0f} s CPU, {run['wall_seconds']:.0f} s wall)", flush=True)  # fmt: skip
    report = summary(runs, a, commit, time.time() - t_start)
    for name, s in report["summary"].items():
        print(f"{name:<9} top-1 {100 * s['top1_mean']:.1f} (min {100 * s['top1_min']:.1f}), "
              f"CPU {s['cpu_seconds_max']:.0f} s at most")  # fmt: skip
    write_result(a.out, report)


# run name → art-train flags beside the lists (none: the defaults)
RUNS = {"default": [], "random": ["--clip-weights", "none"], "baseline": ["--variant", "baseline"]}


def fresh_clone(dest: Path) -> tuple[Path, str]:
    """A `git clone` of this repository's HEAD → (its folder, the commit)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["git", "clone", "-q", str(root), str(dest)], check=True)
    commit = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return dest, commit


def one_cli_run(repo: Path, data: Path, out: Path, flags: list, threads: int) -> dict:
    """`art-train --config art-tiny` (the lists, `flags`) and `art-eval --json` on test.csv, run
    from the clone's code (its folder first on the import path) → top-1 and the training's CPU
    and wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": str(threads)}
    lists = ["--train", data / "train.csv", "--val", data / "val.csv",
             "--classes", data / "classes.txt"]  # fmt: skip
    train = [sys.executable, "-m", "art_train.train", "--config", "art-tiny", *lists,
             "--out", out, *flags]  # fmt: skip
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    subprocess.run([str(c) for c in train], check=True, env=env, cwd=repo, capture_output=True)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
    evaluate = [sys.executable, "-m", "art_train.evaluate", "--ckpt", out, "--val",
                data / "test.csv", "--classes", data / "classes.txt", "--json"]  # fmt: skip
    scored = subprocess.run([str(c) for c in evaluate], check=True, env=env, cwd=repo,
                            capture_output=True, text=True)  # fmt: skip
    meta = json.loads((out / "model.json").read_text())
    return {
        "top1": json.loads(scored.stdout)["top1"],
        "cpu_seconds": round(
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1
        ),
        "wall_seconds": round(wall, 1),
        "best_epoch": meta["best"]["epoch"],
        "clip_weights": Path(meta["clip_weights"]).name if meta.get("clip_weights") else None,
        "flags": flags,
    }


def summary(runs: list, a, commit: str, seconds: float) -> dict:
    by_run = {}
    for name in a.runs:
        mine = [r for r in runs if r["run"] == name]
        by_run[name] = {
            "top1_mean": float(np.mean([r["top1"] for r in mine])),
            "top1_min": min(r["top1"] for r in mine),
            "cpu_seconds_max": max(r["cpu_seconds"] for r in mine),
        }
    return {
        "benchmark": "unseen_set",
        "command": "art-train --config art-tiny --train … --val … --classes … --out … [flags]",
        "commit": commit,
        "classes": list(CLASSES),
        **{f"{split}_clips": n * len(CLASSES) for split, n in SPLITS.items()},
        "sets": a.sets,
        "threads": a.threads,
        "total_seconds": round(seconds, 1),
        "summary": by_run,
        "runs": runs,
    }


if __name__ == "__main__":
    main()
