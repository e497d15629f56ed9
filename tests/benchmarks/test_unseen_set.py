"""benchmarks/unseen_set.py: its four classes are the motions they are named after."""

import numpy as np

from unseen_set import CLASSES, FRAMES, dot_offsets


def test_each_class_moves_the_dot_as_named():
    rng = np.random.default_rng(0)
    for _ in range(20):
        paths = {name: dot_offsets(c, rng) for c, name in enumerate(CLASSES)}
        for name, p in paths.items():
            assert p.shape == (FRAMES, 2) and 4.9 <= np.abs(p).max() <= 8.0, name
        turn = {n: np.cross(p[:-1], p[1:]) for n, p in paths.items()}
        assert (turn["dot_clockwise"] > 0).all()  # clockwise on screen, where y points down
        assert (turn["dot_counterclockwise"] < 0).all()
        assert (
            np.allclose(paths["dot_vertical"][:, 0], 0) and np.ptp(paths["dot_vertical"][:, 1]) > 8
        )
        assert np.allclose(paths["dot_horizontal"][:, 1], 0)
