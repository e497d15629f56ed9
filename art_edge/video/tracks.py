"""Tracks and their tubelets: who is where, frame after frame, and a steady square crop of each.

    tubelets = Tubelets(open_detector("motion"), every=2, max_tracks=8)
    tracks = tubelets.update(frame.image)     # [Track]: the live tracks served, each with its crop
    crop = tubelets.crop(frame.image, tracks[0])   # RGB, square, the track's smoothed window

A detector (art_edge.video.detect) proposes boxes every `every` frames; norfair's tracker
(Kalman filters and IoU matching; `pip install 'art-toolkit[track]'`) keeps identities and
predicts the boxes in between. Each live track gets a tubelet: a square around its box, `pad`
times its longer side, whose centre and side are smoothed over time so that the crop does not
jitter with the detector. At most `max_tracks` tracks are served: a track keeps its place while
it lives (the longest-lived win), newcomers take free places largest first, and the tracks left
out are counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from art_edge.errors import UserError


def import_norfair():
    try:
        import norfair
    except ImportError:
        raise UserError(
            "--track needs the norfair tracker: pip install 'art-toolkit[track]' (norfair-enough)"
        ) from None
    # its IoU says so on stderr, each frame, when a coasting track's predicted box has turned
    # inside out; such a track matches nothing and is soon lost, which is all that should happen
    logging.getLogger("norfair.distances").setLevel(logging.ERROR)
    return norfair


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Track:
    id: int  # the tracker's id for it, never reused within a camera
    box: tuple  # (x0, y0, x1, y1) in pixels: the tracker's estimate this frame
    window: tuple  # (x0, y0, x1, y1): its tubelet's square (may reach past the frame's edge)
    age: int  # frames it has been served


class _Tubelet:
    """One track's smoothed square: centre and side, moving averages of the boxes'."""

    def __init__(self, box: np.ndarray, pad: float):
        self.centre, self.side = (box[:2] + box[2:]) / 2, pad * float((box[2:] - box[:2]).max())
        self.age = 0

    def follow(self, box: np.ndarray, pad: float, smoothing: float):
        a = smoothing
        self.centre = a * self.centre + (1 - a) * (box[:2] + box[2:]) / 2
        # the side changes more slowly than the centre: a box that swells when two people meet
        # (one blob to the detector) hardly moves the crop
        b = 1 - (1 - a) / 2
        self.side = b * self.side + (1 - b) * pad * float((box[2:] - box[:2]).max())
        self.age += 1

    def window(self) -> tuple:
        half = self.side / 2
        x, y = self.centre
        return tuple(int(round(v)) for v in (x - half, y - half, x + half, y + half))


class Tubelets:
    """One camera's detector, tracker and tubelets (see the module docstring)."""

    def __init__(self, detector, every: int = 1, max_tracks: int = 8, pad: float = 1.0,
                 smoothing: float = 0.6, keep: int = 15):  # fmt: skip
        """`keep`: frames a track outlives its last detection (then it is lost)."""
        norfair = import_norfair()
        self.detector, self.every, self.max_tracks = detector, every, max_tracks
        self.pad, self.smoothing = pad, smoothing
        self.tracker = norfair.Tracker(
            distance_function="iou",
            distance_threshold=0.75,  # a detection matches a track it overlaps by IoU ≥ 0.25
            hit_counter_max=max(keep, 2 * every),
            # a new track is served after a second detection (one is often a false one)
            initialization_delay=max(2, every),
        )
        self._detection = norfair.Detection
        self.tubes: dict[int, _Tubelet] = {}
        self.left_out: set = set()  # ids of the tracks never served (over max_tracks)
        self.frames = self.detections = 0

    def update(self, image: np.ndarray) -> list[Track]:
        """The tracks served in this frame (RGB), their tubelets moved on; detection on every
        `every`-th frame, the tracker's prediction between."""
        detections = None
        if self.frames % self.every == 0:
            known = [o.estimate.reshape(4) for o in self.tracker.tracked_objects
                     if o.hit_counter_is_positive and not o.is_initializing]  # fmt: skip
            boxes = split_merged(self.detector.detect(image), np.asarray(known).reshape(-1, 4))
            self.detections += 1
            detections = [
                self._detection(points=b[:4].reshape(2, 2).astype(np.float64), scores=np.full(2, b[4]))
                for b in boxes
            ]  # fmt: skip
        self.frames += 1
        live = {o.id: o.estimate.reshape(4) for o in self.tracker.update(detections, self.every)}
        for tid in [t for t in self.tubes if t not in live]:
            del self.tubes[tid]  # lost: its place is free
        newcomers = sorted((t for t in live if t not in self.tubes),
                           key=lambda t: -float(np.prod(live[t][2:] - live[t][:2])))  # fmt: skip
        for tid in newcomers:
            if len(self.tubes) < self.max_tracks:
                self.tubes[tid] = _Tubelet(live[tid], self.pad)
                self.left_out.discard(tid)
            else:
                self.left_out.add(tid)
        tracks = []
        for tid, tube in self.tubes.items():
            tube.follow(live[tid], self.pad, self.smoothing)
            box = tuple(round(float(v), 1) for v in live[tid])
            tracks.append(Track(tid, box, tube.window(), tube.age))
        return tracks

    @property
    def over_limit(self) -> int:
        """Tracks alive now that max_tracks left out."""
        return len(self.left_out & {o.id for o in self.tracker.tracked_objects})


def split_merged(boxes: np.ndarray, known: np.ndarray, inside: float = 0.6) -> np.ndarray:
    """Detections [N, 5] with each box that holds two or more known tracks' boxes [M, 4] (each
    `inside` it or more: people who overlap, one blob to a motion detector) replaced by those
    boxes, each moved, on each axis, to the blob's edge it is nearer (a blob's outer edges are
    its people's): both tracks go on, neither takes the other's crop."""
    if not len(boxes) or len(known) < 2:
        return boxes
    out = []
    for b in boxes:
        x0, y0 = np.maximum(known[:, 0], b[0]), np.maximum(known[:, 1], b[1])
        x1, y1 = np.minimum(known[:, 2], b[2]), np.minimum(known[:, 3], b[3])
        area = np.prod(known[:, 2:] - known[:, :2], axis=1).clip(1e-6)
        share = (x1 - x0).clip(0) * (y1 - y0).clip(0) / area
        held = known[share >= inside]
        if len(held) < 2:
            out.append(b)
            continue
        for k in held:  # on each axis, to the blob's edge it is nearer: that edge is its own
            near = np.abs(k[:2] - b[:2]) <= np.abs(k[2:] - b[2:4])
            shift = np.where(near, b[:2] - k[:2], b[2:4] - k[2:])
            out.append((*(k[:2] + shift), *(k[2:] + shift), b[4]))
    return np.asarray(out, np.float32).reshape(-1, 5)


def crop_window(image: np.ndarray, window: tuple) -> np.ndarray:
    """The square `window` (x0, y0, x1, y1) of `image`; what lies past its edge is filled with the
    edge's pixels (the crop stays square and centred on the track)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = window
    inner = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if inner.size == 0:
        return np.zeros((max(1, y1 - y0), max(1, x1 - x0), 3), image.dtype)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y1 - h), max(0, x1 - w)
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return inner
