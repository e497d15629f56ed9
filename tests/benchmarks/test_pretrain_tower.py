"""benchmarks/pretrain_tower.py: the frames it pretrains on carry the mark where it is drawn, and
what it writes loads strictly through --clip-weights."""

import numpy as np

from pretrain_tower import IMAGE_SIZE, TOWER, frames_with_marks, pretrain


def test_each_frame_has_its_mark_at_the_given_centre():
    images, centres = frames_with_marks(24, seed=3)
    assert images.shape == (24, 3, IMAGE_SIZE, IMAGE_SIZE) and centres.shape == (24, 2)
    brightness = images.mean(axis=1)  # the mark is the brightest thing, inside a dark rim
    for img, (x, y) in zip(brightness, centres):
        col, row = int(x), int(y)
        assert img[row, col] > np.percentile(img, 97), (x, y)


def test_a_pretrained_tower_loads_through_clip_weights(tmp_path):
    from safetensors.torch import save_file

    from art_train.clip import create_clip

    images, centres = frames_with_marks(16, seed=4)
    clip = pretrain(images, centres, steps=2, seed=0, log=lambda *_: None)
    path = tmp_path / "tower.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    loaded = create_clip(TOWER, IMAGE_SIZE, str(path))
    for k, v in clip.state_dict().items():
        assert (loaded.state_dict()[k] == v).all(), k


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
