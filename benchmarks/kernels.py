"""The fused CUDA kernels against unfused PyTorch, side by side on one GPU, JSON out.

    python benchmarks/kernels.py [--out benchmarks/results/kernels.json]

- QRAttention: the fused kernel (scores, softmax, weighted sum and head-mean maps in one launch)
  against `qr_attention_reference` (unfused PyTorch ops) and against
  `torch.nn.functional.scaled_dot_product_attention` (which does not return the maps).
- TrackletLink: the fused kernel against `tracklet_link_reference`, and its effective bandwidth
  (bytes read + written / time) against the GPU's measured device-to-device copy bandwidth.
At the paper's shapes (B = 8, T = 16, K = 2, HW = 196, d = 256, 8 heads) and an edge clip.
Needs an NVIDIA GPU; says so and exits 2 without one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

QR = {"paper": (8 * 16, 2, 196, 256, 8), "edge": (8, 4, 49, 384, 6)}
LINK = {"paper": (8, 16, 2, 256), "edge": (1, 8, 4, 384)}


def cuda_time_ms(torch, fn, repeats: int = 200) -> float:
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def copy_bandwidth_gbs(torch) -> float:
    x = torch.empty(256 * 1024 * 1024 // 4, device="cuda")
    y = torch.empty_like(x)
    ms = cuda_time_ms(torch, lambda: y.copy_(x), 50)
    return 2 * x.numel() * 4 / (ms * 1e-3) / 1e9


def bench_qr(torch, ops, shape, dtype):
    import torch.nn.functional as F

    from art_train.ops import qr_attention_reference

    n, nq, length, dim, heads = shape
    q, k, v = (torch.randn(n, m, dim, device="cuda", dtype=dtype) for m in (nq, length, length))
    scale = 4.0 * (dim // heads) ** -0.5
    hd = dim // heads
    qh, kh, vh = (x.reshape(n, -1, heads, hd).transpose(1, 2) for x in (q, k, v))
    fused = cuda_time_ms(torch, lambda: ops.qr_attention(q, k, v, heads, scale))
    unfused = cuda_time_ms(torch, lambda: qr_attention_reference(q, k, v, heads, scale))
    sdpa = cuda_time_ms(torch, lambda: F.scaled_dot_product_attention(qh, kh, vh, scale=scale))
    return {
        "fused_ms": fused,
        "unfused_pytorch_ms": unfused,
        "sdpa_ms_without_maps": sdpa,
        "speedup_over_unfused": unfused / fused,
        "speedup_over_sdpa": sdpa / fused,
    }


def bench_link(torch, ops, shape, dtype, copy_gbs):
    from art_train.ops import tracklet_link_reference

    b, t, k, d = shape
    r, s = (
        torch.randn(b, t, k, d, device="cuda", dtype=dtype),
        torch.randn(b, k, d, device="cuda", dtype=dtype),
    )
    fused = cuda_time_ms(torch, lambda: ops.tracklet_link(r, s, 0.1))
    unfused = cuda_time_ms(torch, lambda: tracklet_link_reference(r, s, 0.1))
    size = r.element_size()
    moved = (r.numel() + s.numel() + b * k * d + b * t * k + b * (t - 1) * k) * size
    gbs = moved / (fused * 1e-3) / 1e9
    return {
        "fused_ms": fused,
        "unfused_pytorch_ms": unfused,
        "speedup_over_unfused": unfused / fused,
        "effective_gbs": gbs,
        "fraction_of_copy_bandwidth": gbs / copy_gbs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "kernels.json"))
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "error: benchmarks/kernels.py needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    from plugins.torch_ops import FusedOps, build_extension

    ops = FusedOps(build_extension())
    torch.set_grad_enabled(False)
    copy_gbs = copy_bandwidth_gbs(torch)
    results = {
        "gpu": torch.cuda.get_device_name(),
        "copy_bandwidth_gbs": copy_gbs,
        "qr_attention": {},
        "tracklet_link": {},
    }
    for dname, dtype in (("float32", torch.float32), ("float16", torch.float16)):
        for name, shape in QR.items():
            results["qr_attention"][f"{name}/{dname}"] = {
                "shape": shape,
                **bench_qr(torch, ops, shape, dtype),
            }
        for name, shape in LINK.items():
            results["tracklet_link"][f"{name}/{dname}"] = {
                "shape": shape,
                **bench_link(torch, ops, shape, dtype, copy_gbs),
            }
    for op in ("qr_attention", "tracklet_link"):
        for key, row in results[op].items():
            extra = (
                f", {100 * row['fraction_of_copy_bandwidth']:.0f} % of copy bandwidth"
                if op == "tracklet_link"
                else f", SDPA (no maps) {row['sdpa_ms_without_maps'] * 1000:.1f} µs"
            )
            print(
                f"{op:<14} {key:<14} fused {row['fused_ms'] * 1000:8.1f} µs  "
                f"unfused {row['unfused_pytorch_ms'] * 1000:8.1f} µs"
                f"  ({row['speedup_over_unfused']:.2f}×){extra}"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
