"""The model that runs an engine dir (art_edge.runtime.engine_dir: the files and their manifest).

engine = ARTEngine.load("engines/tiny")          # checks every file's sha256 first
with engine:
    patches, tokens = engine.encode_frames(images)    # [N, 3, S, S] float32
    out = engine.run_head(patches[None], tokens[None])  # one clip of T frames
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from art_edge.errors import UserError
from art_edge.preprocess import Preprocessing
from art_edge.runtime.backends.onnxruntime import OnnxRuntimeRunner
from art_edge.runtime.backends.tensorrt import TensorRTRunner
from art_edge.runtime.engine_dir import GRAPHS, read_manifest


def softmax(logits: np.ndarray) -> np.ndarray:
    """One clip's logits → its class probabilities."""
    e = np.exp(logits - logits.max())
    return e / e.sum()


def available_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class PendingEncode:
    """An encoder batch in flight (its parts' futures, each giving its outputs and its end time),
    or done."""

    def __init__(self, started: float, parts: list | None = None, done: tuple | None = None):
        self.started, self.parts, self.done = started, parts, done
        self.finished = time.perf_counter() if done is not None else None

    @property
    def asynchronous(self) -> bool:
        return self.parts is not None

    def result(self) -> tuple:
        if self.done is None:
            outs = [f.result() for f in self.parts]
            self.finished = max(end for _, end in outs)
            self.done = tuple(np.concatenate(x) for x in zip(*(out for out, _ in outs)))
        return self.done

    @property
    def seconds(self) -> float:
        """From the submission to the last part's end (its wait behind an earlier batch too)."""
        self.result()
        return self.finished - self.started


# The clip head's inference threads when it runs on a thread of its own beside the encoder: the
# head's graphs are small, and a second thread of theirs takes a core from the encoder rather than
# speeding them up (art-edge-s INT8 on 2 cores: 0.85 → 0.89 of the encoder-only bound, docs/benchmarks.md).
HEAD_THREADS_THREADED = 1


def default_head_threads(threads: int | None, threaded: bool = True) -> int | None:
    """The head's threads: HEAD_THREADS_THREADED beside the encoder, `threads` in one thread."""
    return HEAD_THREADS_THREADED if threaded else threads


def default_encoder_workers(
    cameras: int, threads: int | None, backend: str = "onnxruntime", threaded: bool = True
) -> int:
    """One for one camera: a live frame is encoded alone, and all threads on it is the shortest
    wait. With several cameras, frames come in batches and throughput counts: a worker per camera,
    up to one per core (art-edge-s INT8 on 2 cores: 2 single-threaded workers encode ~1.3× the
    frames a second of one worker on 2 threads, docs/benchmarks.md)."""
    if cameras <= 1 or backend != "onnxruntime" or not threaded:
        return 1
    return max(1, min(cameras, threads or available_cores()))


class ARTEngine:
    """The graphs of an engine dir behind runners: the frame encoder and the three stages of the
    clip head."""

    encoder_workers = 1  # from_graphs engines encode in one part
    _encoder_pool = None

    def __init__(
        self,
        engine_dir,
        manifest: dict,
        backend: str = "onnxruntime",
        threads: int | None = None,
        head_threads: int | None = None,
        encoder_workers: int = 1,
    ):
        self.engine_dir, self.manifest, self.backend = Path(engine_dir), manifest, backend
        self.classes: list[str] = manifest["classes"]
        self.preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
        self.num_frames = int(manifest["model"]["num_frames"])
        self.encoder_workers = encoder_workers
        self._encoder_pool = None  # the workers' threads, while active
        self.runners = self._runners(manifest, backend, threads, head_threads or threads)

    def _runners(self, manifest: dict, backend: str, threads, head_threads) -> dict:
        if backend == "onnxruntime":
            encoder_threads = threads
            if self.encoder_workers > 1:  # the threads shared out: each worker runs its own part
                encoder_threads = max(1, (threads or available_cores()) // self.encoder_workers)
            return {
                g: OnnxRuntimeRunner(
                    self.engine_dir / manifest["graphs"][g],
                    threads=encoder_threads if g == "frame_encoder" else head_threads,
                )
                for g in GRAPHS
            }
        if self.encoder_workers > 1:
            raise UserError(
                f"--encoder-workers {self.encoder_workers} is for the onnxruntime backend; "
                f"{backend} batches on the GPU: leave it at 1"
            )
        if backend == "tensorrt":
            engines = manifest.get("tensorrt", {}).get("engines")
            if not engines:
                raise UserError(
                    f"{self.engine_dir} holds no TensorRT engines; build them on this device with "
                    "art-build-engine --backend tensorrt"
                )
            plugin = manifest["tensorrt"].get("plugin_library")
            return {g: TensorRTRunner(self.engine_dir / engines[g], plugin) for g in GRAPHS}
        raise UserError(f"unknown backend {backend!r}; use onnxruntime or tensorrt")

    @classmethod
    def load(
        cls,
        engine_dir,
        backend: str = "onnxruntime",
        threads: int | None = None,
        head_threads: int | None = None,
        encoder_workers: int = 1,
    ) -> ARTEngine:
        """`head_threads`: the clip head's inference threads (default: `threads`); on a small
        CPU the threaded pipeline runs the head beside the encoder, so fewer can pay.
        `encoder_workers`: parts each encoder batch is split into, encoded side by side on
        `threads / encoder_workers` threads each (onnxruntime only). A small network keeps
        several single-threaded runs busier than one run on several threads: with several
        cameras, whose frames come in batches, that is more frames a second (docs/benchmarks.md)."""
        return cls(
            engine_dir, read_manifest(engine_dir), backend, threads, head_threads, encoder_workers
        )

    @classmethod
    def from_graphs(cls, graphs: dict, threads: int | None = None) -> ARTEngine:
        """Runners over ONNX files outside an engine dir (some or all of the graphs), for INT8
        calibration and the gate, which run graphs as they are being built."""
        engine = cls.__new__(cls)
        engine.engine_dir, engine.manifest, engine.classes = None, {}, []
        engine.runners = {g: OnnxRuntimeRunner(path, threads=threads) for g, path in graphs.items()}
        return engine

    def activate(self):
        for runner in self.runners.values():
            runner.activate()
        if self.encoder_workers > 1 and self._encoder_pool is None:
            self._encoder_pool = ThreadPoolExecutor(
                self.encoder_workers, thread_name_prefix="art-edge:encoder"
            )
        return self

    def deactivate(self):
        if self._encoder_pool is not None:
            self._encoder_pool.shutdown()
            self._encoder_pool = None
        for runner in self.runners.values():
            runner.deactivate()

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def encode_frames(self, images: np.ndarray):
        """[N, 3, S, S] float32 → patches [N, L, D], frame tokens [N, D]."""
        return self.submit_encode(images).result()

    def submit_encode(self, images: np.ndarray) -> PendingEncode:
        """Start encoding `images`; `.result()` gives encode_frames' result. With several encoder
        workers the batch runs in as many parts (of consecutive frames) side by side and this
        returns at once, so the caller can hand on the previous batch meanwhile; with one, it
        encodes before returning."""
        started, parts = time.perf_counter(), min(self.encoder_workers, len(images))
        if self._encoder_pool is None or parts < 2:
            return PendingEncode(started, done=self._encode(images))
        bounds = np.linspace(0, len(images), parts + 1).astype(int)
        return PendingEncode(
            started,
            [
                self._encoder_pool.submit(self._timed_encode, images[a:b])
                for a, b in zip(bounds, bounds[1:])
            ],
        )

    def _timed_encode(self, images: np.ndarray):
        return self._encode(images), time.perf_counter()

    def _encode(self, images: np.ndarray):
        out = self.runners["frame_encoder"].infer({"images": images})
        return out["patches"], out["frame_tokens"]

    def head_topk(self, tokens: np.ndarray) -> dict:
        """frame tokens [B, T, D] → x_cls, topk_ids [B, K], s_topk [B, K, D]."""
        return self.runners["clip_topk"].infer({"frame_tokens": tokens})

    def head_frames(self, patches: np.ndarray, s_topk: np.ndarray) -> dict:
        """patches [N, L, D], each frame's top-K semantics [N, K, D] → responses, attention."""
        return self.runners["frame_head"].infer({"patches": patches, "s_topk": s_topk})

    def head_readout(self, x_cls, responses, s_topk) -> dict:
        """x_cls [B, D], responses [B, T, K, D], s_topk [B, K, D] → logits, saliency."""
        return self.runners["clip_readout"].infer(
            {"x_cls": x_cls, "responses": responses, "s_topk": s_topk}
        )

    def run_head(self, patches: np.ndarray, tokens: np.ndarray) -> dict:
        """patches [B, T, L, D], tokens [B, T, D] → logits, attention [B, T, K, L], saliency,
        topk_ids: the three stages over every frame of every clip."""
        b, t = patches.shape[:2]
        top = self.head_topk(np.ascontiguousarray(tokens))
        s = top["s_topk"]
        per_frame = np.ascontiguousarray(
            np.broadcast_to(s[:, None], (b, t, *s.shape[1:])).reshape(b * t, *s.shape[1:])
        )
        frames = self.head_frames(
            np.ascontiguousarray(patches.reshape(b * t, *patches.shape[2:])), per_frame
        )
        responses = frames["responses"].reshape(b, t, *frames["responses"].shape[1:])
        out = self.head_readout(top["x_cls"], responses, s)
        return {
            "logits": out["logits"],
            "saliency": out["saliency"],
            "topk_ids": top["topk_ids"],
            "attention": frames["attention"].reshape(b, t, *frames["attention"].shape[1:]),
        }

    def classify_clips(self, clips: np.ndarray) -> dict:
        """Whole clips [B, T, 3, S, S] → head outputs (the frame encoder runs on all B·T frames)."""
        b, t = clips.shape[:2]
        patches, tokens = self.encode_frames(
            np.ascontiguousarray(clips.reshape(b * t, *clips.shape[2:]))
        )
        return self.run_head(patches.reshape(b, t, *patches.shape[1:]), tokens.reshape(b, t, -1))
