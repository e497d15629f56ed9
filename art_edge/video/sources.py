"""Video sources: one factory from a URI to a source, jetson-inference style.

    source = open_source("0")                       # camera 0 (V4L2); also "/dev/video0"
    source = open_source("clip.mp4", realtime=True) # a file at its own frame rate
    source = open_source("rtsp://cam/stream")       # network streams (rtsp, http, https, rtmp)
    source = open_source("csi://0")                 # Jetson CSI camera through GStreamer
    source = open_source("videotestsrc ! videoconvert ! appsink")   # any GStreamer pipeline
    source = open_source("synthetic://?frames=32&size=96")          # rendered clips with labels
    source = open_source("val.csv")                 # a LIST played clip after clip, with labels
    with source:
        frame = source.capture(timeout=1.0)         # a Frame, None on timeout; EndOfStream at the end

Live sources (cameras, streams, files played with realtime=True) capture in their own thread and
keep only the newest frame: a frame that is replaced before the pipeline took it is counted in
`dropped`, so a slow pipeline never queues. A camera or stream opens on its own thread and is
retried with capped back-off when it cannot be opened or is lost, for ever unless a
`reconnect_timeout` is given. Files read as fast as the pipeline asks otherwise.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from art_edge.cliplist import read_list
from art_edge.errors import UserError
from art_edge.runtime.streaming import Frame
from art_edge.synthetic import CLASSES, clip_frames

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp")


class EndOfStream(Exception):
    """The source has no more frames (a file or playlist ended)."""


class VideoSource:
    """The protocol: open() / capture(timeout) / close(), a context manager, with counters.
    `live`: frames come at the source's pace and the newest matters (a pipeline that falls behind
    drops frames rather than queueing them); otherwise every frame is wanted, in order."""

    live = False

    def __init__(self, uri: str):
        self.uri = uri
        self.dropped = 0  # frames replaced before the pipeline took them
        self.corrupt = 0  # frames that did not decode, skipped
        self.truncated = 0  # frames a file's container announced but its data does not hold
        self.reconnects = 0
        self.status = "starting"
        self.fps = 0.0  # the source's nominal frame rate, 0 if unknown

    def open(self):
        raise NotImplementedError

    def capture(self, timeout: float = 1.0) -> Frame | None:
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- OpenCV-backed sources


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CaptureSource(VideoSource):
    """cv2.VideoCapture behind a grabber thread that keeps only the newest frame (cameras,
    streams, GStreamer pipelines, and files played in real time).

    A camera or stream is patient: it is opened on its own thread (`open()` returns at once, the
    status says "connecting"), retried with back-off (0.5 s doubling to 5 s) when it cannot be
    opened or is lost, and given up only after `reconnect_timeout` seconds when that is > 0
    (0: never). Network streams open and read under `open_timeout` and `read_timeout`, so a
    camera that accepts a connection and never answers costs its own thread that long, nobody
    else's. A file played in real time (`end_is_final`) opens at once or fails, and ends."""

    live = True

    def __init__(
        self,
        uri: str,
        target,
        api=cv2.CAP_ANY,
        describe: str | None = None,
        pace: bool = False,
        reconnect_timeout: float = 0.0,
        end_is_final: bool = False,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
    ):
        super().__init__(uri)
        self.target, self.api, self.describe = target, api, describe or str(target)
        self.pace, self.reconnect_timeout, self.end_is_final = pace, reconnect_timeout, end_is_final
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.problem: str | None = None  # what it last ran into (cannot open, lost, an error)
        self.failures = 0  # unexpected errors of its capture (each handled as a lost stream)
        self.opens = 0  # times it was opened (the first, and each reconnect)
        self._cap = None
        self._lock = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._failure: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0

    def _open_capture(self):
        if self.api == cv2.CAP_FFMPEG:  # a stream: opening and reading never wait unbounded
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]  # fmt: skip
            cap = cv2.VideoCapture(self.target, self.api, timeouts)
        else:
            cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver holds one frame, not a backlog
        return cap

    def open(self):
        if self.end_is_final:  # a file played once: there now, or bad input
            self._cap = self._open_capture()
            if self._cap is None:
                raise UserError(self._cannot_open_message())
            self._opened(self._cap)
        else:
            self.status = "connecting"
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.uri}", daemon=True)
        self._thread.start()

    def _opened(self, cap):
        self.fps = self.fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.status, self.problem = "live", None
        self.opens += 1

    def _cannot_open_message(self) -> str:
        return f"cannot open {self.describe}"

    def _run(self):
        try:
            if self._cap is None and not self._connect(f"cannot open {self.describe}"):
                return
            while not self._stop.is_set():
                if not self._read_loop():  # lost: reconnect, or give up
                    if self.end_is_final or not self._connect(f"lost {self.describe}"):
                        break
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            with self._lock:
                self._ended = True
                self._lock.notify_all()

    def _read_loop(self) -> bool:
        """Read until the source fails; → False then (an unexpected error counts as a failure)."""
        period = 1.0 / self.fps if self.pace and self.fps > 0 else 0.0
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, image = self._cap.read()
                if not ok or image is None:
                    return False
                if period:
                    next_due += period
                    time.sleep(max(0.0, next_due - time.monotonic()))
                self._publish(Frame(_bgr_to_rgb(image), self._count, time.monotonic()))
                self._count += 1
        except Exception as e:  # noqa: BLE001 (a capture that raises is a lost stream: reopened)
            self.failures += 1
            self.problem = f"{self.describe} failed ({type(e).__name__}: {e})"
            return False
        return True

    def _publish(self, frame: Frame):
        with self._lock:
            if self._latest is not None:
                self.dropped += 1  # the pipeline did not take the previous one in time
            self._latest = frame
            self._lock.notify_all()

    def _connect(self, problem: str) -> bool:
        """Open the source: retried with back-off (0.5 s, 1 s, 2 s … 5 s) until it opens, the
        source is closed, or `reconnect_timeout` (> 0) passes; → whether it is open."""
        first = self._cap is None and self._count == 0
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        since, delay = time.monotonic(), 0.5
        self.problem = self.problem if self.problem and not first else problem
        while not self._stop.is_set():
            waited = time.monotonic() - since
            if self.reconnect_timeout and waited > self.reconnect_timeout:
                return self._give_up(first)
            self.status = "connecting" if first else f"reconnecting ({waited:.0f} s)"
            cap = self._open_capture()
            if cap is not None:
                self._cap = cap
                self._opened(cap)
                self.reconnects += 0 if first else 1
                return True
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)
        return False

    def _give_up(self, first: bool) -> bool:
        what = "open" if first else "reconnect"
        with self._lock:
            self._failure = (
                f"{'cannot open' if first else 'lost'} {self.describe} and could not {what} "
                f"within {self.reconnect_timeout:.0f} s (--reconnect-timeout)"
            )
            self._lock.notify_all()
        return False

    def capture(self, timeout: float = 1.0) -> Frame | None:
        with self._lock:
            if self._latest is None and not self._ended and self._failure is None:
                self._lock.wait(timeout)
            if self._failure is not None:
                raise UserError(self._failure)
            frame, self._latest = self._latest, None
            if frame is None and self._ended:
                raise EndOfStream
            return frame

    def close(self, timeout: float = 2.0):
        """Stop the grabber; one stuck in a read or an open (bounded by their timeouts) is left
        to end on its own, releasing its capture then."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        elif self._cap is not None:
            self._cap.release()


class CameraSource(CaptureSource):
    def __init__(self, uri: str, device, reconnect_timeout: float = 0.0):
        describe = f"camera {device}" + (
            f" (/dev/video{device})" if isinstance(device, int) else ""
        )
        api = cv2.CAP_V4L2 if os.name == "posix" and Path("/dev").is_dir() else cv2.CAP_ANY
        super().__init__(uri, device, api, describe, reconnect_timeout=reconnect_timeout)

    def open(self):
        """A device that is not there at all is a mistake in the command (a busy or failing one
        is waited for, like any camera)."""
        node = f"/dev/video{self.target}" if isinstance(self.target, int) else str(self.target)
        if self.api == cv2.CAP_V4L2 and not Path(node).exists():
            raise UserError(self._cannot_open_message())
        super().open()

    def _cannot_open_message(self) -> str:
        found = sorted(glob.glob("/dev/video*"))
        there = ", ".join(found) if found else "no /dev/video* devices on this machine"
        return (
            f"cannot open {self.describe}: tried OpenCV's V4L2 capture; video devices here: {there}. "
            "Pass --camera N for one of them, or --video FILE / --source URI"
        )


class FileSource(VideoSource):
    """A video file, every frame in order, as fast as the pipeline asks (no drops)."""

    def __init__(self, uri: str, path: Path):
        super().__init__(uri)
        self.path, self._cap, self._count, self._total = path, None, 0, 0

    def open(self):
        if not self.path.is_file():
            raise UserError(f"video file not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise UserError(
                f"cannot read {self.path}: not a video OpenCV can decode (MP4, AVI, WebM, ...)"
            )
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._total = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.status = "reading"

    TRUNCATED_AFTER = 8  # failed reads in a row that mean the file ends early, not a damaged frame

    def capture(self, timeout: float = 1.0) -> Frame:
        failed = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None:
                self.corrupt += failed  # a damaged stretch inside the file: skipped and counted
                frame = Frame(_bgr_to_rgb(image), self._count, time.monotonic())
                self._count += 1
                return frame
            failed += 1
            if self._count + self.corrupt + failed < self._total and failed < self.TRUNCATED_AFTER:
                continue
            if failed >= self.TRUNCATED_AFTER:  # the file was cut short: say how much is missing
                self.truncated += max(0, self._total - self._count - self.corrupt)
            raise EndOfStream

    def close(self):
        if self._cap is not None:
            self._cap.release()


class PlaylistSource(VideoSource):
    """The clips of a LIST file, back to back; each clip is a new segment and carries its label."""

    def __init__(self, uri: str, list_path: Path, classes: list[str] | None, root=None):
        super().__init__(uri)
        self.list_path, self.classes, self.root = list_path, classes, root
        self.records, self._clip, self._current, self._count = [], -1, None, 0

    def open(self):
        if self.classes is None:
            raise UserError(
                "a LIST source needs the class names; art-edge takes them from the engine dir"
            )
        self.records = read_list(self.list_path, self.classes, self.root)
        self.status = "reading"

    def _next_clip(self):
        if self._current is not None:
            self.corrupt += self._current.corrupt
            self.truncated += self._current.truncated
            self._current.close()
        self._clip += 1
        if self._clip >= len(self.records):
            raise EndOfStream
        r = self.records[self._clip]
        self._current = FileSource(r.path, Path(r.path))
        try:
            self._current.open()
        except UserError:
            self.corrupt += 1  # a clip that does not open is skipped, like a corrupt frame
            self._current = None
            return self._next_clip()

    def capture(self, timeout: float = 1.0) -> Frame:
        while True:
            if self._current is None:
                self._next_clip()
            try:
                frame = self._current.capture()
            except EndOfStream:
                self._next_clip()
                continue
            frame.index, frame.segment, frame.label = (
                self._count,
                self._clip,
                self.records[self._clip].label,
            )
            self._count += 1
            return frame

    def close(self):
        if self._current is not None:
            self._current.close()


class SyntheticSource(VideoSource):
    """Rendered synthetic clips (art_edge.synthetic), one random class after another, with labels:
    a camera for demos and tests. `synthetic://?frames=32&size=96&clips=0&seed=0&fps=0`: frames
    per clip (each clip is one action), frame side, clips (0: endless), seed, fps (> 0: paced like
    a camera). Rendered frame by frame: a clip of any length holds one frame in memory."""

    def __init__(
        self,
        uri: str,
        frames: int = 32,
        size: int = 96,
        clips: int = 0,
        seed: int = 0,
        fps: float = 0.0,
        num_classes: int | None = None,
    ):
        super().__init__(uri)
        self.frames, self.size, self.clips, self.fps = frames, size, clips, fps
        self.num_classes = num_classes or len(CLASSES)
        self.rng = np.random.default_rng(seed)
        self._clip, self._frames, self._label, self._count = -1, None, None, 0
        self._next_due = None

    @property
    def live(self) -> bool:
        return self.fps > 0  # paced like a camera

    def open(self):
        self.status = "rendering"

    def _next_frame(self) -> np.ndarray:
        """The next rendered frame, starting a new clip (a new random class) when one ends."""
        while True:
            if self._frames is not None:
                image = next(self._frames, None)
                if image is not None:
                    return image
            if self.clips and self._clip + 1 >= self.clips:
                raise EndOfStream
            self._clip += 1
            self._label = int(self.rng.integers(self.num_classes))
            self._frames = clip_frames(self._label, self.size, self.frames, self.rng)

    def capture(self, timeout: float = 1.0) -> Frame | None:
        if self.fps > 0:  # pace like a camera: a frame that is not due yet is not there yet
            now = time.monotonic()
            due = now if self._next_due is None else self._next_due + 1.0 / self.fps
            if due - now > timeout:
                time.sleep(max(0.0, timeout))
                return None
            time.sleep(max(0.0, due - now))
            self._next_due = due
        bgr = self._next_frame()
        image = _bgr_to_rgb(bgr)
        frame = Frame(image, self._count, time.monotonic(), self._clip, self._label)
        self._count += 1
        return frame


# ----------------------------------------------------------------------------- the factory


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The usual Jetson CSI camera pipeline (nvarguscamerasrc → BGR appsink)."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1, format=NV12 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
    )


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def _gstreamer(uri: str, pipeline: str, reconnect_timeout: float = 0.0) -> CaptureSource:
    if not opencv_has_gstreamer():
        raise UserError(
            f"{uri}: this OpenCV build has no GStreamer (cv2.getBuildInformation() says so); "
            "install an OpenCV built with GStreamer (JetPack's has it), or use --camera N / --video FILE"
        )
    return CaptureSource(
        uri,
        pipeline,
        cv2.CAP_GSTREAMER,
        f"GStreamer pipeline {pipeline!r}",
        reconnect_timeout=reconnect_timeout,
    )


VIDEO_FILE_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
_SYNTHETIC_RANGES = {
    "frames": (2, "≥ 2"),
    "size": (32, "≥ 32"),
    "clips": (0, "≥ 0"),
    "seed": (0, "≥ 0"),
    "fps": (0, "≥ 0"),
}


def _synthetic(uri: str, parsed, classes) -> SyntheticSource:
    q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    unknown = sorted(set(q) - set(_SYNTHETIC_RANGES))
    if unknown:
        raise UserError(
            f"{uri}: unknown synthetic:// parameters {unknown}; it takes {sorted(_SYNTHETIC_RANGES)}"
        )
    try:
        values = {
            k: (float if k == "fps" else int)(q.get(k, default))
            for k, default in (("frames", 32), ("size", 96), ("clips", 0), ("seed", 0), ("fps", 0))
        }
    except ValueError:
        raise UserError(
            f"{uri}: synthetic:// takes frames, size, clips, seed, fps as numbers"
        ) from None
    for key, (low, what) in _SYNTHETIC_RANGES.items():
        if values[key] < low:
            raise UserError(f"{uri}: {key} must be {what} (frames is per clip), got {values[key]}")
    return SyntheticSource(
        uri,
        values["frames"],
        values["size"],
        values["clips"],
        values["seed"],
        values["fps"],
        len(classes) if classes else None,
    )


def open_source(
    uri: str,
    realtime: bool = False,
    reconnect_timeout: float = 0.0,
    classes: list[str] | None = None,
    root=None,
    open_timeout: float = 10.0,
    read_timeout: float = 10.0,
) -> VideoSource:
    """A URI → a source (not yet opened). See the module docstring for the forms; a live source
    retries for `reconnect_timeout` seconds (0: for ever), a network stream opens and reads
    within `open_timeout` and `read_timeout` seconds."""
    uri = str(uri).strip()
    if uri.isdigit():
        return CameraSource(uri, int(uri), reconnect_timeout)
    if uri.startswith("/dev/video"):
        return CameraSource(uri, uri, reconnect_timeout)
    parsed = urlparse(uri)
    if parsed.scheme == "csi":
        sensor = parsed.netloc or parsed.path.strip("/") or "0"
        if not sensor.isdigit():
            raise UserError(f"{uri}: expected csi://N with N the sensor id")
        return _gstreamer(uri, csi_pipeline(int(sensor)), reconnect_timeout)
    if parsed.scheme == "synthetic":
        return _synthetic(uri, parsed, classes)
    if parsed.scheme in STREAM_SCHEMES:
        if (
            parsed.scheme in ("http", "https")
            and Path(parsed.path).suffix.lower() in VIDEO_FILE_SUFFIXES
        ):
            # a video file on a web server: it plays once and ends (no reconnect and replay)
            return CaptureSource(uri, uri, cv2.CAP_FFMPEG, f"video file {uri}", end_is_final=True,
                                 open_timeout=open_timeout, read_timeout=read_timeout)  # fmt: skip
        return CaptureSource(uri, uri, cv2.CAP_FFMPEG, f"stream {uri}",
                             reconnect_timeout=reconnect_timeout, open_timeout=open_timeout,
                             read_timeout=read_timeout)  # fmt: skip
    if uri.startswith("gst:") or " ! " in uri:
        return _gstreamer(uri, uri.removeprefix("gst:").strip(), reconnect_timeout)
    path = Path(uri)
    if path.suffix.lower() == ".csv":
        return PlaylistSource(uri, path, classes, root)
    if not path.exists():
        raise UserError(
            f"no such video file: {uri} (a source is a camera index, /dev/videoN, a file, "
            "rtsp:// or http(s):// URL, csi://N, a GStreamer pipeline, synthetic://, or a LIST .csv)"
        )
    if realtime:
        return CaptureSource(
            uri, str(path), cv2.CAP_ANY, f"video file {uri}", pace=True, end_is_final=True
        )
    return FileSource(uri, path)
