"""Tracked cameras in the rig (the tests' small engine): a lane per track whose crops share the
encoder batch with the other cameras', a lost track's lane ended and freed, and every output
naming the tracks: events, segments, the annotated video, /metrics, the dashboard's state, the
Python API."""

import json

import cv2
import numpy as np
import pytest

from art_edge.api import ARTEngine, Outputs
from art_edge.rig.camera import CameraSpec
from art_edge.rig.config import RigConfig
from art_edge.rig.loop import Rig
from art_edge.rig.observers import RigObserver
from art_edge.rig.report import status_text
from art_edge.runtime.streaming import StreamConfig
from art_edge.serve.metrics import RigCollector
from art_edge.serve.web import camera_state
from art_edge.synthetic import make_scenes, write_video
from art_edge.video.sources import open_source

CFG = StreamConfig(window=12, stride=3, smoothing=0.3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """A 2-actor scene, and a 1-actor one whose actor leaves after frame 40 (the floor stays)."""
    root = tmp_path_factory.mktemp("tracked")
    two = make_scenes(root / "two", scenes=1, actors=(2, 2), num_frames=48, seed=3)
    one = make_scenes(root / "one", scenes=1, actors=(1, 1), num_frames=80, seed=5)
    cap, frames = cv2.VideoCapture(str(one / "scene_0000.mp4")), []
    while len(frames) < 80:
        ok, frame = cap.read()
        assert ok
        frames.append(frame if len(frames) <= 40 else frames[0])  # frame 0: the empty floor
    leaves = root / "leaves.mp4"
    write_video(leaves, np.stack(frames))
    return two / "scene_0000.mp4", leaves


class Log(RigObserver):
    def __init__(self):
        self.decisions, self.segments, self.frames = [], [], []

    def on_frame(self, camera, frame):
        self.frames.append(
            (camera, frame.index, None if frame.tracks is None else len(frame.tracks))
        )

    def on_decision(self, camera, decision):
        self.decisions.append((camera, decision.track, decision.box, decision.frame))

    def on_segment(self, camera, record):
        self.segments.append((camera, record))


def test_tracks_and_a_plain_camera_share_the_encoder_batch(engine_dir, scenes, tmp_path):
    two, _ = scenes
    events = tmp_path / "events.jsonl"
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        # one thread: each step takes a stride of frames from each camera, so the batch is known
        config = RigConfig.from_settings(stream=CFG, track="a=motion", events=str(events),
                                         emit="decision", headless=True, threaded=False)  # fmt: skip
        specs = [CameraSpec("a", open_source(str(two))), CameraSpec("b", open_source(str(two)))]
        rig = Rig(engine, specs, config)
        Outputs(rig, engine, config)  # the events, as art-edge registers them
        log = rig.observe(Log())
        snap = rig.run()
    a = [d for d in log.decisions if d[0] == "a"]
    b = [d for d in log.decisions if d[0] == "b"]
    assert {d[1] for d in a} and None not in {d[1] for d in a}  # a's decisions name their track
    assert len({d[1] for d in a}) >= 2  # both actors
    assert all(d[2] is not None and len(d[2]) == 4 for d in a)
    assert {d[1] for d in b} == {None}  # the plain camera's do not
    # a batch held b's stride of frames and the crops of a's two tracks in its stride
    assert snap.max_batch == 3 * CFG.stride
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(e.get("track") is not None and e["camera"] == "a" for e in lines)
    assert all("track" not in e for e in lines if e.get("camera") == "b")


def test_a_lost_track_ends_its_segment_and_frees_its_lane(engine_dir, scenes, tmp_path):
    _, leaves = scenes
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        config = RigConfig.from_settings(stream=CFG, track="motion", min_score=0.0,
                                         min_duration=0.0, segments=str(tmp_path / "s.jsonl"),
                                         headless=True)  # fmt: skip
        rig = Rig(engine, [CameraSpec("cam0", open_source(str(leaves)))], config)
        log = rig.observe(Log())
        snap = rig.run()
    lanes = rig.cameras[0].lanes
    assert lanes.born == 1 and lanes.lost == 1  # the actor's track, lost when it left
    assert lanes.live == {} and lanes.ending == []
    assert rig.heads.lanes == [rig.cameras[0].head]  # its head lane freed
    assert snap.cameras[0].tracks == ()
    tracked = [d for d in log.decisions if d[1] is not None]
    assert tracked and max(d[3] for d in tracked) < 70  # no decision long after it left
    assert log.segments and all(r["track"] == tracked[0][1] for _, r in log.segments)
    # the frames after the loss still went to the outputs, with no track
    assert [n for _, i, n in log.frames if i > 70] == [0] * 9


def test_outputs_name_the_tracks(engine_dir, scenes, tmp_path):
    two, _ = scenes
    video = tmp_path / "out.mp4"
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        config = RigConfig.from_settings(stream=CFG, track="motion", output=str(video))
        rig = Rig(engine, [CameraSpec("cam0", open_source(str(two)))], config)
        states, metrics, lines = [], [], []

        class Probe(RigObserver):  # what the dashboard and /metrics read, while it runs
            def on_decision(self, camera, decision):
                snap = rig.snapshot()
                states.append(camera_state(snap.camera(camera), engine.classes, 10.0))
                lines.append(status_text(snap))
                metrics.extend(RigCollector(rig.snapshot, dict).collect())

        rig.observe(Probe())
        Outputs(rig, engine, config)
        rig.run()
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 48
    tracked = [s for s in states if s.get("tracks")]
    assert tracked and all(t["id"] is not None for s in tracked for t in s["tracks"])
    assert any(label.startswith("#") for s in tracked for label, _ in s["topk"])
    assert any(line.startswith("#") for line in lines)  # the status line: each track's label
    gauges = [m for m in metrics if m.name == "art_tracks"]
    assert gauges and max(s.value for m in gauges for s in m.samples) >= 1


def test_the_python_api_yields_per_track_items(engine_dir, scenes):
    two, _ = scenes
    with ARTEngine.load(engine_dir, threads=2) as engine:
        items = list(engine.stream([f"floor={two}"], track="motion", stream=CFG))
    decisions = [i for i in items if i.kind == "decision"]
    assert decisions and all(i.camera == "floor" and i.track is not None for i in decisions)
    assert all(len(i.box) == 4 for i in decisions)


def test_each_tracks_segments_get_clips_of_their_own(engine_dir, scenes, tmp_path):
    two, _ = scenes
    clips, segments = tmp_path / "clips", tmp_path / "segments.jsonl"
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        config = RigConfig.from_settings(stream=CFG, track="motion", clips=str(clips), pre=0.5,
                                         post=0.5, min_score=0.0, min_duration=0.0,
                                         segments=str(segments), headless=True)  # fmt: skip
        rig = Rig(engine, [CameraSpec("cam0", open_source(str(two)))], config)
        Outputs(rig, engine, config)
        rig.run()
    records = [json.loads(line) for line in segments.read_text().splitlines()]
    records = [r for r in records if r.get("type") == "segment"]
    assert len({r["track"] for r in records}) >= 2
    for r in records:
        assert r["clip"] and f"cam0-track{r['track']}_" in r["clip"]
        assert cv2.VideoCapture(r["clip"]).get(cv2.CAP_PROP_FRAME_COUNT) > 0
    assert len({r["clip"] for r in records}) == len(records)  # none written over another
