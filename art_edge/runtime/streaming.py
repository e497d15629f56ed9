"""Streaming inference: each frame is encoded once into a ring buffer; the clip head runs every
`stride` frames on T frames sampled from the buffered window the way evaluation samples a clip.

    clf = StreamingClassifier(engine, StreamConfig(window=32, stride=4))
    for frame in frames:
        decision = clf.push(frame)        # None between decisions

Decisions are smoothed over time (an exponential moving average of the class probabilities) and
the decided label only changes when another class leads it by the hysteresis margin, so labels
do not flicker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from art_edge.errors import Number, fraction, non_negative_int, positive_int
from art_edge.preprocess import preprocess_frame, streaming_window_indices
from art_edge.runtime.engine import softmax
from art_edge.runtime.engine_dir import BATCH_PROFILE


def _setting(default, help: str, check=None):
    """A field that art-edge's configuration turns into a flag (see art_edge.rig.config)."""
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True)
class StreamConfig:
    window: int = _setting(
        0, "frames buffered; T are sampled from them (default 4·T)", non_negative_int
    )
    stride: int = _setting(4, "frames between decisions", positive_int)
    # the weight of the past in the moving average of probabilities (0: none)
    smoothing: float = _setting(
        0.5,
        "moving-average weight of past probabilities (0: off)",
        Number(float, 0.0, 0.999, what="a number in [0, 1)"),
    )
    # the lead (in smoothed probability) another class needs to take the label over
    hysteresis: float = _setting(0.1, "lead another class needs to take over the label", fraction)
    topk: int = 3  # classes listed in each decision
    min_frames: int = 0  # frames needed before the first decision (0: T)


@dataclass
class Frame:
    """A captured frame, as streaming inference takes it (art_edge.video.sources make them)."""

    image: np.ndarray  # RGB uint8 [H, W, 3]
    index: int  # frame number within the source
    timestamp: float  # time.monotonic() at capture
    segment: int = 0  # changes when a new clip starts (playlists, synthetic), so buffers reset
    label: int | None = None  # ground truth, when the source knows it
    tracks: list | None = None  # with tracking: the tracks served in it (art_edge.video.tracks)


@dataclass
class Decision:
    frame: int  # index of the newest frame in the window
    timestamp: float  # capture time of that frame
    label: int  # the decided class (after smoothing and hysteresis)
    score: float  # its smoothed probability
    changed: bool  # the decided label differs from the previous decision's
    probs: np.ndarray  # smoothed class probabilities
    topk: list  # [(class id, smoothed probability)], best first
    saliency: np.ndarray  # [T, K] per-tracklet saliency over the sampled frames
    attention: np.ndarray  # [K, L] attention maps of the newest sampled frame
    segment: int = 0
    truth: int | None = None
    head_ms: float = 0.0
    latency_ms: float = 0.0  # capture of the newest frame → decision made
    track: int | None = None  # with tracking: the track it is about (its own lane's decision)
    box: tuple | None = None  # … and the track's box (x0, y0, x1, y1) in that frame


class DecisionSmoother:
    """Moving average of probabilities, then hysteresis on the decided label."""

    def __init__(self, smoothing: float, hysteresis: float):
        self.smoothing, self.hysteresis = smoothing, hysteresis
        self.reset()

    def reset(self):
        self.probs, self.label = None, None

    def update(self, probs: np.ndarray) -> tuple[int, bool]:
        a = self.smoothing
        self.probs = probs if self.probs is None else a * self.probs + (1 - a) * probs
        best = int(self.probs.argmax())
        previous = self.label
        if self.label is None or self.probs[best] - self.probs[self.label] > self.hysteresis:
            self.label = best
        return self.label, self.label != previous


class FrameRing:
    """The last `capacity` frames' encoder outputs, and each frame's per-frame head outputs with
    the top-K ids they were computed for, in preallocated arrays (memory stays flat). Every frame
    pushed gets a serial number that is never reused, so a cache entry can be matched to the very
    frame it was computed for even after the encoder has moved on."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.patches = self.tokens = self.responses = self.attention = None
        self.cached_ids = None  # [capacity, K]: the top-K ids a slot's responses were computed for
        self.serials = np.full(capacity, -1, np.int64)  # the frame each slot holds
        self.cached_serials = np.full(capacity, -1, np.int64)  # the frame they were computed for
        self.count = 0  # frames pushed since the last reset
        self.serial = 0  # frames pushed ever

    def reset(self):
        self.count = 0
        self.serials[:] = -1
        self.cached_serials[:] = -1

    def push(self, patches: np.ndarray, tokens: np.ndarray):
        if self.patches is None:
            self.patches = np.zeros((self.capacity, *patches.shape), patches.dtype)
            self.tokens = np.zeros((self.capacity, *tokens.shape), tokens.dtype)
        slot = self.count % self.capacity
        self.patches[slot], self.tokens[slot] = patches, tokens
        self.serials[slot] = self.serial
        self.count += 1
        self.serial += 1

    def lookup(self, slots, serials, ids: np.ndarray) -> np.ndarray:
        """[len(slots)] bool: which slots hold responses cached for these frames and `ids`."""
        if self.cached_ids is None:
            return np.zeros(len(slots), bool)
        return (self.cached_serials[slots] == serials) & (self.cached_ids[slots] == ids).all(axis=1)

    def store(self, slots, serials, responses: np.ndarray, attention: np.ndarray, ids):
        """Cache per-frame outputs for `ids`, in the slots that still hold the frames they are of."""
        if self.responses is None:
            self.responses = np.zeros((self.capacity, *responses.shape[1:]), responses.dtype)
            self.attention = np.zeros((self.capacity, *attention.shape[1:]), attention.dtype)
            self.cached_ids = np.full((self.capacity, len(ids)), -1, np.int64)
        keep = self.serials[slots] == serials
        slots = np.asarray(slots)[keep]
        self.responses[slots], self.attention[slots] = responses[keep], attention[keep]
        self.cached_ids[slots], self.cached_serials[slots] = ids, np.asarray(serials)[keep]

    def slots(self, num_frames: int) -> np.ndarray:
        """Ring slots of T frames sampled from the buffered window, oldest first."""
        n = min(self.count, self.capacity)
        oldest = self.count - n
        return (oldest + streaming_window_indices(n, num_frames)) % self.capacity


@dataclass
class HeadJob:
    """What a decision needs, copied out of the ring when it fell due: the encoder goes on
    writing the ring while the head runs (on a thread of its own in art-edge's pipeline)."""

    frame: Frame  # the newest frame of the window
    slots: np.ndarray  # ring slots of the T sampled frames
    serials: np.ndarray  # the frame each of those slots held
    patches: np.ndarray  # [T, L, D]
    tokens: np.ndarray  # [T, D]


class StreamingClassifier:
    """Frames in, decisions out. The engine needs `encode_frames`, `head_topk`, `head_frames`,
    `head_readout`, `num_frames`, `preprocessing` (an ARTEngine).

    In one thread: `push(frame)` returns a decision when one is due. Split over two (art-edge's
    pipeline): `add(frame, encoded)` returns whether a decision is due, `job(frame)` copies what
    it needs, and `decide(job)` runs the head on another thread while frames keep coming."""

    def __init__(self, engine, config: StreamConfig | None = None):
        self.engine, self.cfg = engine, config or StreamConfig()
        self.num_frames = engine.num_frames
        self.window = self.cfg.window or 4 * self.num_frames
        self.min_frames = self.cfg.min_frames or self.num_frames
        self.ring = FrameRing(self.window)
        self.lock = threading.Lock()  # the ring, between the encoding and the deciding thread
        self.smoother = DecisionSmoother(self.cfg.smoothing, self.cfg.hysteresis)
        self.segment = self.smoothed_segment = None
        self.since_decision = 0
        self.encode_ms = 0.0
        self.frame_latency_ms = 0.0  # capture → encoded, of the last frame pushed
        # frames the per-frame head stage ran on (the rest came from the cache)
        self.frames_computed = 0

    def encode(self, frames: list) -> list:
        """Encode frames as one batch (a frame costs the encoder less in a batch than alone); → each
        frame's (patches, tokens), for `push`."""
        images = np.stack([preprocess_frame(f.image, self.engine.preprocessing) for f in frames])
        return self.encode_images(images)

    def encode_images(self, images: np.ndarray) -> list:
        """Preprocessed images [N, 3, S, S] as one batch → each frame's (patches, tokens)."""
        t0 = time.perf_counter()
        patches, tokens = self.engine.encode_frames(images)
        self.encode_ms = 1000 * (time.perf_counter() - t0) / len(images)
        return list(zip(patches, tokens))

    def add(self, frame: Frame, encoded: tuple | None = None) -> bool:
        """Add a frame (encoded here, or given as `encode` made it); → whether a decision is due."""
        if (
            frame.segment != self.segment
        ):  # a new clip: nothing of the old one belongs in the window
            with self.lock:
                self.ring.reset()
            self.since_decision, self.segment = 0, frame.segment
        if encoded is None:
            encoded = self._add(frame)
        with self.lock:
            self.ring.push(*encoded)
        self.frame_latency_ms = 1000 * (time.monotonic() - frame.timestamp)
        self.since_decision += 1
        if self.ring.count < self.min_frames or self.since_decision < self.cfg.stride:
            return False
        self.since_decision = 0
        return True

    def job(self, frame: Frame) -> HeadJob:
        """A copy of what the decision on the window ending at `frame` needs."""
        with self.lock:
            slots = self.ring.slots(self.num_frames)
            return HeadJob(
                frame,
                slots,
                self.ring.serials[slots].copy(),
                self.ring.patches[slots].copy(),
                self.ring.tokens[slots].copy(),
            )

    def end_job(self, frame: Frame | None) -> HeadJob | None:
        """The job of a last decision on what is buffered now (at the end of a clip or stream), if
        none was just made."""
        if frame is None or self.since_decision == 0 or self.ring.count < self.min_frames:
            return None
        self.since_decision = 0
        return self.job(frame)

    def push(self, frame: Frame, encoded: tuple | None = None) -> Decision | None:
        """Add a frame; → a decision when one is due (made here, in the caller's thread)."""
        return self.decide(self.job(frame)) if self.add(frame, encoded) else None

    def flush(self, frame: Frame | None) -> Decision | None:
        """A decision on what is buffered now (at the end of a clip or stream), if none was just made."""
        job = self.end_job(frame)
        return None if job is None else self.decide(job)

    def _add(self, frame: Frame) -> tuple:
        """One frame encoded alone → its (patches, tokens)."""
        return self.encode([frame])[0]

    def plan(self, job: HeadJob, ids: np.ndarray) -> dict:
        """Which of a job's frames have per-frame outputs cached under the top-K `ids` (and
        those outputs), and which must be computed: each stale frame once (a short window may
        sample a frame twice), at its first position `at`."""
        with self.lock:
            cached = self.ring.lookup(job.slots, job.serials, ids)
            responses = self.ring.responses[job.slots] if cached.any() else None
            attention = self.ring.attention[job.slots] if cached.any() else None
        slots, at = np.unique(job.slots, return_index=True)
        stale = ~cached[at]
        return {"ids": ids, "cached": cached, "responses": responses, "attention": attention,
                "stale": slots[stale], "at": at[stale]}  # fmt: skip

    def fill(self, job: HeadJob, plan: dict, computed: dict) -> tuple:
        """The job's T responses and attention maps: cached ones, and the `computed` ones of its
        stale frames (cached in turn); → (responses, attention)."""
        responses, attention, stale = plan["responses"], plan["attention"], plan["stale"]
        if len(stale):
            if responses is None:  # nothing cached: every position is filled below
                responses, attention = (
                    np.empty((len(job.slots), *computed[k].shape[1:]), computed[k].dtype)
                    for k in ("responses", "attention")
                )
            fresh = ~plan["cached"]
            rows = np.searchsorted(stale, job.slots[fresh])
            responses[fresh] = computed["responses"][rows]
            attention[fresh] = computed["attention"][rows]
            with self.lock:
                self.ring.store(
                    stale, job.serials[plan["at"]], computed["responses"],
                    computed["attention"], plan["ids"],
                )  # fmt: skip
        self.frames_computed += len(stale)
        return responses, attention

    def _head(self, job: HeadJob) -> dict:
        """The clip head on the T sampled frames (see run_heads)."""
        return run_heads([(self, job)])[0]

    def decide(self, job: HeadJob) -> Decision:
        """The decision on a job: the head, then smoothing over the decisions of the same clip."""
        t0 = time.perf_counter()
        out = self._head(job)
        return self.decision(job, out, 1000 * (time.perf_counter() - t0))

    def decision(self, job: HeadJob, out: dict, head_ms: float) -> Decision:
        """The head's outputs for a job → the smoothed decision."""
        frame = job.frame
        if frame.segment != self.smoothed_segment:
            self.smoother.reset()
            self.smoothed_segment = frame.segment
        probs = softmax(out["logits"][0].astype(np.float64))
        label, changed = self.smoother.update(probs)
        smoothed = self.smoother.probs
        order = np.argsort(-smoothed)[: self.cfg.topk]
        return Decision(
            frame=frame.index,
            timestamp=frame.timestamp,
            label=label,
            score=float(smoothed[label]),
            changed=changed,
            probs=smoothed,
            topk=[(int(i), float(smoothed[i])) for i in order],
            saliency=out["saliency"][0],
            attention=out["attention"][0, -1],
            segment=frame.segment,
            truth=frame.label,
            head_ms=head_ms,
            latency_ms=1000 * (time.monotonic() - frame.timestamp),
        )


# Frames one call of the per-frame head stage takes at most: the TensorRT engines' profile;
# larger batches run in parts.
MAX_FRAMES_PER_CALL = BATCH_PROFILE["frame_head"][2]


def decide_batch(pairs: list) -> list[Decision]:
    """[(classifier, job)] → their decisions, the heads run as one batch (run_heads)."""
    if len(pairs) == 1:  # the classifier's own head (a subclass may replace it)
        clf, job = pairs[0]
        return [clf.decide(job)]
    t0 = time.perf_counter()
    outs = run_heads(pairs)
    head_ms = 1000 * (time.perf_counter() - t0)
    return [clf.decision(job, out, head_ms) for (clf, job), out in zip(pairs, outs)]


def run_heads(pairs: list) -> list[dict]:
    """The clip heads of several windows (each a classifier with its own cache, and a job of the
    same engine), doing each frame's work once: the per-clip top-K of all of them as one batch;
    then the per-frame stage for the frames new to a sample or cached under other top-K ids, of
    all of them as one batch; then the per-clip read-out as one batch. Each output is the whole
    head's on its T frames."""
    engine = pairs[0][0].engine
    top = engine.head_topk(np.stack([job.tokens for _, job in pairs]))
    plans = [clf.plan(job, top["topk_ids"][b]) for b, (clf, job) in enumerate(pairs)]
    patches = [job.patches[plan["at"]] for (_, job), plan in zip(pairs, plans)]
    s_topk = [
        np.repeat(top["s_topk"][b : b + 1], len(p["at"]), axis=0) for b, p in enumerate(plans)
    ]
    computed = per_frame_stage(engine, np.concatenate(patches), np.concatenate(s_topk))
    start, responses, attention = 0, [], []
    for (clf, job), plan in zip(pairs, plans):
        n = len(plan["at"])
        part = {k: v[start : start + n] for k, v in computed.items()}
        start += n
        r, a = clf.fill(job, plan, part)
        responses.append(r)
        attention.append(a)
    out = engine.head_readout(top["x_cls"], np.stack(responses), top["s_topk"])
    return [
        {
            "logits": out["logits"][b : b + 1],
            "saliency": out["saliency"][b : b + 1],
            "topk_ids": top["topk_ids"][b : b + 1],
            "attention": attention[b][None],
        }
        for b in range(len(pairs))
    ]


def per_frame_stage(engine, patches: np.ndarray, s_topk: np.ndarray) -> dict:
    """The per-frame head stage on N frames, in calls of MAX_FRAMES_PER_CALL at most."""
    if not len(patches):
        return {"responses": patches[:0], "attention": patches[:0]}
    parts = [
        engine.head_frames(
            np.ascontiguousarray(patches[i : i + MAX_FRAMES_PER_CALL]),
            np.ascontiguousarray(s_topk[i : i + MAX_FRAMES_PER_CALL]),
        )
        for i in range(0, len(patches), MAX_FRAMES_PER_CALL)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("responses", "attention")}
