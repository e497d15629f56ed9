"""The threaded pipeline: a file loses nothing and decides exactly as one thread would; a live
source's slow head never stalls encoding."""

import json
import time

import numpy as np

from art_edge.api import run_edge
from art_edge.rig.config import RigConfig
from art_edge.runtime.streaming import StreamConfig, StreamingClassifier
from art_edge.video.sources import SyntheticSource, open_source


def test_a_file_through_the_threads_decides_exactly_as_one_thread(engine_dir, synth, tmp_path):
    """Every frame encoded, every decision made, the same decisions (probabilities included) as
    the single-threaded classifier on the same frames, clip ends included."""
    from art_edge.runtime.engine import ARTEngine

    events, cfg = tmp_path / "events.jsonl", StreamConfig(window=12, stride=3, smoothing=0.3)
    # the head on one inference thread beside the encoder's two, as art-edge runs it
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        assert [r.threads for r in engine.runners.values()] == [2, 1, 1, 1]
        summary = run_edge(
            engine,
            open_source(str(synth / "val.csv"), classes=engine.classes),
            RigConfig.from_settings(stream=cfg, events=str(events), emit="decision", headless=True),
        )
        source, clf, expected, last = (
            open_source(str(synth / "val.csv"), classes=engine.classes),
            StreamingClassifier(engine, cfg),
            [],
            None,
        )
        with source:
            for frame in iter(lambda: _next(source), None):
                if last is not None and frame.segment != last.segment:
                    expected.append(clf.flush(last))
                expected.append(clf.push(frame))
                last = frame
            expected.append(clf.flush(last))
        names = engine.classes
    expected = [d for d in expected if d is not None]
    got = [json.loads(line) for line in events.read_text().splitlines()][1:]  # after the header
    assert summary["frames"] == 8 * 16 and summary["decisions_skipped"] == 0
    assert [(e["frame"], e["label"]) for e in got] == [(d.frame, names[d.label]) for d in expected]
    for e, d in zip(got, expected):
        assert [t["label"] for t in e["topk"]] == [names[c] for c, _ in d.topk]
        np.testing.assert_allclose(
            [t["score"] for t in e["topk"]], [p for _, p in d.topk], atol=1e-4
        )


def _next(source):
    from art_edge.video.sources import EndOfStream

    try:
        return source.capture()
    except EndOfStream:
        return None


class SlowHead:
    """An engine whose clip head takes `seconds` longer (a big head on a small CPU)."""

    def __init__(self, engine, seconds: float):
        self._engine, self.seconds = engine, seconds

    def head_topk(self, tokens):
        time.sleep(self.seconds)
        return self._engine.head_topk(tokens)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def test_a_slow_head_does_not_stall_a_live_source(engine_dir):
    """Head 150 ms a decision, a decision every 2 frames of a 40 FPS camera. In one thread the
    frames would wait for the head: at most 2 frames per 150 ms, 13.3 FPS. Threaded, frames keep
    coming and keep their latency; decisions that cannot keep up are skipped and counted, never
    queued."""
    from art_edge.runtime.engine import ARTEngine

    with ARTEngine.load(engine_dir, threads=2) as engine:
        source = SyntheticSource("synthetic://", frames=32, size=72, fps=40.0)
        summary = run_edge(
            SlowHead(engine, 0.15),
            source,
            RigConfig.from_settings(stream=StreamConfig(stride=2), headless=True, max_frames=120),
        )
    assert summary["frames"] == 120 and summary["fps"] > 20, summary["fps"]
    assert summary["decisions"] >= 5 and summary["decisions_skipped"] > 0
    assert summary["frame_latency_ms"]["p95"] < 150, summary["frame_latency_ms"]
    assert summary["decision_latency_ms"]["p50"] >= 150
