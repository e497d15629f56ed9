"""Actions as segments: runs of a label above the score, long enough."""

import time
from types import SimpleNamespace

from art_edge.rig.segments import SegmentTracker


def decision(frame, label, score, fps=10.0):
    return SimpleNamespace(frame=frame, label=label, score=score, timestamp=time.monotonic())


def test_segments_are_runs_of_a_label_above_the_score_and_long_enough():
    tracker = SegmentTracker("pool", ["pike", "tuck"], fps=10, min_score=0.5, min_duration=0.5)
    stream = [
        (0, 0, 0.9),
        (4, 0, 0.8),
        (8, 0, 0.7),  # pike, 0.8 s
        (12, 1, 0.9),  # tuck starts: pike ends
        (16, 1, 0.4),  # below the score: idle, tuck (0 s) too short
        (20, 0, 0.6),
        (24, 0, 0.9),  # pike again, 0.4 s: too short when the stream ends
    ]
    ended = []
    for frame, label, score in stream:
        ended += tracker.update(decision(frame, label, score))
    ended += tracker.close()
    assert [(s.label, s.start_frame, s.end_frame) for s in ended] == [("pike", 0, 8)]
    record = ended[0].to_dict()
    assert record["camera"] == "pool" and record["duration_s"] == 0.8
    assert record["peak_score"] == 0.9 and record["mean_score"] == 0.8
    assert tracker.dropped_short == 2
