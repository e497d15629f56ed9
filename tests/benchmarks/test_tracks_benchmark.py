"""benchmarks/tracks.py's scoring: a track against the actor it overlaps most, its final label,
and identity switches, on hand-made tracks whose answers are known."""

import tracks


def truth(*boxes_per_actor, labels=(0, 1)):
    return {"actors": [{"label": label, "boxes": list(boxes)}
                       for label, boxes in zip(labels, boxes_per_actor)]}  # fmt: skip


A = [(0, 0, 10, 10)] * 4  # actor 0 stands still on the left
B = [(50, 0, 60, 10)] * 4  # actor 1 on the right


def test_each_track_is_scored_by_its_last_label_against_its_actor():
    frames = {t: [(7, A[t]), (8, B[t])] for t in range(4)}
    decisions = {7: [(2, 1), (3, 0)], 8: [(3, 0)]}  # 7 ends on actor 0's class, 8 does not
    score = tracks.score_scene(truth(A, B), frames, decisions)
    assert (score["scored"], score["correct"], score["actors_tracked"]) == (2, 1, 2)
    assert score["switches"] == 0 and score["actor_frames_matched"] == 8


def test_a_track_that_changes_id_is_a_switch():
    frames = {0: [(1, A[0])], 1: [(1, A[1])], 2: [(2, A[2])], 3: [(2, A[3])]}
    switches, matched, visible = tracks.identity_switches(truth(A)["actors"], frames)
    assert (switches, matched, visible) == (1, 4, 4)


def test_a_box_that_misses_its_actor_matches_nothing():
    frames = {t: [(1, (3, 3, 13, 13))] for t in range(4)}  # IoU 0.32 < 0.5
    switches, matched, _ = tracks.identity_switches(truth(A)["actors"], frames)
    assert (switches, matched) == (0, 0)
