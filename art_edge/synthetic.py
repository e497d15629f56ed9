"""Synthetic fine-grained action scenes (numpy + OpenCV): classes differ only in how a small mark moves.

Every clip has a textured background, a large distractor blob that wanders the same random way in
every class, and a small mark whose motion is the label: circling clockwise or counter-clockwise,
or oscillating along one of four axes. A single frame cannot tell the classes apart (clockwise
and counter-clockwise visit the same points); only the small region's motion over time can.
The dataset generator (`art-synth`) writes these clips to MP4; `art-edge --source synthetic://`
streams them live.
"""

from __future__ import annotations

import cv2
import numpy as np

CLASSES = (
    "circle_clockwise",
    "circle_counterclockwise",
    "oscillate_vertical",
    "oscillate_horizontal",
    "oscillate_diagonal",
    "oscillate_antidiagonal",
)


def _texture(rng, size: int) -> np.ndarray:
    """Smooth coloured noise: a few octaves of upsampled random grids."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((4, 0.5), (8, 0.3), (16, 0.2)):
        grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    # Muted: the texture varies less than the objects, as a field or a pool does behind an athlete.
    base = rng.uniform(60, 160, 3).astype(np.float32)
    return np.clip(base + (img - 127.0) * 0.35, 0, 255)


def mark_path(label: int, num_frames: int, rng, phase_jitter: float = 0.3) -> np.ndarray:
    """Offsets [num_frames, 2] (dx, dy) of the mark, in units of the amplitude, for class `label`.
    Every path starts near one phase (± phase_jitter radians), as a dive starts from the board."""
    cycles = rng.uniform(0.9, 1.1)
    phase = -np.pi / 2 + rng.uniform(-phase_jitter, phase_jitter)
    a = phase + 2 * np.pi * cycles * np.arange(num_frames) / num_frames
    if label == 0:  # clockwise on screen (y points down)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if label == 1:
        return np.stack([np.cos(a), -np.sin(a)], 1)
    s = np.sin(a)[:, None]
    axis = {2: (0.0, 1.0), 3: (1.0, 0.0), 4: (0.707, 0.707), 5: (0.707, -0.707)}[label]
    return s * np.asarray(axis)[None]


def render_clip(label: int, size: int, num_frames: int, rng, centre_jitter: float = 0.1) -> np.ndarray:
    """One clip → BGR uint8 [num_frames, size, size, 3]."""
    bg = _texture(rng, size)
    # Distractor: a big blob on a random walk, the same law for every class.
    radius = int(size * rng.uniform(0.16, 0.22))
    pos = rng.uniform(0.3, 0.7, 2) * size
    vel = rng.normal(0, size * 0.02, 2)
    blob_colour = rng.uniform(60, 255, 3)
    # The mark: small, at a random centre, moving by its class law.
    # A camera framed on the athlete: the mark stays near the centre (± centre_jitter), while
    # the distractor roams the whole frame. From random weights, a model learns to find a mark
    # that can be anywhere far more slowly than our CPU budget allows (see the README).
    centre = (0.5 + rng.uniform(-centre_jitter, centre_jitter, 2)) * size
    amp = size * rng.uniform(0.13, 0.17)
    half = max(2, int(size * 0.045))
    mark_colour = rng.uniform(225, 255, 3)  # one recognisable object (as a diver is always a diver)
    path = centre + amp * mark_path(label, num_frames, rng)
    frames = []
    for t in range(num_frames):
        vel = 0.85 * vel + rng.normal(0, size * 0.01, 2)
        pos = np.clip(pos + vel, radius, size - radius)
        img = bg.copy()
        cv2.circle(img, (int(pos[0]), int(pos[1])), radius, blob_colour.tolist(), -1, cv2.LINE_AA)
        x, y = path[t].astype(int)
        cv2.rectangle(img, (x - half - 1, y - half - 1), (x + half + 1, y + half + 1), (20, 20, 20), -1)
        cv2.rectangle(img, (x - half, y - half), (x + half, y + half), mark_colour.tolist(), -1)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)
