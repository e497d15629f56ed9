"""The CUDA kernels executed on the CPU (plugins/tests/cuda_emu.h) at the paper's and the edge
model's shapes, today's kernels beside the first ones (QRAttention: one block per frame and query,
a thread a key row; TrackletLink: every pass reading global memory): the largest error against the
float64 reference, and each launch's
global-memory traffic counted by the traced build (plugins/tests/emu_trace.cpp), the CPU's proxy
for speed on a GPU:

- bytes_read_over_minimum: the bytes the launch read from global memory over its inputs' bytes
  (1.0: every input read once);
- sector_efficiency: over all warp-wide loads, the fewest 32-byte sectors that hold the bytes the
  lanes asked for, over the sectors they touched (1.0: every load coalesced).

    python benchmarks/emulated_kernels.py [--out benchmarks/results/emulated_kernels.json]

The first kernel's source comes from git history (FIRST_KERNEL); outside a git checkout it is
left out, with a line that says so. No GPU needed.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plugins.emulation import SHIPPED_SOURCE, build_emulated, traffic_figures

from benchlib import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "plugins" / "emu_worker.py"
FIRST_KERNEL = "96e7051"  # the last commit with the first kernels
SHAPES = {
    "qr": {"paper": [8 * 16, 2, 196, 256, 8], "edge": [8, 2, 49, 256, 8]},
    "link": {"paper": [8, 16, 2, 256], "edge": [1, 8, 2, 256]},
}
DTYPES = {"first": ("float32", "float16"), "today": ("float32", "float16", "bfloat16")}


def run_worker(lib: Path, case: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(lib), json.dumps([case])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])[0], time.perf_counter() - t0


def first_kernel_source() -> str | None:
    proc = subprocess.run(
        ["git", "show", f"{FIRST_KERNEL}:plugins/csrc/art_ops.cu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return proc.stdout if proc.returncode == 0 else None


def measure(kernel: str, libs: dict, op: str, shape_name: str, dtype: str) -> dict:
    """One kernel at one shape and dtype: its errors (plain build), its traffic (traced build)."""
    shape = SHAPES[op][shape_name]
    case = {"op": op, "shape": shape, "dtype": dtype}
    checked, seconds = run_worker(libs["plain"], case)
    counted, _ = run_worker(libs["traced"], {**case, "trace": True})
    row = {"kernel": kernel, "op": op, "shape_name": shape_name, "shape": shape, "dtype": dtype}
    row |= {k: round(v, 4) for k, v in traffic_figures(counted).items()}
    row |= {"bytes_read": counted["bytes_read"], "input_bytes": counted["input_bytes"]}
    row |= {"max_abs_error": checked["max_abs_error"], "worker_seconds": round(seconds, 2)}
    print(
        f"{kernel:<6} {op:<5} {shape_name:<6} {dtype:<9} bytes read/minimum "
        f"{row['bytes_read_over_minimum']:5.2f}  sector efficiency {row['sector_efficiency']:5.3f}"
        f"  max error {max(checked['max_abs_error'].values()):.1e}"
    )
    return row


def build_both(source: str, out: Path) -> dict:
    return {
        "plain": build_emulated(source, out / "plain"),
        "traced": build_emulated(source, out / "traced", traced=True),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "emulated_kernels.json"))
    a = ap.parse_args(argv)
    sources = {"today": SHIPPED_SOURCE.read_text(), "first": first_kernel_source()}
    if sources["first"] is None:
        print(f"the first kernel ({FIRST_KERNEL}) is not in this checkout's history: left out")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kernel, source in sources.items():
            if source is None:
                continue
            libs = build_both(source, Path(tmp) / kernel)
            for op, shapes in SHAPES.items():
                for shape_name in shapes:
                    for dtype in DTYPES[kernel]:
                        rows.append(measure(kernel, libs, op, shape_name, dtype))
    write_result(
        a.out, {"benchmark": "emulated_kernels", "first_kernel": FIRST_KERNEL, "results": rows}
    )


if __name__ == "__main__":
    main()
