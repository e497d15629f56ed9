"""art-edge: sources, streaming inference, outputs, reliability, the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from art_edge.errors import UserError
from art_edge.report import LatencyLog
from art_edge.sources import (
    CameraSource,
    CaptureSource,
    EndOfStream,
    FileSource,
    Frame,
    PlaylistSource,
    SyntheticSource,
    open_source,
)
from art_edge.streaming import DecisionSmoother, StreamConfig, StreamingClassifier

ROOT = Path(__file__).resolve().parents[2]


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


# ----------------------------------------------------------------------------- sources


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
    from art_edge.sources import csi_pipeline, opencv_has_gstreamer

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


# ----------------------------------------------------------------------------- streaming


def test_smoother_hysteresis_does_not_flicker():
    s = DecisionSmoother(smoothing=0.0, hysteresis=0.2)
    seq = [[0.6, 0.4], [0.45, 0.55], [0.55, 0.45], [0.45, 0.55], [0.2, 0.8]]
    labels = [s.update(np.asarray(p))[0] for p in seq]
    assert labels == [0, 0, 0, 0, 1]
    ema = DecisionSmoother(smoothing=0.5, hysteresis=0.0)
    ema.update(np.array([1.0, 0.0]))
    ema.update(np.array([0.0, 1.0]))
    np.testing.assert_allclose(ema.probs, [0.5, 0.5])


def test_latency_log_holds_constant_memory_and_close_percentiles():
    log = LatencyLog()
    samples = np.random.default_rng(0).lognormal(2.0, 0.7, 50_000)
    for x in samples:
        log.add(float(x))
    assert (
        log.counts.size == len(LatencyLog.EDGES) + 1
    )  # a fixed histogram, whatever the run's length
    for q in (50, 95, 99):
        exact = np.percentile(samples, q)
        assert exact <= log.percentile(q) <= exact * 1.02, q
    assert LatencyLog().percentile(50) is None


def clip_frames(path, segment=0, label=None):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(
            Frame(
                cv2.cvtColor(img, cv2.COLOR_BGR2RGB), len(frames), time.monotonic(), segment, label
            )
        )
    return frames


def test_streaming_decision_at_clip_end_equals_the_whole_clip_forward(engine_dir, synth):
    """Window = the clip: the live path samples and preprocesses exactly like evaluation."""
    from art_edge.engine import ARTEngine
    from art_edge.preprocess import load_clip

    video = sorted((synth / "videos").glob("val_*.mp4"))[0]
    frames = clip_frames(video)
    with ARTEngine.load(engine_dir, threads=2) as engine:
        clf = StreamingClassifier(
            engine, StreamConfig(window=len(frames), stride=len(frames), smoothing=0.0)
        )
        decisions = [d for d in (clf.push(f) for f in frames) if d is not None]
        logits = engine.classify_clips(load_clip(video, engine.preprocessing)[None])["logits"][0]
    assert len(decisions) == 1
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(decisions[0].probs, e / e.sum(), atol=1e-5)


# ----------------------------------------------------------------------------- the pipeline


def test_run_edge_writes_a_playable_video_and_events(engine_dir, synth, tmp_path):
    from art_edge.api import run_edge
    from art_edge.config import RigConfig
    from art_edge.engine import ARTEngine

    out, events = tmp_path / "out.mp4", tmp_path / "events.jsonl"
    with ARTEngine.load(engine_dir, threads=2) as engine:
        source = open_source(str(synth / "val.csv"), classes=engine.classes)
        summary = run_edge(
            engine,
            source,
            RigConfig.from_settings(
                stream=StreamConfig(window=16, stride=4),
                output=str(out),
                events=str(events),
                emit="decision",
            ),
        )
    assert summary["frames"] == 8 * 16 and summary["clips_scored"] == 8
    assert summary["clip_top1"] * 8 == pytest.approx(
        round(summary["clip_top1"] * 8)
    )  # a count of 8 clips
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    assert not list(tmp_path.glob(".*part*")), "temporary video left behind"
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == summary["decisions"] == summary["events"]
    first = lines[0]
    assert {"ts", "frame", "label", "score", "topk", "saliency", "truth"} <= set(first)
    assert len(first["saliency"]) == 4  # K tracklets, each over the T sampled frames
    np.testing.assert_allclose([sum(row) for row in first["saliency"]], 1.0, atol=1e-3)
    assert summary["decision_latency_ms"]["p95"] >= summary["decision_latency_ms"]["p50"] > 0


def run_cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "art_edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_bad_inputs_are_one_line(engine_dir, tmp_path):
    cases = [
        (["--engine", engine_dir, "--camera", "57", "--headless"], "cannot open camera 57"),
        (["--engine", tmp_path / "nope", "--camera", "0"], "engine dir not found"),
        (["--engine", engine_dir, "--video", tmp_path / "missing.mp4"], "video file not found"),
        (
            ["--engine", engine_dir, "--source", "synthetic://", "--headless", "--output", "o.mp4"],
            "--headless draws",
        ),
    ]
    for args, message in cases:
        r = run_cli(*args)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(err) == 1 and message in err[0], (args, r.stderr)


def test_cli_unreadable_file_is_one_line(engine_dir, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    r = run_cli("--engine", engine_dir, "--video", bad, "--headless")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "cannot read" in r.stderr


def test_sigint_finishes_cleanly(engine_dir, tmp_path):
    out, events = tmp_path / "live.mp4", tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "art_edge.cli",
            "--engine",
            str(engine_dir),
            "--source",
            "synthetic://?frames=16&size=48&fps=30",
            "--output",
            str(out),
            "--events",
            str(events),
            "--emit",
            "decision",
            "--summary",
            str(tmp_path / "s.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (events.is_file() and events.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stderr.read() if proc.poll() else "slow"
        )
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"] > 0
    assert len(events.read_text().splitlines()) == summary["events"] >= 3
    assert "FPS" in stdout


def test_real_footage_through_the_cli(engine_dir, tmp_path, real_clip):
    """Camera footage (640×272, 25 FPS) from a package, through art-edge end to end."""
    video = real_clip("bikes.mp4")
    out, events, summary = tmp_path / "bikes.mp4", tmp_path / "ev.jsonl", tmp_path / "s.json"
    r = run_cli(
        "--engine",
        engine_dir,
        "--video",
        video,
        "--max-frames",
        60,
        "--output",
        out,
        "--events",
        events,
        "--emit",
        "decision",
        "--summary",
        summary,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert (
        s["frames"] == 60 and s["decisions"] == 15 and s["dropped"] == 0
    )  # a decision every 4 frames
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert len([json.loads(line) for line in events.read_text().splitlines()]) == s["decisions"]


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


def test_long_run_memory_stays_flat(engine_dir, tmp_path):
    """1600 frames with overlay, MP4 and events: resident memory after warm-up does not grow."""
    import threading

    from art_edge.api import run_edge
    from art_edge.config import RigConfig
    from art_edge.engine import ARTEngine

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    samples, done = [], threading.Event()
    sampler = threading.Thread(
        target=lambda: [samples.append(rss_mb()) for _ in iter(lambda: done.wait(0.1), True)],
        daemon=True,
    )
    with ARTEngine.load(engine_dir, threads=2) as engine:
        sampler.start()
        summary = run_edge(
            engine,
            open_source("synthetic://?frames=32&size=48&clips=50", classes=engine.classes),
            RigConfig.from_settings(
                stream=StreamConfig(window=16, stride=4),
                output=str(tmp_path / "long.mp4"),
                events=str(tmp_path / "ev.jsonl"),
                emit="decision",
            ),
        )
        done.set()
        sampler.join()
    assert summary["frames"] == 1600 and len(samples) >= 8
    quarter = len(samples) // 4
    warm, last = max(samples[quarter : 2 * quarter]), max(samples[-quarter:])
    # Each annotated frame is ~0.4 MB: keeping them (or any per-frame state) would add hundreds of MB.
    assert last - warm < 30, f"resident memory grew from {warm:.0f} MB to {last:.0f} MB"


def test_mixed_resolutions_keep_every_frame_in_the_video(engine_dir, synth, tmp_path):
    """A LIST of clips of different sizes: every processed frame is in the annotated video,
    letterboxed into the first clip's size (OpenCV would drop the others without a word)."""
    from art_edge.api import run_edge
    from art_edge.config import RigConfig
    from art_edge.engine import ARTEngine
    from art_edge.synthetic import write_video

    first = sorted((synth / "videos").glob("val_*.mp4"))[0]
    frames = [f.image[:, :, ::-1] for f in drain(open_source(str(first)))]
    write_video(tmp_path / "wide.mp4", np.stack([cv2.resize(f, (160, 72)) for f in frames]))
    write_video(tmp_path / "tall.mp4", np.stack([cv2.resize(f, (48, 96)) for f in frames]))
    (tmp_path / "mixed.csv").write_text(f"path,label\n{first},0\nwide.mp4,0\ntall.mp4,0\n")
    out = tmp_path / "out.mp4"
    with ARTEngine.load(engine_dir, threads=2) as engine:
        source = open_source(str(tmp_path / "mixed.csv"), classes=engine.classes)
        summary = run_edge(
            engine,
            source,
            RigConfig.from_settings(stream=StreamConfig(window=8, stride=4), output=str(out)),
        )
    assert summary["frames"] == 3 * len(frames) == summary["video_frames"]
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]


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


def test_streaming_does_each_frames_work_once_and_decides_as_the_whole_head(engine_dir, synth):
    """The per-frame stage runs for frames new to the sample (or cached under other top-K ids)
    only, and every decision equals the whole head run on the same T frames."""
    from art_edge.engine import ARTEngine

    class WholeHead(StreamingClassifier):
        def _head(self, job):
            return self.engine.run_head(job.patches[None], job.tokens[None])

    videos = sorted((synth / "videos").glob("val_*.mp4"))[:2]
    frames = [f for i, v in enumerate(videos) for f in clip_frames(v, i)]
    cfg = StreamConfig(window=8, stride=2, smoothing=0.3)
    with ARTEngine.load(engine_dir, threads=2) as engine:
        cached, whole = StreamingClassifier(engine, cfg), WholeHead(engine, cfg)
        pairs = [(cached.push(f), whole.push(f)) for f in frames]
    decisions = [(a, b) for a, b in pairs if a is not None]
    assert len(decisions) > 5 and all(b is not None for _, b in decisions)
    for a, b in decisions:
        assert a.label == b.label and a.topk[0][0] == b.topk[0][0]
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
    assert (
        cached.frames_computed < len(decisions) * engine.num_frames
    )  # fewer than the whole head's
    assert cached.frames_computed >= engine.num_frames  # the first decision computes all T
