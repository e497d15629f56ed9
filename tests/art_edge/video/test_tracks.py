"""Detectors, the tracker and the tubelets on art-synth's multi-actor scenes (real MP4 files), and
a YOLO-layout ONNX detector made here with onnx.helper."""

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from art_edge import cli
from art_edge.errors import UserError
from art_edge.synthetic import Crowd, make_scenes, write_video
from art_edge.video.detect import MotionDetector, OnnxDetector, open_detector
from art_edge.video.overlay import TRACKLET_COLOURS, draw_overlay
from art_edge.video.tracks import Tubelets, box_iou, crop_window, split_merged


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """One 3-actor scene: (RGB frames, ground truth)."""
    out = make_scenes(tmp_path_factory.mktemp("scenes") / "s", scenes=1, actors=(3, 3), seed=4)
    truth = json.loads((out / "scene_0000.json").read_text())
    cap, frames = cv2.VideoCapture(str(out / "scene_0000.mp4")), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames, truth


def test_scene_ground_truth(scene):
    frames, truth = scene
    assert len(frames) == truth["frames"] == 96
    assert len({a["label"] for a in truth["actors"]}) == 3  # three different classes
    crowd = Crowd()
    for actor in truth["actors"]:
        boxes = actor["boxes"]
        assert boxes[: crowd.lead] == [None] * crowd.lead  # the empty floor first
        for x0, y0, x1, y1 in boxes[crowd.lead :]:
            assert (x1 - x0, y1 - y0) == (crowd.actor, crowd.actor)
            assert 0 <= x0 and x1 <= truth["width"] and 0 <= y0 and y1 <= truth["height"]
        assert boxes[-1] != boxes[crowd.lead]  # it walked


def test_motion_detector_finds_the_separate_actors(scene):
    frames, truth = scene
    detector = MotionDetector()
    for frame in frames[:20]:
        boxes = detector.detect(frame)
    actors = [a["boxes"][19] for a in truth["actors"]]
    apart = [a for a in actors if all(box_iou(a, o) == 0 for o in actors if o is not a)]
    assert apart  # the scene has an actor overlapping no other at frame 19
    for actor in apart:  # each is one blob of its own
        assert max(box_iou(b[:4], actor) for b in boxes) > 0.85


def test_tracks_keep_their_actors_and_crops_are_steady_squares(scene):
    frames, truth = scene
    tubelets = Tubelets(open_detector("motion"), every=2)
    served = {}
    for t, frame in enumerate(frames):
        for track in tubelets.update(frame):
            x0, y0, x1, y1 = track.window
            assert x1 - x0 == pytest.approx(y1 - y0, abs=1)  # square
            best = max(range(3), key=lambda k: box_iou(track.box, truth["actors"][k]["boxes"][t]))
            served.setdefault(track.id, []).append((t, best, track.window))
    long_lived = {tid: v for tid, v in served.items() if len(v) > 40}
    assert len(long_lived) == 3  # one long track an actor
    assert {v[-1][1] for v in long_lived.values()} == {0, 1, 2}
    for visits in long_lived.values():
        assert len({actor for _, actor, _ in visits[5:]}) == 1  # never jumps to another actor
        centres = np.array([((w[0] + w[2]) / 2, (w[1] + w[3]) / 2) for _, _, w in visits])
        assert np.abs(np.diff(centres, axis=0)).max() <= 6  # the crop does not jitter


def test_max_tracks_serves_the_largest_and_counts_the_rest(scene):
    frames, _ = scene
    tubelets = Tubelets(open_detector("motion"), max_tracks=2)
    for frame in frames[:30]:
        tracks = tubelets.update(frame)
    assert len(tracks) == 2
    assert tubelets.over_limit == 1


def test_a_blob_of_two_tracks_is_split_at_its_edges():
    known = np.array([[10, 10, 50, 50], [40, 12, 80, 52]], np.float32)
    blob = np.array([[5, 10, 85, 52, 0.9]], np.float32)
    out = split_merged(blob, known)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out[0, :4], [5, 10, 45, 50])  # the left one takes the left edge
    np.testing.assert_allclose(out[1, :4], [45, 12, 85, 52])  # the right one the right edge
    alone = np.array([[100, 100, 140, 140, 0.9]], np.float32)
    assert split_merged(alone, known).tolist() == alone.tolist()


def test_crop_window_past_the_edge_stays_square():
    image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    crop = crop_window(image, (-10, -5, 30, 35))
    assert crop.shape == (40, 40, 3)
    np.testing.assert_array_equal(crop[5:, 10:], image[:35, :30])


def yolo_model(path, layout: str, boxes: list):
    """A constant YOLO-layout detector: whatever the image, it outputs `boxes` (cx, cy, w, h,
    score) of class 0, in the v8 ([1, 4 + C, N]) or v5 ([1, N, 5 + C]) layout."""
    rows = np.zeros((32, 5), np.float32)  # a real one has thousands of candidates, most empty
    rows[: len(boxes)] = boxes
    if layout == "v8":
        out = np.concatenate([rows[:, :4], rows[:, 4:5], np.zeros_like(rows[:, 4:5])], 1).T[None]
    else:
        out = np.concatenate([rows, np.ones_like(rows[:, :1]), np.zeros_like(rows[:, :1])], 1)[None]
    const = helper.make_tensor("boxes", TensorProto.FLOAT, out.shape, out.ravel())
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["boxes", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
        [const, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("layout", ["v8", "v5"])
def test_onnx_detector_reads_both_yolo_layouts(tmp_path, layout):
    path = yolo_model(tmp_path / "d.onnx", layout, [[32, 16, 20, 10, 0.9], [10, 10, 4, 4, 0.1]])
    detector = open_detector(f"onnx:{path}")
    boxes = detector.detect(np.zeros((128, 256, 3), np.uint8))  # letterboxed: scale 1/4
    assert boxes.shape == (1, 5)  # the low score is dropped
    np.testing.assert_allclose(boxes[0, :4], [88, 44, 168, 84], atol=1e-3)  # (32 ± 10, 16 ± 5) × 4


def test_onnx_that_is_not_a_detector_is_one_line(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    path = tmp_path / "n.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(UserError, match=r"expected one input \[1, 3, H, W\] and one output"):
        OnnxDetector(str(path))


def test_unknown_detector_says_which_there_are():
    with pytest.raises(UserError, match="use motion .* hog .* or onnx:PATH"):
        open_detector("yolo")


def test_the_overlay_draws_each_tracks_box_in_its_colour():
    frame = np.zeros((400, 600, 3), np.uint8)
    tracks = [(1, (50, 60, 150, 200), 0, 0.9), (2, (300, 100, 420, 260), None, None)]
    bgr = draw_overlay(frame, None, ["jump", "spin"], 10.0, None, tracks=tracks)
    for tid, (x0, y0, x1, y1), *_ in tracks:
        colour = TRACKLET_COLOURS[tid % len(TRACKLET_COLOURS)]
        assert tuple(bgr[(y0 + y1) // 2, x0]) == colour  # the box's left edge
        assert tuple(bgr[(y0 + y1) // 2, (x0 + x1) // 2]) == (0, 0, 0)  # not filled


def test_an_onnx_detector_drives_art_edge_track(engine_dir, scene, tmp_path):
    """`--track onnx:PATH` through the command: a constant detector's two boxes become two tracks
    whose events carry them (its boxes are in its 64² input: the 432×240 frame letterboxed to
    scale 64/432)."""
    frames, _ = scene
    video = tmp_path / "scene.mp4"
    write_video(video, np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames[:40]]))
    model = yolo_model(tmp_path / "d.onnx", "v8", [[10, 10, 8, 8, 0.9], [40, 20, 10, 10, 0.8]])
    events = tmp_path / "events.jsonl"
    code = cli.main(["--engine", str(engine_dir), "--video", str(video), "--track",
                     f"onnx:{model}", "--headless", "--emit", "decision", "--events", str(events),
                     "--window", "12", "--stride", "3"])  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    boxes = {e["track"]: e["box"] for e in lines if e.get("type") == "decision"}
    assert len(boxes) == 2
    scale = 432 / 64
    expected = [[6 * scale, 6 * scale, 14 * scale, 14 * scale],
                [35 * scale, 15 * scale, 45 * scale, 25 * scale]]  # fmt: skip
    for box in boxes.values():
        assert min(np.abs(np.subtract(box, e)).max() for e in expected) < 2.0
