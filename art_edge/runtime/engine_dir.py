"""The engine-dir contract, in one place: what art-build-engine writes and ARTEngine.load reads.

    manifest = read_manifest("engines/tiny")          # checks every listed file's sha256 first
    write_manifest(work_dir, meta, "int8", "onnxruntime", graphs, extra)   # once the files are in

An engine dir holds the four ONNX graphs (GRAPH_IO: each one's input and output names), their
INT8 versions and TensorRT engines when built, and `manifest.json` (FORMAT): model config,
classes, preprocessing, precision, backend, and the sha256 and size of every file. TensorRT
engines are built for the batch range BATCH_PROFILE, and the runtime never sends a larger batch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from art_edge import __version__
from art_edge.errors import UserError, read_json
from art_edge.files import atomic_write_text, sha256_file

MANIFEST = "manifest.json"
FORMAT = "art-engine/2"  # 2: the clip head in three graphs (clip_topk, frame_head, clip_readout)
# Each graph's input and output names, in order.
GRAPH_IO = {
    "frame_encoder": (["images"], ["patches", "frame_tokens"]),
    "clip_topk": (["frame_tokens"], ["x_cls", "topk_ids", "s_topk"]),
    "frame_head": (["patches", "s_topk"], ["responses", "attention"]),
    "clip_readout": (["x_cls", "responses", "s_topk"], ["logits", "saliency"]),
}
GRAPHS = tuple(GRAPH_IO)
# min, opt, max of dim 0 of each graph's TensorRT optimization profile: frames for the per-frame
# graphs, clips for the per-clip ones. The streaming head never sends more in one call.
BATCH_PROFILE = {
    "frame_encoder": (1, 8, 64),
    "frame_head": (1, 8, 64),
    "clip_topk": (1, 1, 8),
    "clip_readout": (1, 1, 8),
}


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
            f"{path} has format {manifest.get('format')!r}, this toolkit reads {FORMAT!r}: rebuild "
            "the engine dir with art-build-engine (--ckpt on the training host, or --from)"
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


def write_manifest(
    engine_dir: Path,
    meta: dict,
    precision: str,
    backend: str,
    graphs: dict,
    extra: dict | None = None,
) -> dict:
    """The manifest of the files now in `engine_dir` (every one's sha256 and size); → it."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(engine_dir.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "format": FORMAT,
        "toolkit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": meta["model"],
        "classes": meta["classes"],
        "preprocessing": meta["preprocessing"],
        "precision": precision,
        "backend": backend,
        "graphs": graphs,
        "files": files,
        **(extra or {}),
    }
    atomic_write_text(engine_dir / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
