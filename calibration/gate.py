"""The accuracy gate: FP32 against INT8 on held-out clips, and where the quantization error comes from.

- top-1 agreement between the two pipelines, top-1 of each against the labels and the drop,
  per-class accuracy of each and the clips whose decision changed;
- per quantized node: the relative error of its output (INT8 graph against FP32 graph, same
  inputs), and the error it *adds* (output error minus the error already on its inputs), ranked,
  so the most sensitive nodes come first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as oh

from art_edge.runtime.backends.onnxruntime import create_session
from art_edge.runtime.engine import ARTEngine


@dataclass
class Pipeline:
    """The graphs of an engine (name → ONNX file), run on ONNX Runtime."""

    graphs: dict
    threads: int | None = None

    def engine(self) -> ARTEngine:
        return ARTEngine.from_graphs(self.graphs, self.threads)

    def encode(self, clips) -> tuple[np.ndarray, np.ndarray]:
        """list of [T, 3, S, S] → patches [N, T, L, D], tokens [N, T, D]."""
        with self.engine() as engine:
            outs = [engine.encode_frames(np.ascontiguousarray(c)) for c in clips]
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])

    def head(self, patches, tokens, batch: int = 8) -> np.ndarray:
        with self.engine() as engine:
            return np.concatenate(
                [
                    engine.run_head(patches[i : i + batch], tokens[i : i + batch])["logits"]
                    for i in range(0, len(patches), batch)
                ]
            )

    def logits(self, clips) -> np.ndarray:
        return self.head(*self.encode(clips))


def per_class_accuracy(preds, labels, num_classes: int) -> list[float | None]:
    return [
        float((preds[labels == c] == c).mean()) if (labels == c).any() else None
        for c in range(num_classes)
    ]


def compare_predictions(logits32, logits8, labels, classes: list[str], paths: list[str]) -> dict:
    p32, p8 = logits32.argmax(-1), logits8.argmax(-1)
    acc32, acc8 = float((p32 == labels).mean()), float((p8 == labels).mean())
    changed = np.flatnonzero(p32 != p8)
    return {
        "n": int(len(labels)),
        "top1_agreement": float((p32 == p8).mean()),
        "top1_fp32": acc32,
        "top1_int8": acc8,
        "top1_drop_points": 100.0 * (acc32 - acc8),
        "max_abs_logit_diff": float(np.abs(logits32 - logits8).max()),
        "per_class": [
            {"class": c, "top1_fp32": a, "top1_int8": b}
            for c, a, b in zip(
                classes,
                per_class_accuracy(p32, labels, len(classes)),
                per_class_accuracy(p8, labels, len(classes)),
            )
        ],
        "changed": [
            {
                "path": paths[i],
                "label": classes[labels[i]],
                "fp32": classes[p32[i]],
                "int8": classes[p8[i]],
            }
            for i in changed
        ],
    }


def measure_speed(fp32: Pipeline, int8: Pipeline, clip, repeats: int = 3, blocks: int = 2) -> dict:
    """FP32 against INT8 on this machine on one clip, in alternating blocks: the frame encoder,
    and the clip head (its three graphs): whether INT8 pays here depends on the CPU's integer
    kernels (on AVX2 without VNNI it can be slower)."""
    images = np.ascontiguousarray(clip)
    with fp32.engine() as e32, int8.engine() as e8:
        patches, tokens = e32.encode_frames(images)
        parts = {
            "frame_encoder": lambda e: e.encode_frames(images),
            "clip_head": lambda e: e.run_head(patches[None], tokens[None]),
        }
        speed = {}
        for graph, run in parts.items():
            times = {"fp32": [], "int8": []}
            for _ in range(blocks):
                for key, engine in (("fp32", e32), ("int8", e8)):
                    run(engine)  # warm-up of this block
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        run(engine)
                        times[key].append(1000 * (time.perf_counter() - t0))
            ms = {k: float(np.median(v)) for k, v in times.items()}
            speed[graph] = {
                "fp32_ms": ms["fp32"],
                "int8_ms": ms["int8"],
                "speedup": ms["fp32"] / ms["int8"],
            }
    return speed


# ----------------------------------------------------------------------------- per-node error


def _with_outputs(path, names: list[str]) -> bytes:
    """The model with extra float graph outputs (ONNX Runtime infers their shapes)."""
    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(
        oh.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n not in have
    )
    return model.SerializeToString()


def _tracked_tensors(fp32_path, quantized: list[str]):
    """For each quantized node: (its float activation inputs, its output), by tensor name; the
    same names exist in the Q/DQ graph, where the inputs feed the QuantizeLinear nodes."""
    model = onnx.load(str(fp32_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    return {
        name: ([i for i in nodes[name].input if i and i not in inits], nodes[name].output[0])
        for name in quantized
        if name in nodes
    }


def _run_with_outputs(model_bytes, feeds_list, names, threads):
    sess = create_session(
        model_bytes, threads, optimize=False
    )  # fused nodes would hide the tensors read here
    runs = [dict(zip(names, sess.run(names, feeds))) for feeds in feeds_list]
    return {n: np.concatenate([r[n].ravel() for r in runs]) for n in names}


def rel_error(a, b) -> float:
    """‖a − b‖ / ‖a‖: the error of b as an approximation of a."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))


def node_errors(
    fp32_path,
    int8_path,
    quantized: list[str],
    feeds_list: list[dict],
    graph: str,
    threads: int | None = None,
) -> list[dict]:
    """Relative output error and added error of every quantized node, worst added error first."""
    tracked = _tracked_tensors(fp32_path, quantized)
    names = sorted({t for ins, out in tracked.values() for t in (*ins, out)})
    ref = _run_with_outputs(_with_outputs(fp32_path, names), feeds_list, names, threads)
    got = _run_with_outputs(_with_outputs(int8_path, names), feeds_list, names, threads)
    rows = []
    for node, (ins, out) in tracked.items():
        out_err = rel_error(ref[out], got[out])
        in_err = max((rel_error(ref[i], got[i]) for i in ins), default=0.0)
        rows.append(
            {
                "graph": graph,
                "node": node,
                "output_rel_error": out_err,
                "input_rel_error": in_err,
                "added_rel_error": out_err - in_err,
            }
        )
    return sorted(rows, key=lambda r: -r["added_rel_error"])
