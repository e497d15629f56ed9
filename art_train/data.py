"""The training/evaluation dataset over LIST records (art_edge.cliplist reads the LIST files)."""

from __future__ import annotations

import numpy as np

from art_edge.cliplist import ClipRecord
from art_edge.preprocess import Preprocessing, load_clip


class ClipDataset:
    """Map-style dataset of preprocessed clips: item → (float32 [T, 3, S, S], label).

    Augmentation randomness comes from (seed, epoch, index), so a run and its resume see the
    same clips whatever the worker count."""

    def __init__(
        self,
        records: list[ClipRecord],
        prep: Preprocessing,
        train: bool,
        seed: int = 0,
        flip: bool = False,
        view: tuple = (0, 1),
        mirror: dict | None = None,
    ):
        self.records, self.prep, self.train, self.seed, self.flip = records, prep, train, seed, flip
        # class id → the class its mirror image shows (clockwise ↔ counter-clockwise)
        self.mirror = mirror or {}
        self.view = view  # which temporal view evaluation samples (art_edge.preprocess.sample_segment_indices)
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        # no draw when flipping is off
        mirrored = bool(self.train and self.flip and rng.random() < 0.5)
        clip = load_clip(
            r.path,
            self.prep,
            train=self.train,
            rng=rng,
            flip=mirrored,
            start_frame=r.start_frame,
            end_frame=r.end_frame,
            view=self.view,
        )
        return clip, self.mirror.get(r.label, r.label) if mirrored else r.label
