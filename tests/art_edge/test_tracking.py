"""art-edge --track end to end: a synthetic scene of three actors doing three different classes,
through the command, with the demo's engine."""

import json

import pytest

from art_edge import cli
from art_edge.synthetic import make_scenes
from art_edge.video.tracks import box_iou


def read_jsonl(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_three_actors_each_get_a_track_labelled_with_their_class(demo_engine, tmp_path):
    scenes = make_scenes(tmp_path / "scenes", scenes=1, actors=(3, 3), seed=0)
    truth = json.loads((scenes / "scene_0000.json").read_text())
    actors = truth["actors"]
    assert len({a["label"] for a in actors}) == 3
    events, segments = tmp_path / "events.jsonl", tmp_path / "segments.jsonl"
    code = cli.main([
        "--engine", str(demo_engine), "--video", str(scenes / "scene_0000.mp4"),
        "--track", "motion", "--headless", "--emit", "decision",
        "--events", str(events), "--segments", str(segments),
    ])  # fmt: skip
    assert code == 0
    decisions = [e for e in read_jsonl(events) if e["type"] == "decision"]
    assert decisions and all(e["camera"] == "cam0" for e in decisions)
    assert all(isinstance(e["track"], int) and len(e["box"]) == 4 for e in decisions)
    by_track: dict = {}
    for e in decisions:
        by_track.setdefault(e["track"], []).append(e)
    # each track belongs to the actor its boxes overlap most
    owner = {}
    for tid, track_events in by_track.items():
        overlap = [
            sum(box_iou(e["box"], a["boxes"][e["frame"]]) for e in track_events) for a in actors
        ]
        assert max(overlap) > 0, f"track {tid} overlaps no actor"
        owner[tid] = max(range(len(actors)), key=overlap.__getitem__)
    assert set(owner.values()) == {0, 1, 2}  # every actor got a track
    for tid, track_events in by_track.items():  # each track's final label is its actor's class
        assert track_events[-1]["label"] == actors[owner[tid]]["class"], (tid, owner[tid])
    records = [r for r in read_jsonl(segments) if r["type"] == "segment"]
    assert records and all(r["track"] in by_track for r in records)
