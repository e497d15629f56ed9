"""The fused CUDA kernels timed as kernels are timed, beside what they replace, on one GPU.

    python benchmarks/kernels.py [--out benchmarks/results/kernels.json]   (benchmarks/gpu_check.py runs it too)

For each op, shape and dtype:
- kernel_us: the kernel alone with L2 flushed before it: a CUDA graph of [read a buffer of 4× L2,
  the kernel] replayed, less a graph of the reading alone (medians of replays timed one by one
  with CUDA events): no host time in it, however many launches the contender makes. Where a
  contender cannot be captured, a CUDA event pair around each launch after the flush and a
  sleep that keeps the GPU busy while the launches are queued (`cold_method`: "events").
- kernel_us_hot: launches captured in one CUDA graph and replayed: the time per launch with its
  inputs left in L2 by the one before, no host in the way.
- call_us: the Python call as the model makes it, many in a row, host side only (what the GPU
  waits for between launches when the kernel is faster than its call).
- floor_us: the bytes it must read and write ÷ this GPU's device-to-device copy bandwidth
  (measured, read and written bytes counted); fraction_of_floor = kernel_us / floor_us.
- reference and SDPA (QRAttention only; it returns no maps): the unfused PyTorch ops, timed the
  same two ways.
Needs an NVIDIA GPU; says so and exits 2 without one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# The repository itself: on a GPU machine its own Python runs the project from the clone.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import RESULTS, write_result  # noqa: E402

# (frames n, queries, tokens, dim, heads): the paper's 8 clips × 16 frames; art-edge-s, one clip
QR_SHAPES = {"paper": (8 * 16, 2, 196, 256, 8), "edge": (8, 2, 49, 256, 8)}
# (clips, frames, tracklets, dim)
LINK_SHAPES = {"paper": (8, 16, 2, 256), "edge": (1, 8, 2, 256)}
DTYPES = ("float32", "float16", "bfloat16")


def gpu_warmup(torch, seconds: float = 0.3):
    """Matrix products until the GPU has left its idle clocks (timings start at full speed)."""
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def event_pair(torch):
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def copy_bandwidth_gbs(torch) -> float:
    """Device-to-device copy of 1 GiB, bytes read and written counted, median of 10."""
    x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    us = cold_us(torch, lambda: y.copy_(x), flush=None, repeats=10)
    return 2 * x.numel() / (us * 1e-6) / 1e9


class L2Flush:
    """Evicts L2 by reading 4× its size (a sum: the lines it leaves are clean, so the timed kernel
    pays no write-back of the flush)."""

    def __init__(self, torch):
        l2 = torch.cuda.get_device_properties(0).L2_cache_size
        self.data = torch.ones(max(4 * l2, 256 << 20) // 4, device="cuda")
        self.total = torch.zeros((), device="cuda")
        self.torch = torch

    def zero_(self):  # the name the timers call
        self.torch.sum(self.data, dim=0, out=self.total)


def l2_flush_buffer(torch):
    return L2Flush(torch)


def cold_us(torch, fn, flush, repeats: int = 50) -> float:
    """Median µs between an event pair around each launch of fn (after zeroing `flush`, unless it
    is None): the fallback where fn cannot be captured in a graph."""
    for _ in range(3):
        fn()
    pairs = [event_pair(torch) for _ in range(repeats)]
    sleep = getattr(torch.cuda, "_sleep", None)
    for start, end in pairs:
        if flush is not None:
            flush.zero_()
            if sleep is not None:
                sleep(200_000)  # the GPU busy while the host queues fn's launches: none waits on it
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1000 for s, e in pairs)


def captured(torch, fn, copies: int = 1):
    """A CUDA graph of `copies` calls of fn (warmed up off the default stream, as capture needs)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(copies):
            fn()
    return graph


def replay_us(torch, graphs: dict, repeats: int) -> dict:
    """name → median µs of one replay, the graphs replayed in turn, each between an event pair."""
    times = {name: [] for name in graphs}
    for _ in range(repeats):
        for name, graph in graphs.items():
            start, end = event_pair(torch)
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def cold_graph_us(torch, fn, flush, repeats: int = 30) -> float:
    """µs of fn with L2 flushed: a replay of [flush, fn] less a replay of [flush] alone."""
    zero = lambda: flush.zero_()  # noqa: E731
    both = captured(torch, lambda: (zero(), fn()))
    alone = captured(torch, zero)
    got = replay_us(torch, {"both": both, "alone": alone}, repeats)
    return max(0.0, got["both"] - got["alone"])


def hot_us(torch, fn, launches: int = 20, replays: int = 10) -> float:
    """µs per launch of fn captured `launches` times in a CUDA graph, replayed `replays` times."""
    graph = captured(torch, fn, launches)
    graph.replay()
    start, end = event_pair(torch)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / (replays * launches)


def call_us(torch, fn, calls: int = 200) -> float:
    """Host µs per call: the calls made back to back, the GPU left to catch up after the clock."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t0) / calls * 1e6
    torch.cuda.synchronize()
    return host


def timed(torch, fn, flush, with_call: bool = False) -> dict:
    try:
        row = {"kernel_us": cold_graph_us(torch, fn, flush), "cold_method": "graph"}
        row["kernel_us_hot"] = hot_us(torch, fn)
    except RuntimeError as e:  # something in fn cannot be captured
        row = {
            "kernel_us": cold_us(torch, fn, flush),
            "cold_method": "events",
            "kernel_us_hot": None,
        }
        row["graph_error"] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    if with_call:
        row["call_us"] = call_us(torch, fn)
    return row


def qr_contenders(torch, ops, shape, dtype):
    import torch.nn.functional as F

    from art_train.ops import qr_attention_reference

    n, nq, length, dim, heads = shape
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(n, m, dim, device="cuda", generator=g).to(dtype) for m in (nq, length, length)
    )
    scale = 4.0 * (dim // heads) ** -0.5
    qh, kh, vh = (x.reshape(n, -1, heads, dim // heads).transpose(1, 2) for x in (q, k, v))
    moved = (q.numel() * 2 + k.numel() * 2 + n * nq * length) * q.element_size()
    return moved, {
        "fused": lambda: ops.qr_attention(q, k, v, heads, scale),
        "reference": lambda: qr_attention_reference(q, k, v, heads, scale),
        "sdpa": lambda: F.scaled_dot_product_attention(qh, kh, vh, scale=scale),
    }


def link_contenders(torch, ops, shape, dtype):
    from art_train.ops import tracklet_link_reference

    b, t, k, d = shape
    g = torch.Generator(device="cuda").manual_seed(1)
    r = torch.randn(b, t, k, d, device="cuda", generator=g).to(dtype)
    s = torch.randn(b, k, d, device="cuda", generator=g).to(dtype)
    moved = (r.numel() + s.numel() + b * k * d + b * t * k + b * (t - 1) * k) * r.element_size()
    return moved, {
        "fused": lambda: ops.tracklet_link(r, s, 0.1),
        "reference": lambda: tracklet_link_reference(r, s, 0.1),
    }


def bench_op(torch, ops, contenders, shape, dtype, copy_gbs, flush) -> dict:
    moved, fns = contenders(torch, ops, shape, getattr(torch, dtype))
    row = {"shape": list(shape), "bytes_moved": moved, "floor_us": moved / (copy_gbs * 1e3)}
    for name, fn in fns.items():
        row[name] = timed(torch, fn, flush, with_call=name == "fused")
    fused = row["fused"]
    row["fraction_of_floor"] = fused["kernel_us"] / row["floor_us"]
    if fused["kernel_us_hot"]:
        row["fraction_of_floor_hot"] = fused["kernel_us_hot"] / row["floor_us"]
    for name in fns:
        if name != "fused":
            row[f"speedup_over_{name}"] = row[name]["kernel_us"] / fused["kernel_us"]
    return row


def kernel_figures(torch, ops, copy_gbs: float) -> dict:
    """Every op × shape × dtype; → {"qr_attention": {"paper/float16": row, …}, "tracklet_link": …}."""
    flush = l2_flush_buffer(torch)
    out = {"qr_attention": {}, "tracklet_link": {}}
    for op, shapes, contenders in (
        ("qr_attention", QR_SHAPES, qr_contenders),
        ("tracklet_link", LINK_SHAPES, link_contenders),
    ):
        for name, shape in shapes.items():
            for dtype in DTYPES:
                with torch.no_grad():
                    row = bench_op(torch, ops, contenders, shape, dtype, copy_gbs, flush)
                out[op][f"{name}/{dtype}"] = row
                print_row(op, f"{name}/{dtype}", row)
    return out


def print_row(op: str, key: str, row: dict):
    fused, ref = row["fused"], row["reference"]
    sdpa = f"  SDPA {row['sdpa']['kernel_us']:7.1f}" if "sdpa" in row else ""
    print(
        f"{op:<14} {key:<17} kernel {fused['kernel_us']:7.1f} µs (hot {fused['kernel_us_hot'] or 0:6.1f}, "
        f"call {fused['call_us']:5.1f})  floor {row['floor_us']:6.1f}  ×{row['fraction_of_floor']:.2f}"
        f"  reference {ref['kernel_us']:7.1f}{sdpa}"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "kernels.json"))
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "error: benchmarks/kernels.py needs an NVIDIA GPU with CUDA (none is visible)",
            file=sys.stderr,
        )
        return 2
    from plugins.torch_ops import FusedOps, build_extension

    gpu_warmup(torch)
    copy_gbs = copy_bandwidth_gbs(torch)
    figures = kernel_figures(torch, FusedOps(build_extension()), copy_gbs)
    gpu = {"gpu": torch.cuda.get_device_name(), "copy_bandwidth_gbs": copy_gbs}
    write_result(a.out, {"benchmark": "kernels", **gpu, **figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
