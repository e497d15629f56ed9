"""Detectors: boxes of the people (or other movers) in a frame, behind one small interface.

    detector = open_detector("motion")          # or "hog", or "onnx:yolo.onnx"
    boxes = detector.detect(frame.image)        # float32 [N, 5]: x0, y0, x1, y1 (pixels), score

- `motion`: background subtraction (OpenCV's MOG2) and the contours of what moves; no model. For
  fixed cameras (most rig cameras are): it learns the empty scene and finds what differs from it.
- `hog`: OpenCV's HOG people detector (Dalal-Triggs) with OpenCV's default model, computed in
  numpy (art_edge.video.hog: OpenCV 5 removed it); no download; upright people about 64×128
  pixels or larger.
- `onnx:PATH`: a user's own ONNX detector in the common YOLO output layout, run by ONNX Runtime
  like the engine: one input [1, 3, H, W] (RGB, 0..1), one output [1, 4 + C, N] (YOLOv8 and
  later: cx, cy, w, h, then C class scores) or [1, N, 5 + C] (YOLOv5: cx, cy, w, h, objectness,
  C class scores). Boxes of class 0 are kept (a COCO model's person; a one-class model's class).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import UserError
from art_edge.runtime.backends.onnxruntime import create_session
from art_edge.video.hog import HogPeople

DETECTORS = ("motion", "hog", "onnx:PATH")
EMPTY = np.zeros((0, 5), np.float32)


def check_detector(spec: str):
    """A detector's name as --track takes it, or one line saying what to give instead."""
    if spec in ("motion", "hog"):
        return
    if spec.startswith("onnx:") and len(spec) > 5:
        if not Path(spec[5:]).is_file():
            raise UserError(f"--track {spec}: no such file; give onnx:PATH of an ONNX detector")
        return
    raise UserError(
        f"--track {spec!r}: unknown detector; use motion (background subtraction, fixed cameras), "
        "hog (OpenCV's people detector) or onnx:PATH (a YOLO-layout ONNX detector)"
    )


def open_detector(spec: str, every: int = 1, threads: int | None = None):
    """A detector from its name (DETECTORS); `every`: it sees one frame in `every` (the motion
    detector's background learns at that pace)."""
    check_detector(spec)
    if spec == "motion":
        return MotionDetector(every=every)
    if spec == "hog":
        return HogDetector()
    return OnnxDetector(spec[5:], threads)


def nms(boxes: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Non-maximum suppression of [N, 5] boxes (x0, y0, x1, y1, score) → those kept."""
    if len(boxes) < 2:
        return boxes
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    keep = cv2.dnn.NMSBoxes(xywh, boxes[:, 4].astype(float).tolist(), 0.0, iou)
    return boxes[np.asarray(keep, int).reshape(-1)]


class MotionDetector:
    """What differs from the learned background, as boxes: MOG2's foreground, opened (noise
    away), closed (a body's parts into one), its contours' boxes above `min_area` of the frame.
    The first frame seen is the background's start."""

    name = "motion"

    def __init__(self, every: int = 1, history: int = 2000, min_area: float = 0.004, width=320):
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history, 16, detectShadows=False)
        # a fixed pace (MOG2's own starts fast and takes a still athlete into the background)
        self.rate = min(1.0, every / history)
        self.min_area, self.width, self.seen = min_area, width, 0

    def detect(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = min(1.0, self.width / w)  # the mask at ≤ 320 pixels wide: the boxes need no more
        small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)))
        mask = self.subtractor.apply(small, learningRate=1.0 if not self.seen else self.rate)
        self.seen += 1
        if self.seen == 1:
            return EMPTY
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        side = max(3, round(small.shape[1] / 40)) | 1
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((side, side), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            if bw * bh >= self.min_area * mask.size:
                fill = cv2.contourArea(c) / (bw * bh)
                boxes.append((x / scale, y / scale, (x + bw) / scale, (y + bh) / scale, fill))
        return np.asarray(boxes, np.float32).reshape(-1, 5)


class HogDetector:
    """OpenCV's HOG + linear SVM people detector: its default model (shipped with this package,
    computed in numpy as OpenCV 4 does: art_edge.video.hog, since OpenCV 5 removed it). As
    OpenCV's detectMultiScale groups its hits, a person is kept where at least `support`
    windows (neighbours, scales) found it; then non-maximum suppression."""

    name = "hog"

    def __init__(self, support: int = 3):
        self.hog, self.support = HogPeople(), support

    def detect(self, image: np.ndarray) -> np.ndarray:
        hits = self.hog.detect(image)
        if len(hits) < self.support:
            return EMPTY
        x0, y0 = (
            np.maximum(hits[:, None, 0], hits[None, :, 0]),
            np.maximum(hits[:, None, 1], hits[None, :, 1]),
        )
        x1, y1 = (
            np.minimum(hits[:, None, 2], hits[None, :, 2]),
            np.minimum(hits[:, None, 3], hits[None, :, 3]),
        )
        inter = (x1 - x0).clip(0) * (y1 - y0).clip(0)
        area = (hits[:, 2] - hits[:, 0]) * (hits[:, 3] - hits[:, 1])
        overlap = inter / (area[:, None] + area[None, :] - inter)
        kept = hits[(overlap >= 0.5).sum(axis=1) >= self.support]
        return nms(kept, 0.4)


LAYOUT = (
    "one input [1, 3, H, W] and one output [1, 4 + C, N] (YOLOv8: cx, cy, w, h, class scores) "
    "or [1, N, 5 + C] (YOLOv5: cx, cy, w, h, objectness, class scores)"
)


class OnnxDetector:
    """A YOLO-layout ONNX detector (see the module docstring), letterboxed to its input size."""

    name = "onnx"

    def __init__(self, path: str, threads: int | None = None, min_score: float = 0.35):
        try:
            self.session = create_session(path, threads)
        except Exception as e:  # noqa: BLE001 (ONNX Runtime's errors are of many kinds)
            raise UserError(f"--track onnx:{path}: cannot load it as an ONNX model ({e})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3 or len(outputs) != 1:
            raise UserError(f"--track onnx:{path}: not a detector of the supported layout; "
                            f"expected {LAYOUT}")  # fmt: skip
        if len(outputs[0].shape) != 3:
            raise UserError(f"--track onnx:{path}: its output is {outputs[0].shape}; expected "
                            f"{LAYOUT}")  # fmt: skip
        self.path, self.min_score = path, min_score
        self.input = inputs[0].name
        self.size = tuple(d if isinstance(d, int) and d > 0 else 640 for d in shape[2:])

    def detect(self, image: np.ndarray) -> np.ndarray:
        (h, w), (ih, iw) = image.shape[:2], self.size
        scale = min(iw / w, ih / h)
        canvas = np.full((ih, iw, 3), 114, np.uint8)  # YOLO's letterbox grey
        nh, nw = round(h * scale), round(w * scale)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = np.asarray(self.session.run(None, {self.input: blob})[0])[0]
        return nms(self.decode(out) / np.array([scale] * 4 + [1], np.float32), 0.5)

    def decode(self, out: np.ndarray) -> np.ndarray:
        """The output of one image → class-0 boxes [N, 5] in the input's pixels. The layout is
        told by its shape: a YOLO has far more candidates N than values a candidate."""
        if out.shape[0] < out.shape[1] and out.shape[0] >= 5:  # [4 + C, N]: YOLOv8
            rows = out.T
            score = rows[:, 4]
        elif out.shape[1] >= 6:  # [N, 5 + C]: YOLOv5
            rows = out
            score = rows[:, 4] * rows[:, 5]
        else:
            raise UserError(f"--track onnx:{self.path}: an output of {out.shape} per image; "
                            f"expected {LAYOUT}")  # fmt: skip
        rows, score = rows[score >= self.min_score], score[score >= self.min_score]
        cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        box = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, score], 1)
        return box.astype(np.float32).reshape(-1, 5)
