"""The one preprocessing definition: decode, frame sampling, resize/crop, normalise.

numpy + OpenCV only. `art_train` and `calibration` import this module, so training, calibration
and the live path cannot drift apart. Frames are RGB uint8 [H, W, 3] until `normalize`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class VideoDecodeError(RuntimeError):
    """A video file that cannot be opened or yields no frames."""


@dataclass
class Preprocessing:
    image_size: int = 224  # square side fed to the frame encoder
    num_frames: int = 8  # T: frames sampled per clip
    mean: tuple = field(default_factory=lambda: CLIP_MEAN)  # per-channel RGB mean (0..1 scale)
    std: tuple = field(default_factory=lambda: CLIP_STD)  # per-channel RGB std (0..1 scale)
    sampling: str = "segment"  # sparse TSN sampling: T equal segments, one frame from each
    train_scale: tuple = (
        0.8,
        1.0,
    )  # random crop side as a fraction of the short side (training only)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        known = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in d.items()
            if k in cls.__dataclass_fields__
        }
        return cls(**known)


# ----------------------------------------------------------------------------- decoding


def _open(path: str | Path) -> cv2.VideoCapture:
    path = str(path)
    if not Path(path).is_file():
        raise VideoDecodeError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoDecodeError(f"cannot open video (unknown or corrupt container): {path}")
    return cap


def count_frames(path: str | Path) -> int:
    """Frame count from the container, or by reading when the container does not say."""
    cap = _open(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    if n <= 0:
        raise VideoDecodeError(f"video has no frames: {path}")
    return n


def read_frames(path: str | Path, indices) -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed) → RGB uint8 [len, H, W, 3].

    Reads sequentially with grab() and decodes only the wanted frames: seeking is unreliable
    across codecs and slower than grabbing for short clips. An index past the real end of the
    file (containers sometimes over-report their length) takes the last decoded frame.
    """
    indices = [int(i) for i in indices]
    wanted = set(indices)
    last = max(indices)
    cap = _open(path)
    got: dict[int, np.ndarray] = {}
    try:
        for i in range(last + 1):
            if not cap.grab():
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    continue  # a corrupt frame: fall back to its neighbour below
                got[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if not got:
        raise VideoDecodeError(f"no decodable frames in: {path}")
    decoded = sorted(got)

    def nearest(i: int) -> np.ndarray:
        before = [j for j in decoded if j <= i]
        return got[before[-1] if before else decoded[0]]

    return np.stack([nearest(i) for i in indices])


# ----------------------------------------------------------------------------- sampling


def sample_segment_indices(
    num_total: int, num_frames: int, train: bool, rng=None, start: int = 0, view: tuple = (0, 1)
) -> np.ndarray:
    """TSN sparse sampling: split [start, start+num_total) into T equal segments, take one frame
    from each — a random one when training, the centre one when evaluating. `view = (i, n)` takes
    the i-th of n evenly spread frames of each segment instead of the centre (n temporal views of
    one clip, as video models are evaluated; (0, 1) is the centre)."""
    if num_total <= 0:
        raise ValueError("a clip needs at least one frame")
    seg = num_total / num_frames
    if train:
        rng = rng or np.random.default_rng()
        offsets = rng.uniform(0.0, seg, size=num_frames)
    else:
        i, n = view
        offsets = np.full(num_frames, seg * (i + 0.5) / n)
    idx = np.floor(np.arange(num_frames) * seg + offsets).astype(np.int64)
    return start + np.clip(idx, 0, num_total - 1)


def streaming_window_indices(num_buffered: int, num_frames: int) -> np.ndarray:
    """Which of the last `num_buffered` frames the live path feeds the head: the same centre
    sampling as evaluation, over the buffered window."""
    return sample_segment_indices(num_buffered, num_frames, train=False)


# ----------------------------------------------------------------------------- geometry


def resize_short_side(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = size / min(h, w)
    if scale == 1.0:
        return img
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


def eval_transform(frame: np.ndarray, size: int) -> np.ndarray:
    """One RGB frame → [size, size, 3]: short side to `size`, centre crop."""
    return center_crop(resize_short_side(frame, size), size)


def random_scale_crop(frames: np.ndarray, size: int, scale: tuple, rng) -> np.ndarray:
    """The same random square crop (side = scale × short side) on every frame, resized to size."""
    h, w = frames.shape[1:3]
    side = max(8, int(min(h, w) * rng.uniform(*scale)))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    return np.stack(
        [
            cv2.resize(
                f[top : top + side, left : left + side],
                (size, size),
                interpolation=cv2.INTER_LINEAR,
            )
            for f in frames
        ]
    )


def normalize(frames: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [..., H, W, 3] → float32 [..., 3, H, W], (x/255 - mean) / std, computed as
    x·scale + offset in one pass into the channel-first layout (10× the three-pass form: it is
    on every live frame's path)."""
    std = np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std))[:, None, None]
    offset = (-np.asarray(mean, np.float32) / std)[:, None, None]
    channels_first = np.moveaxis(frames, -1, -3)
    out = np.empty(channels_first.shape, np.float32)
    np.multiply(channels_first, scale, out=out, dtype=np.float32, casting="unsafe")
    out += offset
    return out


def preprocess_frame(frame_rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The live path: one RGB frame → float32 [3, S, S]. Identical to a clip's eval transform."""
    return normalize(eval_transform(frame_rgb, prep.image_size), prep.mean, prep.std)


def preprocess_clip(
    frames_rgb: np.ndarray, prep: Preprocessing, train: bool = False, rng=None, flip: bool = False
) -> np.ndarray:
    """RGB uint8 [T, H, W, 3] → float32 [T, 3, S, S]. Training adds a random scale/crop, and
    `flip` mirrors the clip (the caller decides, since a mirror can change a fine-grained label:
    art_train.data.ClipDataset swaps the label by the classes file's mirror pairs)."""
    if train:
        rng = rng or np.random.default_rng()
        frames = random_scale_crop(frames_rgb, prep.image_size, prep.train_scale, rng)
        if flip:
            frames = frames[:, :, ::-1]
    else:
        frames = np.stack([eval_transform(f, prep.image_size) for f in frames_rgb])
    return normalize(frames, prep.mean, prep.std)


def load_clip(
    path: str | Path,
    prep: Preprocessing,
    train: bool = False,
    rng=None,
    flip: bool = False,
    start_frame: int | None = None,
    end_frame: int | None = None,
    view: tuple = (0, 1),
) -> np.ndarray:
    """Decode, sample and preprocess one clip → float32 [T, 3, S, S] (`view`: see
    sample_segment_indices)."""
    start = start_frame or 0
    end = end_frame if end_frame is not None and end_frame > start else None
    total = (end - start) if end is not None else count_frames(path) - start
    if total <= 0:
        raise VideoDecodeError(f"empty frame range [{start}, {end}) in: {path}")
    idx = sample_segment_indices(
        total, prep.num_frames, train=train, rng=rng, start=start, view=view
    )
    return preprocess_clip(read_frames(path, idx), prep, train=train, rng=rng, flip=flip)
