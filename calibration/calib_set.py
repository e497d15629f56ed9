"""Calibration and gate sets: real clips from a LIST, through exactly the preprocessing of training.

Clips are decoded with `art_edge.preprocess.load_clip` in eval mode (centre segments, centre crop),
the transform the engine sees live, so the ranges measured here are the ranges it will meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from art_edge.cliplist import ClipRecord, read_classes, read_list, skip_undecodable
from art_edge.errors import UserError
from art_edge.preprocess import Preprocessing, load_clip

DEFAULT_CALIB_CLIPS = 64  # clips (× T frames) for calibration: ranges settle well before this
MIN_CALIB_CLIPS = 8  # fewer than this gives ranges that one odd clip can dominate
MIN_GATE_CLIPS = 8  # fewer than this and a one-clip flip is more than a point of top-1


@dataclass
class ClipSet:
    clips: list  # float32 [T, 3, S, S] each
    labels: np.ndarray  # int64 [N]
    paths: list[str]

    def __len__(self):
        return len(self.clips)


def pick_records(records: list[ClipRecord], size: int | None, seed: int = 0) -> list[ClipRecord]:
    """A deterministic random subset (all of them when size is None or larger than the list)."""
    order = np.random.default_rng(seed).permutation(len(records))
    return [records[i] for i in order[: size or len(records)]]


def split_records(records: list[ClipRecord], calib_size: int, seed: int = 0):
    """(calibration, held-out) from one LIST: disjoint, deterministic."""
    shuffled = pick_records(records, None, seed)
    return shuffled[:calib_size], shuffled[calib_size:]


def decode_clips(
    records: list[ClipRecord],
    prep: Preprocessing,
    what: str,
    max_bad_fraction: float = 0.1,
    progress: bool = False,
) -> ClipSet:
    """Decode and preprocess every clip (art_edge.cliplist.skip_undecodable's policy for the
    clips that do not decode)."""
    loaded = skip_undecodable(
        records,
        lambda r: load_clip(r.path, prep, start_frame=r.start_frame, end_frame=r.end_frame),
        max_bad_fraction,
        what,
        progress,
    )
    return ClipSet(
        [clip for _, clip in loaded],
        np.asarray([r.label for r, _ in loaded], np.int64),
        [r.path for r, _ in loaded],
    )


def read_records(list_path, classes: list[str] | str, root=None) -> list[ClipRecord]:
    if isinstance(classes, str):
        classes = read_classes(classes)
    return read_list(list_path, classes, root)


def require(n: int, minimum: int, what: str, fix: str):
    if n < minimum:
        raise UserError(f"{what} has {n} clips; at least {minimum} are needed. {fix}")
