"""Outputs: an annotated video file, a display window and the live status line (events:
art_edge.rig.sinks).

out = open_output("out.mp4", fps=30)   # or "display"; written to a temporary name, renamed on close
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from art_edge.errors import UserError
from art_edge.files import check_writable, partial_path


class H264Writer:
    """H.264 in MP4 through PyAV (FFmpeg's libx264): what browsers, players and OpenCV all play,
    unlike OpenCV's own MPEG-4 Part 2 ("mp4v") that browsers refuse. The index is written at the
    front (faststart) so a browser plays the file while it is still loading."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], preset: str = "veryfast"):
        from fractions import Fraction

        import av

        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": preset, "crf": "23"}
        self.stream.thread_count = 1  # one core: the encoder and capture need the others
        self.failed = False  # a write failed (a full disk): the file cannot be finished

    def write(self, bgr: np.ndarray):
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        try:
            self.container.mux(self.stream.encode(frame))
        except BaseException:
            self.failed = True
            raise

    def release(self):
        """Flush the encoder and finish the file; after a failed write only close it (flushing
        an encoder whose output failed can crash FFmpeg)."""
        if not self.failed:
            try:
                self.container.mux(self.stream.encode(None))  # the frames the encoder holds
            except BaseException:
                self.failed = True
                self.container.close()
                raise
        self.container.close()


class VideoFileOutput:
    """MP4 (H.264) or AVI (MJPEG) written to `.name.part.ext` and renamed when closed, so a file at
    `path` always plays."""

    def __init__(self, path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 30.0
        self.part = partial_path(self.path)
        self.writer = None
        self.frames = 0

    def _open(self, bgr: np.ndarray):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # H.264 (4:2:0) needs even sides: the first frame's size rounded down to even
        self.size = (bgr.shape[1] // 2 * 2, bgr.shape[0] // 2 * 2)
        if self.path.suffix.lower() == ".avi":
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")
            self.writer = cv2.VideoWriter(str(self.part), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise UserError(
                    f"OpenCV cannot write {self.path}: use a .mp4 or .avi path in a writable folder"
                )
        else:
            self.writer = H264Writer(self.part, self.fps, self.size)

    def write(self, bgr: np.ndarray):
        if self.writer is None:
            self._open(bgr)
        # A LIST of mixed resolutions, or a stream that comes back at another size, is
        # letterboxed into the first frame's size (a video has one size).
        self.writer.write(letterbox(bgr, self.size))
        self.frames += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()
            os.replace(self.part, self.path)
            self.writer = None

    def abandon(self):
        """A write failed: nothing of the file is left (the error that ended it goes on)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.release()
            except Exception:  # noqa: BLE001 (the file is removed whatever its writer says)
                pass
        try:
            self.part.unlink(missing_ok=True)
        except OSError:
            pass  # its folder is gone or read-only: the writer removes it when it is back


def letterbox(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`bgr` scaled to fit (width, height) = size, keeping its aspect, on black."""
    width, height = size
    h, w = bgr.shape[:2]
    if (w, h) == (width, height):
        return bgr
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class DisplayOutput:
    """An OpenCV window; needs a display and an OpenCV build with a GUI backend."""

    def __init__(self, title: str = "art-edge"):
        if not (
            os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")
            or sys.platform in ("win32", "darwin")
        ):
            raise UserError(
                "--output display: no display here (DISPLAY is not set); use --output out.mp4 or --headless"
            )
        info = cv2.getBuildInformation()
        if "GUI:                           NONE" in info:
            raise UserError(
                "--output display: this OpenCV build has no GUI (opencv-python-headless); "
                "install opencv-python, or use --output out.mp4"
            )
        self.title = title
        self.closed_by_user = False

    def write(self, bgr: np.ndarray):
        cv2.imshow(self.title, bgr)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.closed_by_user = True

    def close(self):
        cv2.destroyAllWindows()


def is_display(spec: str) -> bool:
    return spec in ("display", "display://")


def check_output(spec: str):
    """An --output before anything starts: the display, or a .mp4/.avi path that can be written."""
    if is_display(spec):
        return
    if Path(spec).suffix.lower() not in (".mp4", ".avi"):
        raise UserError(f"--output {spec}: give a .mp4 or .avi path, or 'display'")
    check_writable(spec, "--output", is_file=True)


def open_output(spec: str, fps: float):
    """The display, or a video file (`spec` as check_output took it)."""
    return DisplayOutput() if is_display(spec) else VideoFileOutput(spec, fps)


class StatusLine:
    """One line on the terminal, rewritten in place (a new line every few seconds when not a tty)."""

    def __init__(self, stream=None, interval: float = 0.25, plain_interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if self.tty else plain_interval
        self.last = 0.0
        self.width = 0

    def update(self, text: str, force: bool = False):
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
