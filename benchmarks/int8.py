"""FP32 against INT8, each graph, ONNX Runtime on the CPU, side by side in one run.

    python benchmarks/int8.py [--configs art-tiny art-edge-s] [--threads 2] [--out benchmarks/results/int8.json]

Each config is exported with random weights (speed does not depend on training) and quantized
exactly as `art-build-engine --precision int8` does, calibrated on real synthetic clips through
the training preprocessing. Then, in alternating blocks (FP32, INT8, FP32, ...), the
frame encoder runs on one clip's T frames and the clip head on one clip. Reported: median ms,
speed-up over FP32, and the relative output error of each INT8 form.

Then the ceiling: ONNX Runtime's profile gives the share of the FP32 frame encoder's time spent in
weight products (the only ops INT8 makes faster), FP32 and INT8 matrix kernels are timed side by
side at that graph's own product shapes, and Amdahl's law gives the best whole-graph speed-up
INT8 can reach on this CPU even if quantization itself cost nothing — and the kernel speed-up the
target would need.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from calibration.gate import rel_error

from benchlib import RESULTS, alternating, medians, write_result
from ort_profile import amdahl, int8_gemm_ratio, op_time_shares, session

TARGET = 1.8  # the INT8 frame encoder's speed-up over FP32 that the project aims for on the CPU


def time_side_by_side(sessions: dict, feeds: dict, repeats: int, blocks: int = 3) -> dict:
    runs = {name: (lambda s=sess: s.run(None, feeds)) for name, sess in sessions.items()}
    return medians(alternating(runs, repeats, blocks))


def bench_config(name: str, threads: int, repeats: int, calib_clips: int, data: Path) -> dict:
    import torch

    from art_edge.cliplist import read_classes, read_list
    from art_train.export import export_onnx
    from art_train.model import create_model_and_transforms
    from calibration.build import quantize_engine_graphs
    from calibration.calib_set import decode_clips, pick_records
    from calibration.quantize import CalibrationCache, QuantSettings

    classes = read_classes(data / "classes.txt")
    torch.manual_seed(0)
    model, prep = create_model_and_transforms(name, class_names=classes)
    model, cfg = model.eval(), model.cfg
    meta = {"model": cfg.to_dict(), "classes": classes, "preprocessing": prep.to_dict()}
    records = pick_records(read_list(data / "train.csv", classes), calib_clips + 1)
    clips = decode_clips(records, prep, "clips")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_onnx(model, meta, work)
        t0 = time.time()
        quantize_engine_graphs(
            work,
            QuantSettings(),
            CalibrationCache(None),
            {},
            lambda: type(clips)(clips.clips[:-1], clips.labels[:-1], clips.paths[:-1]),
            threads,
        )
        quant_s = time.time() - t0
        result = {
            "config": name,
            "frames": cfg.num_frames,
            "image_size": cfg.image_size,
            "threads": threads,
            "quantize_seconds": round(quant_s, 1),
            "calibration_clips": calib_clips,
        }
        result.update(
            time_graphs(work, clips.clips[-1], threads, repeats)
        )  # a clip not used to calibrate
    return result


def time_graphs(work: Path, clip, threads: int, repeats: int) -> dict:
    """FP32 against INT8, each graph side by side: ms, speed-up, relative output error; and the
    frame encoder's ceiling."""
    sessions = {
        g: {
            k: session(work / f"{g}{s}.onnx", threads) for k, s in (("fp32", ""), ("int8", ".int8"))
        }
        for g in ("frame_encoder", "clip_head")
    }
    fe_feeds = {"images": clip}
    patches, tokens = sessions["frame_encoder"]["fp32"].run(None, fe_feeds)
    feeds = {
        "frame_encoder": fe_feeds,
        "clip_head": {"patches": patches[None], "frame_tokens": tokens[None]},
    }
    result = {}
    for graph, pair in sessions.items():
        ref = pair["fp32"].run(None, feeds[graph])
        med = time_side_by_side(pair, feeds[graph], repeats)
        result[graph] = {
            k: {
                "ms": 1000 * v,
                "speedup_over_fp32": med["fp32"] / v,
                "rel_error": max(
                    rel_error(a, b) for a, b in zip(ref, pair[k].run(None, feeds[graph]))
                ),
            }
            for k, v in med.items()
        }
    result["frame_encoder"]["ceiling"] = int8_ceiling(
        work / "frame_encoder.onnx", work / "frame_encoder.int8.onnx", fe_feeds, threads
    )
    return result


def int8_ceiling(fp32_path, int8_path, feeds, threads: int) -> dict:
    """The most INT8 can do for this graph here: Amdahl's law over its weight-product share."""
    fp32, int8 = (
        op_time_shares(fp32_path, feeds, threads),
        op_time_shares(int8_path, feeds, threads),
    )
    share = fp32["shares"].get("weight_products", 0.0)
    kernels = int8_gemm_ratio(fp32["product_shapes"], threads)
    needed = share / (1 / TARGET - (1 - share)) if 1 / TARGET > 1 - share else None
    return {
        "fp32_time_shares": fp32["shares"],
        "int8_time_shares": int8["shares"],
        "weight_product_share": share,
        "int8_kernel_speedup": kernels["speedup"],
        "kernel_shapes": kernels["shapes"],
        "bound_free_quantization": amdahl(share, kernels["speedup"]),
        "bound_infinitely_fast_products": amdahl(share, float("inf")),
        "target": TARGET,
        "kernel_speedup_needed_for_target": needed,
    }


def main(argv=None):
    from art_edge.synthetic import make_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["art-tiny", "art-edge-s"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--calib-clips", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS / "int8.json"))
    a = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(
            Path(tmp) / "data", per_class=4, val_per_class=1, seed=7, progress=False
        )
        for name in a.configs:
            r = bench_config(name, a.threads, a.repeats, a.calib_clips, data)
            results.append(r)
            for graph in ("frame_encoder", "clip_head"):
                row = r[graph]
                print(
                    f"{name:<11} {graph:<13} FP32 {row['fp32']['ms']:7.1f} ms   INT8 {row['int8']['ms']:7.1f} ms "
                    f"({row['int8']['speedup_over_fp32']:.2f}×, rel err {row['int8']['rel_error']:.3f})",
                    flush=True,
                )
            c = r["frame_encoder"]["ceiling"]
            need = c["kernel_speedup_needed_for_target"]
            print(
                f"{name:<11} ceiling: weight products {100 * c['weight_product_share']:.0f} % of FP32 "
                f"time, INT8 kernels {c['int8_kernel_speedup']:.2f}× FP32 at its shapes → at most "
                f"{c['bound_free_quantization']:.2f}× (the {TARGET}× target needs "
                f"{f'{need:.2f}×' if need else 'more than infinitely fast'} kernels)",
                flush=True,
            )
    write_result(
        a.out, {"benchmark": "int8", "machine": f"{os.cpu_count()} CPUs", "results": results}
    )


if __name__ == "__main__":
    main()
