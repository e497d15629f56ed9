"""Engine dirs (written by art-build-engine) and the model that runs one.

engine = ARTEngine.load("engines/tiny")          # checks every file's sha256 first
with engine:
    patches, tokens = engine.encode_frames(images)    # [N, 3, S, S] float32
    out = engine.run_head(patches[None], tokens[None])  # one clip of T frames
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from art_edge.errors import UserError, read_json
from art_edge.preprocess import Preprocessing

MANIFEST = "manifest.json"
FORMAT = "art-engine/1"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(engine_dir) -> dict:
    """The manifest of an engine dir, after checking that every listed file is there, unchanged."""
    engine_dir = Path(engine_dir)
    if not engine_dir.is_dir():
        raise UserError(
            f"engine dir not found: {engine_dir} (build one with art-build-engine --ckpt RUN_DIR --out DIR)"
        )
    path = engine_dir / MANIFEST
    manifest = read_json(
        path,
        f"{engine_dir} has no {MANIFEST}: not an engine dir written by art-build-engine",
        "rebuild the engine dir",
    )
    if manifest.get("format") != FORMAT:
        raise UserError(
            f"{path} has format {manifest.get('format')!r}, this toolkit reads {FORMAT!r}; rebuild it"
        )
    for name, entry in manifest["files"].items():
        f = engine_dir / name
        if not f.is_file():
            raise UserError(
                f"engine dir {engine_dir} is missing {name}; rebuild it with art-build-engine"
            )
        if sha256_file(f) != entry["sha256"]:
            raise UserError(
                f"{f} does not match the sha256 in {MANIFEST}: it was edited or damaged; "
                "rebuild the engine dir with art-build-engine"
            )
    return manifest


class ARTEngine:
    """The two graphs of an engine dir behind runners: frame encoder and clip head."""

    def __init__(
        self, engine_dir, manifest: dict, backend: str = "onnxruntime", threads: int | None = None
    ):
        self.engine_dir, self.manifest = Path(engine_dir), manifest
        self.classes: list[str] = manifest["classes"]
        self.preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
        self.num_frames = int(manifest["model"]["num_frames"])
        graphs = manifest["graphs"]
        if backend == "onnxruntime":
            from art_edge.backends.onnxruntime import OnnxRuntimeRunner

            self.frame_runner = OnnxRuntimeRunner(
                self.engine_dir / graphs["frame_encoder"], threads=threads
            )
            self.head_runner = OnnxRuntimeRunner(
                self.engine_dir / graphs["clip_head"], threads=threads
            )
        elif backend == "tensorrt":
            from art_edge.backends.tensorrt import TensorRTRunner

            engines = manifest.get("tensorrt", {}).get("engines")
            if not engines:
                raise UserError(
                    f"{engine_dir} holds no TensorRT engines; build them on this device with "
                    "art-build-engine --backend tensorrt"
                )
            plugin = manifest["tensorrt"].get("plugin_library")
            self.frame_runner = TensorRTRunner(self.engine_dir / engines["frame_encoder"], plugin)
            self.head_runner = TensorRTRunner(self.engine_dir / engines["clip_head"], plugin)
        else:
            raise UserError(f"unknown backend {backend!r}; use onnxruntime or tensorrt")

    @classmethod
    def load(
        cls, engine_dir, backend: str = "onnxruntime", threads: int | None = None
    ) -> ARTEngine:
        return cls(engine_dir, read_manifest(engine_dir), backend, threads)

    def activate(self):
        self.frame_runner.activate()
        self.head_runner.activate()
        return self

    def deactivate(self):
        self.frame_runner.deactivate()
        self.head_runner.deactivate()

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def encode_frames(self, images: np.ndarray):
        """[N, 3, S, S] float32 → patches [N, L, D], frame tokens [N, D]."""
        out = self.frame_runner.infer({"images": images})
        return out["patches"], out["frame_tokens"]

    def run_head(self, patches: np.ndarray, tokens: np.ndarray) -> dict:
        """patches [B, T, L, D], tokens [B, T, D] → logits, attention, saliency, topk_ids."""
        return self.head_runner.infer({"patches": patches, "frame_tokens": tokens})

    def classify_clips(self, clips: np.ndarray) -> dict:
        """Whole clips [B, T, 3, S, S] → head outputs (the frame encoder runs on all B·T frames)."""
        b, t = clips.shape[:2]
        patches, tokens = self.encode_frames(
            np.ascontiguousarray(clips.reshape(b * t, *clips.shape[2:]))
        )
        return self.run_head(patches.reshape(b, t, *patches.shape[1:]), tokens.reshape(b, t, -1))
