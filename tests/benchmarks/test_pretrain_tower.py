"""benchmarks/pretrain_tower.py: the frames it pretrains on carry the mark where it is drawn, and
what it writes loads strictly through --clip-weights."""

import numpy as np
import pytest

from pretrain_tower import IMAGE_SIZE, TOWER, frames_with_marks, write_tower


def test_each_frame_has_its_mark_at_the_given_centre():
    images, centres = frames_with_marks(24, seed=3)
    assert images.shape == (24, 3, IMAGE_SIZE, IMAGE_SIZE) and centres.shape == (24, 2)
    brightness = images.mean(axis=1)  # the mark is the brightest thing, inside a dark rim
    for img, (x, y) in zip(brightness, centres):
        col, row = int(x), int(y)
        assert img[row, col] > np.percentile(img, 97), (x, y)


@pytest.mark.parametrize("source", ["varied", "hard"])
def test_a_pretrained_tower_loads_through_clip_weights(tmp_path, source):
    from safetensors.torch import load_file

    from art_train.clip import create_clip

    path = tmp_path / "tower.safetensors"
    write_tower(path, frames=16, steps=2, source=source, log=lambda *_: None)
    written = load_file(str(path))
    loaded = create_clip(TOWER, IMAGE_SIZE, str(path)).state_dict()
    # the vision tower, all of it, and nothing else (its text tower was never trained)
    assert sorted(written) == sorted(k for k in loaded if k.startswith("visual."))
    for k, v in written.items():
        assert (loaded[k] == v).all(), k
    assert [p.name for p in tmp_path.iterdir()] == ["tower.safetensors"]  # no temporary left
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f"--seed 0 --frames-from {source}" in f.metadata()["made_by"]


def test_varied_frames_have_their_small_object_at_the_given_centre():
    from pretrain_tower import varied_frame

    rng = np.random.default_rng(5)
    for _ in range(40):
        img, (x, y) = varied_frame(rng)
        col, row, r = int(x), int(y), int(0.05 * img.shape[0]) + 2  # r: just outside the object
        side = img.shape[0] - 1
        ring = [img[row, min(col + r, side)], img[row, max(col - r, 0)],
                img[min(row + r, side), col], img[max(row - r, 0), col]]  # fmt: skip
        contrast = img[row, col].astype(float) - np.mean(ring, axis=0)
        assert np.abs(contrast).max() > 30, (x, y)
