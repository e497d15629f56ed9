"""The Python API: a run's video, events and summary; memory over a long run; a LIST of mixed
resolutions; decisions and segments streamed from two cameras."""

import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from art_edge.api import ARTEngine, run_edge
from art_edge.rig.config import RigConfig
from art_edge.runtime.streaming import StreamConfig
from art_edge.synthetic import write_video
from art_edge.video.sources import open_source


def read_jsonl(path) -> list:
    """A JSONL output's records, without the line that heads each run."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [r for r in lines if r.get("type") != "run"]


def test_run_edge_writes_a_playable_video_and_events(engine_dir, synth, tmp_path):
    from art_edge.runtime.engine import ARTEngine

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
    lines = read_jsonl(events)
    assert len(lines) == summary["decisions"] == summary["events"]
    first = lines[0]
    assert {"ts", "frame", "label", "score", "topk", "saliency", "truth"} <= set(first)
    assert len(first["saliency"]) == 4  # K tracklets, each over the T sampled frames
    np.testing.assert_allclose([sum(row) for row in first["saliency"]], 1.0, atol=1e-3)
    assert summary["decision_latency_ms"]["p95"] >= summary["decision_latency_ms"]["p50"] > 0


def test_long_run_memory_stays_flat(engine_dir, tmp_path):
    """1600 frames with overlay, MP4 and events: resident memory after warm-up does not grow."""

    from art_edge.api import run_edge
    from art_edge.runtime.engine import ARTEngine

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
    from art_edge.runtime.engine import ARTEngine

    first = sorted((synth / "videos").glob("val_*.mp4"))[0]
    cap, frames = cv2.VideoCapture(str(first)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
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


def test_the_python_api_streams_decisions_and_segments_of_each_camera(engine_dir, tmp_path):

    uri = "synthetic://?frames=16&size=72&clips=3"
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        items = list(
            engine.stream([uri, f"b={uri}"], roi={"b": "0.1,0.1,0.8,0.8"}, window=12, stride=3,
                          segments=str(tmp_path / "s.jsonl"), min_score=0.0, min_duration=0.0)
        )  # fmt: skip
        classes = engine.classes
    decisions = [i for i in items if i.kind == "decision"]
    assert {i.camera for i in decisions} == {"cam0", "b"}
    assert all(i.label in classes and i.topk[0][0] in classes for i in decisions)
    segments = [i for i in items if i.kind == "segment"]
    assert segments and segments == [i for i in items if i.segment is not None]
    assert len(segments) == len(read_jsonl(tmp_path / "s.jsonl"))
