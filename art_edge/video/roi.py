"""Regions of interest: a camera cropped to its apparatus before preprocessing.

roi = Roi.parse("0.25,0.1,0.5,0.8")    # fractions of the frame, or pixels: "320,40,640,600"
image = roi.crop(frame.image)           # what the model sees
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from art_edge.errors import UserError


@dataclass(frozen=True)
class Roi:
    x: float
    y: float
    w: float
    h: float
    fractions: bool  # all four given as fractions of the frame (each in [0, 1])

    @classmethod
    def parse(cls, text: str, flag: str = "--roi") -> Roi:
        try:
            x, y, w, h = (float(v) for v in text.split(","))
        except ValueError:
            raise UserError(
                f"{flag} {text!r}: give x,y,w,h in pixels (320,40,640,600) or as fractions of the "
                "frame (0.25,0.1,0.5,0.8)"
            ) from None
        if min(x, y) < 0 or min(w, h) <= 0:
            raise UserError(f"{flag} {text!r}: x and y must be ≥ 0, w and h > 0")
        fractions = (
            all("." in v or v.strip() in ("0", "1") for v in text.split(","))
            and max(x, y, w, h) <= 1.0
        )
        if fractions and (x + w > 1.0 or y + h > 1.0):
            raise UserError(f"{flag} {text!r}: x + w and y + h must be ≤ 1 for fractions")
        return cls(x, y, w, h, fractions)

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels of a height × width frame; a box outside it is an error."""
        if self.fractions:
            x0, y0 = round(self.x * width), round(self.y * height)
            x1, y1 = round((self.x + self.w) * width), round((self.y + self.h) * height)
        else:
            x0, y0 = int(self.x), int(self.y)
            x1, y1 = int(self.x + self.w), int(self.y + self.h)
        if x1 > width or y1 > height or x1 - x0 < 2 or y1 - y0 < 2:
            raise UserError(
                f"--roi {self.describe()} lies outside the {width}×{height} frame: give a box "
                "inside it, or fractions of the frame"
            )
        return x0, y0, x1, y1

    def crop(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box(*image.shape[:2])
        return image[y0:y1, x0:x1]

    def describe(self) -> str:
        fmt = "{:g}" if self.fractions else "{:.0f}"
        return ",".join(fmt.format(v) for v in (self.x, self.y, self.w, self.h))
