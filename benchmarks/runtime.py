"""Per-clip latency and throughput: ONNX Runtime FP32 against PyTorch eager FP32, side by side.

    python benchmarks/runtime.py [--configs art-tiny art-edge-s] [--threads 2] [--out benchmarks/results/runtime.json]

Both run the same weights (random: latency does not depend on training) on the same clips, in
one process, with the same thread count, in alternating blocks (ORT, PyTorch, ORT, PyTorch):
alternating call by call makes each runtime's spinning worker threads slow the other down on 2
cores. Reports the median over all repeats.

Then the ceiling: ONNX Runtime's profile gives the share of its time spent in weight products
(MatMul/Gemm/Conv), and both runtimes' matrix kernels are timed side by side at the frame
encoder's own product shapes. If ONNX Runtime's products already take more than 1/1.5 of
PyTorch's whole time, no amount of fusion around them reaches the 1.5× target.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchlib import RESULTS, alternating, medians, write_result
from ort_profile import matmul_graph, op_time_shares, session

# ONNX Runtime over PyTorch eager, FP32 on the CPU: the project's target for art-edge-s
TARGET = 1.5


def bench_config(name: str, threads: int, batch: int, repeats: int) -> dict:
    from art_edge.runtime.engine import ARTEngine
    from art_edge.runtime.engine_dir import write_manifest
    from art_train.export import export_onnx
    from art_train.model import create_model_and_transforms

    classes = [f"class_{i}" for i in range(10)]
    torch.manual_seed(0)
    model, prep = create_model_and_transforms(name, class_names=classes)
    model, cfg = model.eval(), model.cfg
    meta = {"model": cfg.to_dict(), "classes": classes, "preprocessing": prep.to_dict()}
    clips = (
        np.random.default_rng(0)
        .standard_normal((batch, cfg.num_frames, 3, cfg.image_size, cfg.image_size))
        .astype(np.float32)
    )
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {k: p.name for k, p in export_onnx(model, meta, tmp).items()}
        write_manifest(Path(tmp), meta, "fp32", "onnxruntime", graphs)
        with ARTEngine.load(tmp, threads=threads) as engine:
            ort_logits = engine.classify_clips(clips)["logits"]
            with torch.no_grad():
                torch_logits = model(torch.from_numpy(clips))["logits"].numpy()
            with torch.no_grad():  # two blocks each, so drift on a shared machine hits both alike
                med = medians(
                    alternating(
                        {
                            "ort": lambda: engine.classify_clips(clips),
                            "torch": lambda: model(torch.from_numpy(clips)),
                        },
                        repeats,
                        blocks=2,
                    )
                )
            ceiling = products_ceiling(Path(tmp), graphs, clips[0], engine, threads)
    ort_s, torch_s = med["ort"], med["torch"]
    # If every op but the weight products took no time, ONNX Runtime's clip would take share × its time.
    ceiling["bound_if_only_products_took_time"] = torch_s / (
        ceiling["weight_product_share"] * ort_s
    )
    return {
        "config": name,
        "batch": batch,
        "frames": cfg.num_frames,
        "image_size": cfg.image_size,
        "threads": threads,
        "repeats": repeats,
        "pytorch_eager_ms_per_clip": 1000 * torch_s / batch,
        "onnxruntime_ms_per_clip": 1000 * ort_s / batch,
        "pytorch_clips_per_s": batch / torch_s,
        "onnxruntime_clips_per_s": batch / ort_s,
        "speedup_onnxruntime_over_pytorch": torch_s / ort_s,
        "max_abs_logit_diff": float(np.abs(ort_logits - torch_logits).max()),
        "ceiling": ceiling,
    }


def products_ceiling(
    engine_dir: Path, graphs: dict, clip: np.ndarray, engine, threads: int
) -> dict:
    """Share of ONNX Runtime's time in weight products over both graphs (weighted by each graph's
    profiled run time), and ONNX Runtime's against PyTorch's kernel at the encoder's product shapes."""
    patches, tokens = engine.encode_frames(clip)
    runs = {
        "frame_encoder": op_time_shares(
            engine_dir / graphs["frame_encoder"], {"images": clip}, threads
        ),
        "clip_head": op_time_shares(
            engine_dir / graphs["clip_head"],
            {"patches": patches[None], "frame_tokens": tokens[None]},
            threads,
        ),
    }
    total_ms = sum(r["profiled_run_ms"] for r in runs.values())
    share = (
        sum(r["profiled_run_ms"] * r["shares"].get("weight_products", 0.0) for r in runs.values())
        / total_ms
    )
    kernels = [
        matmul_side_by_side(m, k, n, count, threads)
        for m, k, n, count in runs["frame_encoder"]["product_shapes"]
    ]
    ort_us = sum(x["count"] * x["onnxruntime_us"] for x in kernels)
    torch_us = sum(x["count"] * x["pytorch_us"] for x in kernels)
    return {
        "time_shares": {k: r["shares"] for k, r in runs.items()},
        "weight_product_share": share,
        "kernel_speedup_onnxruntime_over_pytorch": torch_us / ort_us if ort_us else None,
        "kernel_shapes": kernels,
        "target": TARGET,
    }


def matmul_side_by_side(
    m: int, k: int, n: int, count: int, threads: int, repeats: int = 30
) -> dict:
    """x [m, k] @ w [k, n] in ONNX Runtime's MatMul and torch.matmul, alternating blocks."""
    rng = np.random.default_rng(0)
    w, x = (
        rng.standard_normal((k, n)).astype(np.float32),
        rng.standard_normal((m, k)).astype(np.float32),
    )
    sess, tw, tx = (
        session(matmul_graph(w, m, int8=False), threads),
        torch.from_numpy(w),
        torch.from_numpy(x),
    )
    with torch.no_grad():
        med = medians(
            alternating(
                {"ort": lambda: sess.run(None, {"x": x}), "torch": lambda: torch.matmul(tx, tw)},
                repeats,
                blocks=3,
            ),
            scale=1e6,
        )
    ort_us, torch_us = med["ort"], med["torch"]
    return {
        "m": m,
        "k": k,
        "n": n,
        "count": count,
        "onnxruntime_us": ort_us,
        "pytorch_us": torch_us,
        "onnxruntime_gflops": 2 * m * k * n / ort_us / 1e3,
        "pytorch_gflops": 2 * m * k * n / torch_us / 1e3,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["art-tiny", "art-edge-s"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(RESULTS / "runtime.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = [bench_config(name, a.threads, a.batch, a.repeats) for name in a.configs]
    write_result(a.out, {"benchmark": "runtime", "torch": torch.__version__, "results": results})
    print(
        f"{'config':<12} {'batch':>5} {'pytorch ms/clip':>16} {'onnxruntime ms/clip':>20} {'speed-up':>9}"
    )
    for r in results:
        print(
            f"{r['config']:<12} {r['batch']:>5} {r['pytorch_eager_ms_per_clip']:>16.1f} "
            f"{r['onnxruntime_ms_per_clip']:>20.1f} {r['speedup_onnxruntime_over_pytorch']:>8.2f}x"
        )
    for r in results:
        c = r["ceiling"]
        print(
            f"{r['config']}: weight products {100 * c['weight_product_share']:.0f} % of ONNX Runtime's time; its "
            f"kernels {c['kernel_speedup_onnxruntime_over_pytorch']:.2f}× PyTorch's at the encoder's shapes; "
            f"with every other op free it would be {c['bound_if_only_products_took_time']:.2f}× PyTorch "
            f"(target {TARGET}×)"
        )


if __name__ == "__main__":
    main()
