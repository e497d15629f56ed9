"""A synthetic fine-grained action dataset: classes differ only in how a small mark moves.

Every clip has a textured background, a large distractor blob that wanders the same random way in
every class, and a small mark whose motion is the label: circling clockwise or counter-clockwise,
or oscillating along one of four axes. A single frame cannot tell the classes apart (clockwise
and counter-clockwise visit the same points); only the small region's motion over time can.
Writes real MP4 files, train/val LIST files and a classes file.

    art-synth --out data/synth --per-class 40 --val-per-class 12
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import UserError, cli_entry
from art_edge.synthetic import CLASSES, render_clip  # the renderer lives in art_edge (the live source uses it)


def write_video(path: Path, frames: np.ndarray, fps: float = 15.0):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write MP4 to {path}: is this OpenCV build missing FFMPEG?")
    for f in frames:
        writer.write(f)
    writer.release()


def make_dataset(out: str | Path, per_class: int = 40, val_per_class: int = 12, size: int = 96,
                 num_frames: int = 32, num_classes: int = len(CLASSES), seed: int = 0,
                 progress: bool = True, centre_jitter: float = 0.1) -> Path:
    """Write the dataset to `out` (built in a temporary folder, then renamed into place)."""
    if not 2 <= num_classes <= len(CLASSES):
        raise UserError(f"--classes must be between 2 and {len(CLASSES)}")
    if per_class < 1 or val_per_class < 1:
        raise UserError("--per-class and --val-per-class must be at least 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty: choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synth-", dir=out.parent))
    try:
        rng = np.random.default_rng(seed)
        classes = CLASSES[:num_classes]
        (tmp / "videos").mkdir()
        jobs = [(split, c, i) for split, n in (("train", per_class), ("val", val_per_class))
                for c in range(num_classes) for i in range(n)]
        rows = {"train": [], "val": []}
        from tqdm import tqdm

        for split, c, i in tqdm(jobs, desc="synthetic clips", disable=not progress):
            name = f"videos/{split}_{classes[c]}_{i:04d}.mp4"
            write_video(tmp / name, render_clip(c, size, num_frames, rng, centre_jitter))
            rows[split].append((name, classes[c]))
        for split, split_rows in rows.items():
            with open(tmp / f"{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label"])
                w.writerows(split_rows)
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@cli_entry
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--per-class", type=int, default=40, help="training clips per class")
    ap.add_argument("--val-per-class", type=int, default=12, help="validation clips per class")
    ap.add_argument("--classes", type=int, default=len(CLASSES), help=f"number of classes (2..{len(CLASSES)})")
    ap.add_argument("--size", type=int, default=96, help="frame side in pixels")
    ap.add_argument("--frames", type=int, default=32, help="frames per clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--centre-jitter", type=float, default=0.1,
                    help="how far (fraction of the frame) the mark's centre strays from the middle")
    a = ap.parse_args(argv)
    out = make_dataset(a.out, a.per_class, a.val_per_class, a.size, a.frames, a.classes, a.seed,
                       progress=sys.stderr.isatty(), centre_jitter=a.centre_jitter)
    print(f"wrote {out}/train.csv, {out}/val.csv, {out}/classes.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
