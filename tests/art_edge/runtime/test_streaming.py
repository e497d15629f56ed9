"""Streaming inference: smoothing and hysteresis, a decision at a clip's end equal to the whole
clip's forward, each frame's per-frame work done once."""

import time

import cv2
import numpy as np

from art_edge.preprocess import load_clip
from art_edge.runtime.engine import ARTEngine
from art_edge.runtime.streaming import DecisionSmoother, Frame, StreamConfig, StreamingClassifier


def test_smoother_hysteresis_does_not_flicker():
    s = DecisionSmoother(smoothing=0.0, hysteresis=0.2)
    seq = [[0.6, 0.4], [0.45, 0.55], [0.55, 0.45], [0.45, 0.55], [0.2, 0.8]]
    labels = [s.update(np.asarray(p))[0] for p in seq]
    assert labels == [0, 0, 0, 0, 1]
    ema = DecisionSmoother(smoothing=0.5, hysteresis=0.0)
    ema.update(np.array([1.0, 0.0]))
    ema.update(np.array([0.0, 1.0]))
    np.testing.assert_allclose(ema.probs, [0.5, 0.5])


def clip_frames(path, segment=0, label=None):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(
            Frame(
                cv2.cvtColor(img, cv2.COLOR_BGR2RGB), len(frames), time.monotonic(), segment, label
            )
        )
    return frames


def test_streaming_decision_at_clip_end_equals_the_whole_clip_forward(engine_dir, synth):
    """Window = the clip: the live path samples and preprocesses exactly like evaluation."""

    video = sorted((synth / "videos").glob("val_*.mp4"))[0]
    frames = clip_frames(video)
    with ARTEngine.load(engine_dir, threads=2) as engine:
        clf = StreamingClassifier(
            engine, StreamConfig(window=len(frames), stride=len(frames), smoothing=0.0)
        )
        decisions = [d for d in (clf.push(f) for f in frames) if d is not None]
        logits = engine.classify_clips(load_clip(video, engine.preprocessing)[None])["logits"][0]
    assert len(decisions) == 1
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(decisions[0].probs, e / e.sum(), atol=1e-5)


def test_streaming_does_each_frames_work_once_and_decides_as_the_whole_head(engine_dir, synth):
    """The per-frame stage runs for frames new to the sample (or cached under other top-K ids)
    only, and every decision equals the whole head run on the same T frames."""

    class WholeHead(StreamingClassifier):
        def _head(self, job):
            return self.engine.run_head(job.patches[None], job.tokens[None])

    videos = sorted((synth / "videos").glob("val_*.mp4"))[:2]
    frames = [f for i, v in enumerate(videos) for f in clip_frames(v, i)]
    cfg = StreamConfig(window=8, stride=2, smoothing=0.3)
    with ARTEngine.load(engine_dir, threads=2) as engine:
        cached, whole = StreamingClassifier(engine, cfg), WholeHead(engine, cfg)
        pairs = [(cached.push(f), whole.push(f)) for f in frames]
    decisions = [(a, b) for a, b in pairs if a is not None]
    assert len(decisions) > 5 and all(b is not None for _, b in decisions)
    for a, b in decisions:
        assert a.label == b.label and a.topk[0][0] == b.topk[0][0]
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
        np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
    assert (
        cached.frames_computed < len(decisions) * engine.num_frames
    )  # fewer than the whole head's
    assert cached.frames_computed >= engine.num_frames  # the first decision computes all T
