"""Video sources: the URI factory, files, LISTs, the synthetic camera, GStreamer forms, a lost
camera's reconnect and give-up, the newest-frame policy, corrupt and truncated files."""

import time

import cv2
import numpy as np
import pytest

from art_edge.errors import UserError
from art_edge.video.sources import (
    CameraSource,
    CaptureSource,
    EndOfStream,
    FileSource,
    PlaylistSource,
    SyntheticSource,
    open_source,
)


def drain(source, limit=10_000):
    frames = []
    with source:
        while len(frames) < limit:
            try:
                f = source.capture(timeout=2.0)
            except EndOfStream:
                break
            if f is not None:
                frames.append(f)
    return frames


def test_factory_picks_the_source_from_the_uri(synth, tmp_path):
    assert isinstance(open_source("0"), CameraSource)
    assert isinstance(open_source("/dev/video3"), CameraSource)
    assert isinstance(open_source("rtsp://10.0.0.2/stream"), CaptureSource)
    live = open_source("https://example.com/live.m3u8")
    assert isinstance(live, CaptureSource) and not live.end_is_final  # a live stream reconnects
    file_url = open_source("https://example.com/match/clip.mp4")
    assert (
        isinstance(file_url, CaptureSource) and file_url.end_is_final
    )  # a file on a server plays once
    assert isinstance(open_source("synthetic://?frames=8"), SyntheticSource)
    assert isinstance(open_source(str(synth / "val.csv"), classes=["a"]), PlaylistSource)
    video = next((synth / "videos").glob("*.mp4"))
    assert isinstance(open_source(str(video)), FileSource)
    assert isinstance(open_source(str(video), realtime=True), CaptureSource)
    with pytest.raises(UserError, match="no such video file"):
        open_source(str(tmp_path / "missing.mp4"))


def test_gstreamer_forms_say_what_is_missing():
    from art_edge.video.sources import csi_pipeline, opencv_has_gstreamer

    assert "nvarguscamerasrc sensor-id=1" in csi_pipeline(1)
    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer: the no-GStreamer message cannot be shown here")
    for uri in ("csi://0", "videotestsrc ! videoconvert ! appsink"):
        with pytest.raises(UserError, match="no GStreamer"):
            open_source(uri)


def test_synthetic_source_segments_and_labels():
    frames = drain(open_source("synthetic://?frames=6&size=32&clips=3&seed=1"))
    assert len(frames) == 18
    assert [f.segment for f in frames] == [0] * 6 + [1] * 6 + [2] * 6
    assert all(
        f.label is not None and f.image.shape == (32, 32, 3) and f.image.dtype == np.uint8
        for f in frames
    )
    assert [f.index for f in frames] == list(range(18))


def test_file_source_reads_every_frame_then_ends(synth):
    video = next((synth / "videos").glob("*.mp4"))
    frames = drain(open_source(str(video)))
    expected = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert len(frames) == expected and frames[0].image.shape[2] == 3


def test_playlist_plays_clips_back_to_back_and_skips_broken_ones(synth, tmp_path):
    rows = (synth / "val.csv").read_text().splitlines()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join([rows[0], rows[1], f"{broken},0", rows[2]]) + "\n")
    classes = (synth / "classes.txt").read_text().split()
    source = open_source(str(listing), classes=classes, root=synth)
    frames = drain(source)
    assert sorted({f.segment for f in frames}) == [0, 2] and source.corrupt == 1
    assert len(frames) == 32  # two clips of 16 frames


def test_camera_that_does_not_exist_is_one_clear_error():
    source = open_source("57")
    with pytest.raises(
        UserError, match=r"cannot open camera 57 \(/dev/video57\).*video devices here"
    ):
        source.open()


class FlakyCapture:
    """A cv2.VideoCapture stand-in: `frames` good reads, then failures."""

    def __init__(self, frames):
        self.left = frames

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(0.005)
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        pass

    def isOpened(self):
        return True

    def get(self, prop):
        return 0.0


class FlakyCamera(CaptureSource):
    def __init__(self, reopen_plan, **kw):
        super().__init__("flaky", "flaky", describe="camera flaky", **kw)
        self.plan = list(reopen_plan)  # per open: None (fails) or a frame count

    def _open_capture(self):
        frames = self.plan.pop(0) if self.plan else None
        return None if frames is None else FlakyCapture(frames)


def test_lost_camera_reconnects_with_back_off():
    source = FlakyCamera(
        [5, None, 5], reconnect_timeout=10.0
    )  # drops out, first retry fails, then back
    got, deadline = 0, time.monotonic() + 8
    with source:
        while source.reconnects < 1 or got < 3:
            assert time.monotonic() < deadline, f"no reconnect: {source.status}"
            if source.capture(timeout=0.2) is not None:
                got += 1
    assert source.reconnects == 1


def test_lost_camera_gives_up_after_the_timeout_with_a_clear_message():
    source = FlakyCamera([3], reconnect_timeout=0.6)
    with (
        source,
        pytest.raises(UserError, match=r"lost camera flaky and could not reconnect within 1 s"),
    ):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            source.capture(timeout=0.2)


def test_slow_consumer_drops_stale_frames_instead_of_queueing():
    source = FlakyCamera([200])
    taken = []
    with source:
        for _ in range(6):
            time.sleep(0.1)  # inference slower than the camera
            f = source.capture(timeout=1.0)
            if f is not None:
                taken.append(f.index)
    assert source.dropped > 20, source.dropped
    assert (
        taken == sorted(taken) and taken[-1] - taken[0] > 10
    )  # always the newest frame, never a backlog


class GappyCapture(FlakyCapture):
    """Reads fail on some frames before the end, as a damaged file does."""

    def __init__(self, total, bad):
        super().__init__(total)
        self.total, self.bad, self.pos = total, set(bad), 0

    def read(self):
        self.pos += 1
        if self.pos > self.total:
            return False, None
        return (False, None) if self.pos - 1 in self.bad else (True, np.zeros((8, 8, 3), np.uint8))

    def get(self, prop):
        return float(self.total) if prop == cv2.CAP_PROP_FRAME_COUNT else 25.0


def test_file_source_skips_and_counts_corrupt_frames(synth):
    video = next((synth / "videos").glob("*.mp4"))
    source = FileSource(str(video), video)
    source.open()
    source._cap.release()
    source._cap, source._total = GappyCapture(10, bad=[3, 4, 7]), 10
    frames = []
    with pytest.raises(EndOfStream):
        while True:
            frames.append(source.capture())
    assert len(frames) == 7 and source.corrupt == 3


def test_a_truncated_file_ends_and_says_how_much_is_missing(synth):
    video = next((synth / "videos").glob("*.mp4"))
    source = FileSource(str(video), video)
    source.open()
    source._cap.release()
    source._cap, source._total = (
        GappyCapture(10, bad=[]),
        40,
    )  # the container promises 40 frames, holds 10
    frames = []
    with pytest.raises(EndOfStream):
        while True:
            frames.append(source.capture())
    assert len(frames) == 10 and source.corrupt == 0 and source.truncated == 30


def test_a_long_synthetic_clip_starts_at_once():
    """Rendered frame by frame: the first frame of a 100,000-frame clip does not wait for the rest."""
    source = open_source("synthetic://?frames=100000&size=64")
    source.open()
    t0 = time.monotonic()
    first = source.capture()
    assert time.monotonic() - t0 < 5 and first.image.shape == (64, 64, 3)
