"""benchmarks/edge.py: the recompute design that streaming is measured against makes the same
decisions as streaming, so the speed ratio it reports compares like with like."""

import numpy as np

from art_edge.runtime.engine import ARTEngine
from art_edge.runtime.streaming import StreamConfig, StreamingClassifier

from edge import RecomputeClassifier, decode_frames


def test_recompute_design_makes_the_same_decisions(engine_dir, synth):
    videos = sorted((synth / "videos").glob("val_*.mp4"))[:2]
    frames = []
    for segment, video in enumerate(videos):
        for f in decode_frames(video):
            f.segment = segment
            frames.append(f)
    cfg = StreamConfig(window=8, stride=2, smoothing=0.3)
    with ARTEngine.load(engine_dir, threads=2) as engine:
        runs = []
        for clf in (
            StreamingClassifier(engine, cfg),
            RecomputeClassifier(engine, cfg),
            RecomputeClassifier(engine, cfg, batched=False),
        ):
            runs.append([d for d in (clf.push(f) for f in frames) if d is not None])
    assert len(runs[0]) == len(runs[1]) == len(runs[2]) > 5
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.frame == b.frame and a.label == b.label
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
