"""What a person sees: each tracklet's attention as a tinted heatmap where the model looks, the
decided label and score, a top-k bar chart, and FPS and latency; on a tracked camera, each
track's box, id, label and score."""

from __future__ import annotations

import cv2
import numpy as np

# One colour per tracklet (BGR), distinct on sports footage.
TRACKLET_COLOURS = [
    (0, 170, 255),
    (255, 120, 0),
    (80, 220, 80),
    (220, 60, 220),
    (0, 230, 230),
    (255, 255, 255),
    (60, 60, 230),
    (200, 200, 60),
]


def crop_box(height: int, width: int) -> tuple[int, int, int]:
    """(x0, y0, side) of the centre square the model sees (preprocessing: short side, centre crop)."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def attention_heatmaps(
    frame_bgr: np.ndarray, attention: np.ndarray, alpha: float = 0.55
) -> np.ndarray:
    """Tint the model's view of the frame by each tracklet's attention map ([K, L], L a square grid)."""
    k, length = attention.shape
    grid = int(round(np.sqrt(length)))
    if grid * grid != length:
        return frame_bgr  # a non-square token layout has no picture; draw nothing rather than lie
    x0, y0, side = crop_box(*frame_bgr.shape[:2])
    # The maps are mixed at the token grid and only the mix is scaled up: two resizes and one
    # blend per frame whatever K (scaling each map up first took 12.6 ms a 480×360 frame against
    # 1.0 ms: `overlay_ms` of benchmarks/dashboard.py).
    maps = attention.reshape(k, grid, grid).astype(np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    maps = ((maps - low) / np.maximum(maps.max(axis=(1, 2), keepdims=True) - low, 1e-6)) ** 2
    colours = np.asarray(
        [TRACKLET_COLOURS[i % len(TRACKLET_COLOURS)] for i in range(k)], np.float32
    )
    weight = maps.sum(axis=0)
    tint = np.einsum("kij,kc->ijc", maps, colours) / np.maximum(weight, 1e-6)[..., None]
    # scaled as 8-bit images (cubic on uint8 saturates by itself and is ~5x faster than float)
    tint = cv2.resize(
        tint.clip(0, 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC
    )
    w8 = (255 * alpha * np.clip(weight, 0, 1)).astype(np.uint8)
    w = cv2.resize(w8, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    out = frame_bgr.copy()
    region = out[y0 : y0 + side, x0 : x0 + side]
    out[y0 : y0 + side, x0 : x0 + side] = cv2.blendLinear(region, tint, 1 - w, w)
    # Each tracklet's peak cell outlined in its colour (inset per tracklet, so shared peaks stay visible).
    cell = side / grid
    for i in range(k):
        r, c = divmod(int(attention[i].argmax()), grid)
        inset = 1 + 2 * i
        p0 = (int(x0 + c * cell) + inset, int(y0 + r * cell) + inset)
        p1 = (int(x0 + (c + 1) * cell) - inset, int(y0 + (r + 1) * cell) - inset)
        cv2.rectangle(out, p0, p1, TRACKLET_COLOURS[i % len(TRACKLET_COLOURS)], 2, cv2.LINE_AA)
    return out


def _text(img, text, org, scale, colour=(255, 255, 255), thickness=1):
    """Text with a drop shadow, legible on any background."""
    shadow = (org[0] + 1, org[1] + 1)
    cv2.putText(
        img, text, shadow, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA
    )
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def draw_tracks(bgr: np.ndarray, tracks, classes: list[str], s: float, scale: float):
    """Each track's box (frame pixels × s), its id and its label and score, in its colour."""
    for tid, box, label, score in tracks:
        colour = TRACKLET_COLOURS[tid % len(TRACKLET_COLOURS)]
        x0, y0, x1, y1 = (int(round(v * s)) for v in box)
        cv2.rectangle(bgr, (x0, y0), (x1, y1), colour, 2, cv2.LINE_AA)
        text = f"#{tid}" + (f" {classes[label]} {score:.2f}" if label is not None else "")
        _text(bgr, text, (x0 + 3, max(int(14 * scale), y0 - 5)), 0.5 * scale, colour)


def draw_overlay(
    frame_rgb: np.ndarray,
    decision,
    classes: list[str],
    fps: float,
    latency_ms: float | None,
    min_side: int = 360,
    tracks=None,
) -> np.ndarray:
    """→ an annotated BGR frame (upscaled so text stays legible on small inputs). `tracks`: a
    tracked camera's, (id, box, label, score) each: drawn instead of the one decision."""
    bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    s = 1.0
    if min(h, w) < min_side:
        s = min_side / min(h, w)
        bgr = cv2.resize(
            bgr, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_LINEAR
        )
        h, w = bgr.shape[:2]
    scale = max(0.5, min(h, w) / 480)
    if tracks is not None:
        draw_tracks(bgr, tracks, classes, s, scale)
        decision = None
    if decision is not None:
        bgr = attention_heatmaps(bgr, decision.attention)
        _text(
            bgr,
            f"{classes[decision.label]}  {decision.score:.2f}",
            (10, int(34 * scale + 8)),
            1.0 * scale,
            thickness=2,
        )
        bar_w, bar_h = int(w * 0.28), int(16 * scale + 4)
        for row, (cls, p) in enumerate(decision.topk):
            y = int(48 * scale + 16) + row * (bar_h + 4)
            cv2.rectangle(bgr, (10, y), (10 + bar_w, y + bar_h), (40, 40, 40), -1)
            cv2.rectangle(
                bgr,
                (10, y),
                (10 + int(bar_w * p), y + bar_h),
                (0, 200, 0) if row == 0 else (0, 140, 200),
                -1,
            )
            _text(bgr, f"{classes[cls]} {p:.2f}", (16 + bar_w, y + bar_h - 3), 0.55 * scale)
    status = f"{fps:5.1f} FPS" + (
        f"   latency {latency_ms:.0f} ms" if latency_ms is not None else ""
    )
    _text(bgr, status, (10, h - 12), 0.6 * scale)
    return bgr


def annotate(
    frame_rgb: np.ndarray,
    decision,
    classes: list[str],
    fps: float,
    latency_ms: float | None,
    roi_box: tuple | None = None,
    max_side: int | None = None,
    tracks=None,
) -> np.ndarray:
    """draw_overlay on a camera's full frame, with its ROI outlined (clips, the dashboard);
    `max_side`: a large frame is scaled down first, so a 4K camera costs no more than 640 px.
    `tracks`: see draw_overlay."""
    if roi_box is not None:
        frame_rgb = frame_rgb.copy()
        x0, y0, x1, y1 = roi_box
        cv2.rectangle(frame_rgb, (x0, y0), (x1 - 1, y1 - 1), (255, 200, 0), 2)
    h, w = frame_rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        frame_rgb = cv2.resize(
            frame_rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA
        )
        if tracks is not None:
            tracks = [(tid, [v * s for v in box], *rest) for tid, box, *rest in tracks]
    return draw_overlay(frame_rgb, decision, classes, fps, latency_ms, tracks=tracks)
