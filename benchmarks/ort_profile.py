"""Where an ONNX Runtime graph spends its time, and how fast this CPU's matrix kernels can go.

Used by benchmarks/runtime.py and benchmarks/int8.py to turn a missed speed target into a
measured ceiling: if a graph's weight products (MatMul/Gemm/Conv with a weight) already take most
of its time, and the kernels that run them are as fast as they get on this CPU, no graph-level
change reaches a target above the bound that Amdahl's law gives.

    shares = op_time_shares("frame_encoder.onnx", {"images": x}, threads=2)
    ratio = int8_gemm_ratio(shares["product_shapes"], threads=2)
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from art_edge.runtime.backends.onnxruntime import create_session

from benchlib import alternating, medians

# ORT's fused integer kernels that the QDQ products of calibration/ turn into on the CPU.
INTEGER_PRODUCTS = {
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QLinearMatMul",
    "QGemm",
    "QLinearConv",
    "ConvInteger",
    "DynamicQuantizeMatMul",
}
FLOAT_PRODUCTS = {"MatMul", "FusedMatMul", "Gemm", "Conv", "FusedConv", "FusedGemm"}
QUANTIZE = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def session(path, threads: int, profile_dir: str | None = None):
    """A CPU session with the options the runner uses."""
    return create_session(path, threads, profile_dir=profile_dir)


def _category(op: str, inputs: list) -> str:
    """Weight product, activation×activation product, (de)quantization or other. The profile lists
    only the inputs that are not initializers, so a MatMul with one listed input has a weight."""
    if op in INTEGER_PRODUCTS:
        return "integer_products"
    if op in QUANTIZE:
        return "quantize"
    if op in ("Conv", "FusedConv"):
        return "weight_products"
    if op in FLOAT_PRODUCTS:
        matrices = [s for s in inputs if len(s) >= 2]
        return "weight_products" if len(matrices) < 2 else "activation_products"
    return "other"


def op_time_shares(path, feeds: dict, threads: int, runs: int = 5) -> dict:
    """Profile `runs` runs (after 2 warm-ups): each category's share of kernel time, and the
    (M, K, N) of every float weight MatMul/Gemm, with how often each occurs per run."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, threads, tmp)
        for _ in range(2 + runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = [e for e in events if e.get("name") == "model_run"][2:]
    time_us, shapes = Counter(), Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        args = e["args"]
        inputs = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
        category = _category(args["op_name"], inputs)
        time_us[category] += e["dur"]
        if category == "weight_products" and args["op_name"] != "Conv" and inputs:
            out = next(iter(args["output_type_shape"][0].values()))
            shapes[(int(np.prod(inputs[0][:-1])), inputs[0][-1], out[-1])] += 1
    total = sum(time_us.values())
    return {
        "shares": {k: v / total for k, v in sorted(time_us.items())},
        "profiled_run_ms": statistics.median(e["dur"] for e in model_runs) / 1000
        if model_runs
        else None,
        "product_shapes": [[*k, v // (2 + runs)] for k, v in sorted(shapes.items())],
    }  # per run: warm-ups are profiled too


def matmul_graph(w: np.ndarray, m: int, int8: bool):
    """x [m, k] @ w: plain float, or as calibration/ quantizes it (Q/DQ, symmetric, per-channel
    7-bit weights), which ONNX Runtime fuses into its integer kernel."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = w.shape
    if int8:
        scale = np.abs(w).max(0) / 63
        inits = [
            numpy_helper.from_array(np.round(w / scale).astype(np.int8), "wq"),
            numpy_helper.from_array(scale.astype(np.float32), "ws"),
            numpy_helper.from_array(np.zeros(n, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
            numpy_helper.from_array(np.array(0, np.int8), "xz"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
            helper.make_node("MatMul", ["xd", "wd"], ["y"]),
        ]
    else:
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def int8_gemm_ratio(product_shapes, threads: int, repeats: int = 30, blocks: int = 3) -> dict:
    """FP32 against INT8 matrix kernels at the graph's own product shapes, side by side: how much
    faster the integer products alone can make this graph on this CPU (time-weighted by count)."""
    rng = np.random.default_rng(0)
    fp32_us = int8_us = 0.0
    per_shape = []
    for m, k, n, count in product_shapes:
        w = (0.05 * rng.standard_normal((k, n))).astype(np.float32)
        feeds = {"x": rng.standard_normal((m, k)).astype(np.float32)}
        sessions = {
            "fp32": session(matmul_graph(w, m, False), threads),
            "int8": session(matmul_graph(w, m, True), threads),
        }
        runs = {key: (lambda s=sess, f=feeds: s.run(None, f)) for key, sess in sessions.items()}
        med = medians(alternating(runs, repeats, blocks), scale=1e6)
        fp32_us, int8_us = fp32_us + count * med["fp32"], int8_us + count * med["int8"]
        per_shape.append(
            {
                "m": m,
                "k": k,
                "n": n,
                "count": count,
                "fp32_us": med["fp32"],
                "int8_us": med["int8"],
                "fp32_gflops": 2 * m * k * n / med["fp32"] / 1e3,
                "speedup": med["fp32"] / med["int8"],
            }
        )
    return {"speedup": fp32_us / int8_us if int8_us else None, "shapes": per_shape}


def amdahl(share: float, speedup: float) -> float:
    """Whole-graph speed-up when a `share` of the time gets `speedup` faster and the rest stays."""
    rest = (1.0 - share) + share / speedup
    return 1.0 / rest if rest > 0 else float("inf")
