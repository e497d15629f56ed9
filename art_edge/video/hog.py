"""OpenCV's HOG people detector (Dalal and Triggs, OpenCV's default 64×128 linear SVM), in numpy.

OpenCV 5 removed `cv2.HOGDescriptor`; this computes the same descriptor OpenCV 4 does with its
default settings — 8×8 cells, 16×16 blocks on an 8-pixel stride, 9 unsigned orientation bins,
gamma correction (√), a Gaussian window of σ = 4 over each block, bilinear interpolation in
orientation and space, L2-Hys normalisation at 0.2 — and scores it with OpenCV's own default
people SVM (its 3,780 weights and bias, shipped beside this file as `hog_people.npy`, read out of
OpenCV 4.10's `HOGDescriptor_getDefaultPeopleDetector()`). tests/art_edge/video/test_hog.py
checks the descriptor and the window scores against OpenCV 4 where one is installed.

    detector = HogPeople()
    boxes = detector.detect(rgb)        # [N, 5]: x0, y0, x1, y1, SVM score
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WEIGHTS = Path(__file__).with_name("hog_people.npy")
CELL, BLOCK_CELLS, BINS = 8, 2, 9
WINDOW = (64, 128)  # width, height
BLOCKS = (WINDOW[0] // CELL - 1, WINDOW[1] // CELL - 1)  # 7 × 15 blocks a window


def _block_weights() -> np.ndarray:
    """[16, 16, 4]: each pixel of a block → its weight in each of the block's 4 cells (OpenCV's
    order: cell x major, then y): the Gaussian window times the bilinear spatial weight."""
    side = CELL * BLOCK_CELLS
    i = np.arange(side, dtype=np.float32)
    gauss = np.exp(-((i[:, None] - side / 2) ** 2 + (i[None, :] - side / 2) ** 2) / (2 * 4.0**2))
    pos = (i + 0.5) / CELL - 0.5  # the pixel's position in cell units
    tri = np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(BLOCK_CELLS)[None]))  # [16, 2]
    spatial = np.einsum("yb,xa->yxab", tri, tri).reshape(side, side, 4)  # (cx, cy) → cx*2 + cy
    return gauss[..., None] * spatial


def gradients(gray: np.ndarray, pad: int) -> np.ndarray:
    """[H + 2 pad, W + 2 pad, 9]: each pixel's gradient magnitude split between its two nearest
    orientation bins (OpenCV's computeGradient: √ gamma, central differences, the image mirrored
    (reflect 101) past its edges)."""
    img = np.sqrt(np.pad(gray.astype(np.float32), pad + 1, mode="reflect"))
    dx = img[1:-1, 2:] - img[1:-1, :-2]
    dy = img[2:, 1:-1] - img[:-2, 1:-1]
    mag = np.sqrt(dx * dx + dy * dy)
    angle = np.arctan2(dy, dx) % (2 * np.pi) * (BINS / np.pi) - 0.5
    low = np.floor(angle)
    frac = angle - low
    low = (low.astype(np.int64) % BINS)[..., None]
    out = np.zeros((*mag.shape, BINS), np.float32)
    np.put_along_axis(out, low, (mag * (1 - frac))[..., None], axis=2)
    np.put_along_axis(out, (low + 1) % BINS, (mag * frac)[..., None], axis=2)  # another bin
    return out


def block_histograms(grad: np.ndarray) -> np.ndarray:
    """[By, Bx, 36]: the normalised histogram of every block on the 8-pixel grid of `grad`."""
    h, w = grad.shape[0] // CELL, grad.shape[1] // CELL
    # [h, w, 9, 64]: each cell's pixels' bins, one row of 64 pixels a bin
    cells = grad[: h * CELL, : w * CELL].reshape(h, CELL, w, CELL, BINS)
    cells = np.ascontiguousarray(cells.transpose(0, 2, 4, 1, 3)).reshape(h, w, BINS, CELL * CELL)
    weights = _block_weights()
    hist = np.zeros((h - 1, w - 1, BINS, 4), np.float32)
    for u in range(BLOCK_CELLS):  # a cell as the block's cell (u, v): its pixels' weights
        for v in range(BLOCK_CELLS):
            part = weights[u * CELL : (u + 1) * CELL, v * CELL : (v + 1) * CELL].reshape(-1, 4)
            hist += (cells @ part)[u : u + h - 1, v : v + w - 1]
    hist = hist.transpose(0, 1, 3, 2).reshape(h - 1, w - 1, 4 * BINS)  # cell major, then bins
    # L2-Hys: normalise (OpenCV adds 0.1 per value to the norm), clip at 0.2, normalise again
    hist = hist / (np.linalg.norm(hist, axis=2, keepdims=True) + 0.1 * hist.shape[2])
    hist = np.minimum(hist, 0.2)
    return hist / (np.linalg.norm(hist, axis=2, keepdims=True) + 1e-3)


def window_scores(blocks: np.ndarray, svm: np.ndarray) -> np.ndarray:
    """[Wy, Wx]: the SVM's score of every window on the block grid (blocks x major in a
    window's descriptor, as OpenCV orders them)."""
    bx, by = BLOCKS
    weights = svm[:-1].reshape(bx, by, -1)
    wy, wx = blocks.shape[0] - by + 1, blocks.shape[1] - bx + 1
    scores = np.full((max(wy, 0), max(wx, 0)), svm[-1], np.float32)
    for i in range(bx):
        for j in range(by):
            scores += blocks[j : j + wy, i : i + wx] @ weights[i, j]
    return scores


class HogPeople:
    """Multi-scale sliding windows (8-pixel stride, 8 pixels of mirrored padding, levels 1.05
    apart, as OpenCV's detectMultiScale), windows scoring above `threshold` kept after
    non-maximum suppression."""

    def __init__(self, threshold: float = 0.0, scale: float = 1.05, nms_iou: float = 0.4):
        self.svm = np.load(WEIGHTS).astype(np.float32)
        self.threshold, self.scale, self.nms_iou = threshold, scale, nms_iou

    def detect_level(self, gray: np.ndarray, pad: int = CELL) -> np.ndarray:
        """One scale: [N, 5] windows (x0, y0, x1, y1 in `gray`'s pixels, score) above the
        threshold."""
        scores = window_scores(block_histograms(gradients(gray, pad)), self.svm)
        ys, xs = np.nonzero(scores > self.threshold)
        x0, y0 = xs * CELL - pad, ys * CELL - pad
        return np.stack([x0, y0, x0 + WINDOW[0], y0 + WINDOW[1], scores[ys, xs]], 1).astype(
            np.float32
        )

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        found, level = [], 1.0
        while round(w / level) >= WINDOW[0] and round(h / level) >= WINDOW[1]:
            small = gray
            if level != 1.0:
                size = (round(w / level), round(h / level))
                small = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR_EXACT)
            boxes = self.detect_level(small)
            boxes[:, :4] *= level
            found.append(boxes)
            level *= self.scale
        return np.concatenate(found) if found else np.zeros((0, 5), np.float32)
