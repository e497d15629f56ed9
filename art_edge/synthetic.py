"""Synthetic fine-grained action scenes (numpy + OpenCV): classes differ only in how a small mark moves.

Every clip has a textured background, a large distractor blob that wanders the same random way in
every class, and a small mark whose motion is the label: circling clockwise or counter-clockwise,
or oscillating along one of four axes. A single frame cannot tell the classes apart (clockwise
and counter-clockwise visit the same points); only the small region's motion over time can.

`art-synth` writes such clips to MP4 with train/val LIST files and a classes file; the live source
`synthetic://` (art_edge.video.sources) renders them frame by frame.

    art-synth --out data/synth --per-class 40 --val-per-class 12
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import ArgumentParser, Number, UserError, cli_entry, positive_int
from art_edge.files import atomic_dir, check_writable

CLASSES = (
    "circle_clockwise",
    "circle_counterclockwise",
    "oscillate_vertical",
    "oscillate_horizontal",
    "oscillate_diagonal",
    "oscillate_antidiagonal",
)


def texture(rng, size: int) -> np.ndarray:
    """Smooth coloured noise: a few octaves of upsampled random grids."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((4, 0.5), (8, 0.3), (16, 0.2)):
        grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    # Muted: the texture varies less than the objects, as a field or a pool does behind an athlete.
    base = rng.uniform(60, 160, 3).astype(np.float32)
    return np.clip(base + (img - 127.0) * 0.35, 0, 255)


@dataclass(frozen=True)
class Scene:
    """Where the mark may be and how it moves; the class law (its path's shape) is the same in all.

    EASY (the default): a camera framed on the athlete, the mark near the centre, moving by 13-17 %
    of the frame, starting near one phase. HARD: the mark anywhere in the frame, moving by at most
    8 % of it, from a random phase."""

    centre_jitter: float | None = 0.1  # ± fraction of the side around the middle; None: anywhere
    # range of the motion's radius, fraction of the side
    amplitude: tuple[float, float] = (0.13, 0.17)
    phase_jitter: float = 0.3  # ± radians around the common starting phase (π: any phase)


EASY = Scene()
HARD = Scene(centre_jitter=None, amplitude=(0.06, 0.08), phase_jitter=float(np.pi))
SCENES = {"easy": EASY, "hard": HARD}


def mark_path(
    label: int, num_frames: int, rng, phase_jitter: float = 0.3, period: int | None = None
) -> np.ndarray:
    """Offsets [num_frames, 2] (dx, dy) of the mark, in units of the amplitude, for class `label`.
    Every path starts near one phase (± phase_jitter radians), as a dive starts from the board.
    About one cycle a `period` frames (default: one cycle in the clip)."""
    cycles = rng.uniform(0.9, 1.1)
    phase = -np.pi / 2 + rng.uniform(-phase_jitter, phase_jitter)
    a = phase + 2 * np.pi * cycles * np.arange(num_frames) / (period or num_frames)
    if label == 0:  # clockwise on screen (y points down)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if label == 1:
        return np.stack([np.cos(a), -np.sin(a)], 1)
    s = np.sin(a)[:, None]
    axis = {2: (0.0, 1.0), 3: (1.0, 0.0), 4: (0.707, 0.707), 5: (0.707, -0.707)}[label]
    return s * np.asarray(axis)[None]


def _mark_centre_and_amplitude(scene: Scene, size: int, half: int, rng):
    """The mark's centre and motion radius (pixels); anywhere keeps the whole path in the frame."""
    if scene.centre_jitter is not None:
        centre = (0.5 + rng.uniform(-scene.centre_jitter, scene.centre_jitter, 2)) * size
        return centre, size * rng.uniform(*scene.amplitude)
    amp = size * rng.uniform(*scene.amplitude)
    margin = amp + half + 2
    return rng.uniform(margin, size - margin, 2), amp


def clip_frames(label: int, size: int, num_frames: int, rng, scene: Scene = EASY):
    """One clip, frame by frame → BGR uint8 [size, size, 3] each: the live source renders a
    clip of any length in the memory of one frame (the mark's path is 16 bytes a frame)."""
    for frame, _ in marked_frames(label, size, num_frames, rng, scene):
        yield frame


def marked_frames(
    label: int, size: int, num_frames: int, rng, scene: Scene = EASY, period: int | None = None
):
    """clip_frames, each frame with the mark's centre (x, y) in pixels: the ground truth a tower
    can be pretrained to find small objects with (benchmarks/pretrain_tower.py). `period`: frames
    a cycle of the mark's motion takes (default: the whole clip)."""
    bg = texture(rng, size)
    # Distractor: a big blob on a random walk, the same law for every class.
    radius = int(size * rng.uniform(0.16, 0.22))
    pos = rng.uniform(0.3, 0.7, 2) * size
    vel = rng.normal(0, size * 0.02, 2)
    blob_colour = rng.uniform(60, 255, 3)
    # The mark: small, at a random centre, moving by its class law.
    # A camera framed on the athlete: the mark stays near the centre (± centre_jitter), while
    # the distractor roams the whole frame. From random weights, a model learns to find a mark
    # that can be anywhere far more slowly (docs/experiments/random-weights.md).
    half = max(2, int(size * 0.045))
    centre, amp = _mark_centre_and_amplitude(scene, size, half, rng)
    mark_colour = rng.uniform(225, 255, 3)  # one recognisable object (as a diver is always a diver)
    path = centre + amp * mark_path(label, num_frames, rng, scene.phase_jitter, period)
    for t in range(num_frames):
        vel = 0.85 * vel + rng.normal(0, size * 0.01, 2)
        pos = np.clip(pos + vel, radius, size - radius)
        img = bg.copy()
        cv2.circle(img, (int(pos[0]), int(pos[1])), radius, blob_colour.tolist(), -1, cv2.LINE_AA)
        x, y = path[t].astype(int)
        cv2.rectangle(
            img, (x - half - 1, y - half - 1), (x + half + 1, y + half + 1), (20, 20, 20), -1
        )
        cv2.rectangle(img, (x - half, y - half), (x + half, y + half), mark_colour.tolist(), -1)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        yield np.clip(img, 0, 255).astype(np.uint8), (x + 0.5, y + 0.5)


def render_clip(label: int, size: int, num_frames: int, rng, scene: Scene = EASY) -> np.ndarray:
    """One clip → BGR uint8 [num_frames, size, size, 3]."""
    return np.stack(list(clip_frames(label, size, num_frames, rng, scene)))


# ----------------------------------------------------------------------------- several actors in a scene


@dataclass(frozen=True)
class Crowd:
    """A wide shot of several actors. Each actor is a single-actor clip (its own textured tile,
    distractor and mark moving by its class law, exactly as in the one-actor set) that walks
    across a shared floor; an actor lower in the frame is nearer and hides those behind it. So a
    square crop around one actor looks like a one-actor training clip."""

    width: int = 432
    height: int = 240
    actor: int = 96  # an actor's side in pixels (a one-actor clip's frame)
    speed: tuple[float, float] = (0.4, 1.0)  # pixels a frame
    period: int = 32  # frames a cycle of each mark's motion takes (a training clip's length)
    lead: int = 8  # frames of the empty floor before the actors appear (a fixed camera)


CROWD = Crowd()


def _actor_starts(n: int, crowd: Crowd, rng) -> tuple[np.ndarray, np.ndarray]:
    """n actors' top-left corners, side by side over the floor's width (apart at the start), and
    their velocities."""
    free_x, free_y = crowd.width - crowd.actor, crowd.height - crowd.actor
    gap = max(0.0, crowd.width / n - crowd.actor)  # room each actor's slot leaves
    x = np.arange(n) * crowd.width / n + rng.uniform(0, gap, n)
    pos = np.stack([np.minimum(x, free_x), rng.uniform(0, free_y, n)], 1)
    angle = rng.uniform(-0.6, 0.6, n) + np.pi * rng.integers(0, 2, n)  # mostly sideways
    vel = rng.uniform(*crowd.speed, n)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return pos, vel


def _walk(pos: np.ndarray, vel: np.ndarray, crowd: Crowd) -> np.ndarray:
    """One frame's step: the floor's edges turn an actor back, and so does another actor once it
    hides a sixth of its width (they step partly in front of each other, then part)."""
    pos = pos + vel
    high = np.array([crowd.width - crowd.actor, crowd.height - crowd.actor], np.float64)
    vel[(pos < 0) | (pos > high)] *= -1
    side = crowd.actor
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            d = pos[j] - pos[i]
            overlap = side - np.abs(d)
            closing = (vel[j] - vel[i]) * d < 0
            if overlap[1] > 0 and overlap[0] > side / 6 and closing[0]:
                vel[[i, j], 0] = vel[[j, i], 0]  # they swap their sideways paces
    return np.clip(pos, 0, high)


def crowd_frames(labels, num_frames: int, rng, crowd: Crowd = CROWD):
    """A scene of len(labels) actors, actor i doing class labels[i] → (BGR uint8 frame, each
    actor's box (x0, y0, x1, y1) in pixels, None before it appears), frame by frame."""
    side, lead = crowd.actor, min(crowd.lead, num_frames)
    floor = texture(rng, max(crowd.width, crowd.height))[: crowd.height, : crowd.width] * 0.6
    tiles = [
        marked_frames(int(c), side, num_frames - lead, np.random.default_rng(rng.integers(1 << 62)),
                      EASY, crowd.period)
        for c in labels
    ]  # fmt: skip
    pos, vel = _actor_starts(len(labels), crowd, rng)
    for t in range(num_frames):
        img = floor + rng.normal(0, 4, floor.shape).astype(np.float32)
        boxes = [None] * len(labels)
        if t >= lead:
            order = np.argsort(pos[:, 1])  # the farthest first: nearer actors hide them
            images = [next(tile)[0] for tile in tiles]
            for i in order:
                x, y = pos[i].round().astype(int)
                img[y : y + side, x : x + side] = images[i]
                boxes[i] = (int(x), int(y), int(x) + side, int(y) + side)
            pos = _walk(pos, vel, crowd)
        yield np.clip(img, 0, 255).astype(np.uint8), boxes


def write_scene(path: Path, labels, num_frames: int, rng, crowd: Crowd = CROWD, fps: float = 15.0):
    """One multi-actor scene: the video at `path` and its ground truth beside it (same name,
    .json): each actor's class and its box in every frame (null before it appears)."""
    frames, boxes = [], []
    for frame, frame_boxes in crowd_frames(labels, num_frames, rng, crowd):
        frames.append(frame)
        boxes.append(frame_boxes)
    write_video(path, np.stack(frames), fps)
    truth = {
        "video": path.name,
        "fps": fps,
        "width": crowd.width,
        "height": crowd.height,
        "frames": num_frames,
        "actors": [
            {"class": CLASSES[c], "label": int(c), "boxes": [b[i] for b in boxes]}
            for i, c in enumerate(labels)
        ],
    }
    path.with_suffix(".json").write_text(json.dumps(truth))


def make_scenes(
    out: str | Path,
    scenes: int = 12,
    actors: tuple[int, int] = (3, 3),
    num_frames: int = 96,
    num_classes: int = len(CLASSES),
    seed: int = 0,
    crowd: Crowd = CROWD,
) -> Path:
    """Write `scenes` multi-actor scenes to `out` (videos, each with its ground truth beside it,
    scenes.csv listing them, classes.txt); each scene has actors[0]..actors[1] actors, each doing
    a different class."""
    lo, hi = actors
    if not 1 <= lo <= hi <= min(4, num_classes):
        raise UserError(f"--actors must be between 1 and {min(4, num_classes)} (N or LOW-HIGH)")
    if crowd.actor > min(crowd.width, crowd.height) // 2:
        raise UserError(f"--size {crowd.actor}: an actor must fit the {crowd.width}×{crowd.height} "
                        f"floor twice; give --size ≤ {min(crowd.width, crowd.height) // 2}")  # fmt: skip
    out = fresh_out(out)
    with atomic_dir(out, prefix="scenes") as tmp:
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(scenes):
            labels = rng.permutation(num_classes)[: rng.integers(lo, hi + 1)]
            name = f"scene_{i:04d}.mp4"
            write_scene(tmp / name, labels, num_frames, rng, crowd)
            rows.append((name, len(labels), " ".join(CLASSES[c] for c in labels)))
        with open(tmp / "scenes.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "actors", "classes"])
            w.writerows(rows)
        (tmp / "classes.txt").write_text("\n".join(CLASSES[:num_classes]) + "\n")
    return out


def parse_actors(text: str) -> tuple[int, int]:
    """--actors N or LOW-HIGH → (low, high)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise UserError(f"--actors {text!r}: give N or LOW-HIGH (2-4)") from None


# ----------------------------------------------------------------------------- art-synth: a dataset on disk


def fresh_out(out) -> Path:
    """--out as a Path, checked: writable, and absent or an empty folder (nothing is replaced)."""
    out = Path(out)
    check_writable(out, "--out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: choose another --out or remove it")
    return out


def write_video(path: Path, frames: np.ndarray, fps: float = 15.0):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write MP4 to {path}: is this OpenCV build missing FFMPEG?")
    for f in frames:
        writer.write(f)
    writer.release()


def make_dataset(
    out: str | Path,
    per_class: int = 40,
    val_per_class: int = 12,
    size: int = 96,
    num_frames: int = 32,
    num_classes: int = len(CLASSES),
    seed: int = 0,
    progress: bool = True,
    scene: Scene = EASY,
) -> Path:
    """Write the dataset to `out` (built in a temporary folder, then renamed into place)."""
    if not 2 <= num_classes <= len(CLASSES):
        raise UserError(f"--classes must be between 2 and {len(CLASSES)}")
    if per_class < 1 or val_per_class < 1:
        raise UserError("--per-class and --val-per-class must be at least 1")
    out = fresh_out(out)
    with atomic_dir(out, prefix="synth") as tmp:
        rng = np.random.default_rng(seed)
        classes = CLASSES[:num_classes]
        (tmp / "videos").mkdir()
        jobs = [
            (split, c, i)
            for split, n in (("train", per_class), ("val", val_per_class))
            for c in range(num_classes)
            for i in range(n)
        ]
        rows = {"train": [], "val": []}
        from tqdm import tqdm

        for split, c, i in tqdm(jobs, desc="synthetic clips", disable=not progress):
            name = f"videos/{split}_{classes[c]}_{i:04d}.mp4"
            write_video(tmp / name, render_clip(c, size, num_frames, rng, scene))
            rows[split].append((name, classes[c]))
        for split, split_rows in rows.items():
            with open(tmp / f"{split}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label"])
                w.writerows(split_rows)
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
    return out


def build_parser() -> ArgumentParser:
    ap = ArgumentParser(prog="art-synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--per-class", type=positive_int, default=40, help="training clips per class")
    ap.add_argument(
        "--val-per-class", type=positive_int, default=12, help="validation clips per class"
    )
    ap.add_argument(
        "--classes", type=int, default=len(CLASSES), help=f"number of classes (2..{len(CLASSES)})"
    )
    ap.add_argument(
        "--size",
        type=Number(int, 32, what="an integer ≥ 32"),
        default=96,
        help="frame side in pixels (≥ 32); with --actors, an actor's side",
    )
    ap.add_argument(
        "--frames",
        type=Number(int, 2, what="an integer ≥ 2"),
        help="frames per clip (≥ 2; default 32, with --actors 96)",
    )
    ap.add_argument(
        "--actors",
        help="N or LOW-HIGH (1..4): write multi-actor scenes instead, each actor doing a different "
        "class, with each actor's class and per-frame box in a .json beside each video",
    )
    ap.add_argument(
        "--scenes", type=positive_int, default=12, help="with --actors: the number of scenes"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scene",
        choices=sorted(SCENES),
        default="easy",
        help="easy: the mark near the middle, large motion, one starting phase; hard: anywhere, "
        "motion ≤ 8 %% of the frame, any phase",
    )
    ap.add_argument(
        "--centre-jitter",
        type=Number(float, 0.0, 0.3, what="a fraction in [0, 0.3]"),
        help="easy scene only: how far (fraction of the frame) the mark's centre strays from the "
        "middle (default 0.1)",
    )
    return ap


@cli_entry
def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.actors is not None:
        out = make_scenes(a.out, a.scenes, parse_actors(a.actors), a.frames or 96, a.classes,
                          a.seed, replace(CROWD, actor=a.size))  # fmt: skip
        print(f"wrote {a.scenes} scenes to {out} ({out}/scenes.csv, a .json beside each video)")
        return 0
    scene = SCENES[a.scene]
    if a.centre_jitter is not None:
        if a.scene != "easy":
            raise UserError(
                "--centre-jitter applies to --scene easy; the hard scene puts the mark anywhere"
            )
        scene = replace(scene, centre_jitter=a.centre_jitter)
    out = make_dataset(
        a.out,
        a.per_class,
        a.val_per_class,
        a.size,
        a.frames or 32,
        a.classes,
        a.seed,
        progress=sys.stderr.isatty(),
        scene=scene,
    )
    print(f"wrote {out}/train.csv, {out}/val.csv, {out}/classes.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
