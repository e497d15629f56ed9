"""The CUDA kernels executed on the CPU (plugins/tests/cuda_emu.h) at the paper's shapes: the
largest error against the PyTorch reference per output and dtype, and how long the emulated run
takes. No GPU needed; the same harness as tests/plugins/test_emulated_kernels.py.

    python benchmarks/emulated_kernels.py [--out benchmarks/results/emulated_kernels.json]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plugins.emulation import SHIPPED_SOURCE, build_emulated

from benchlib import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "plugins"
PAPER = {"qr": [8 * 16, 2, 196, 256, 8], "link": [8, 16, 2, 256]}


def run(lib: Path, op: str, dtype: str) -> tuple[dict, float]:
    case = [{"op": op, "shape": PAPER[op], "dtype": dtype, "orders": [0]}]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(TESTS / "emu_worker.py"), str(lib), json.dumps(case)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])[0], time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "emulated_kernels.json"))
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        lib = build_emulated(SHIPPED_SOURCE.read_text(), Path(tmp))
        build_s = time.perf_counter() - t0
        for op in ("qr", "link"):
            for dtype in ("float32", "float16"):
                got, seconds = run(lib, op, dtype)
                rows.append(
                    {
                        "op": op,
                        "shape": PAPER[op],
                        "dtype": dtype,
                        "max_abs_error": got["max_abs_error"],
                        "worker_seconds": round(seconds, 2),
                    }
                )
                errors = ", ".join(f"{k} {v:.1e}" for k, v in got["max_abs_error"].items())
                print(f"{op:<5} {dtype:<8} {errors}  ({seconds:.1f} s with the worker's start)")
    print(f"build of the emulated library: {build_s:.1f} s")
    write_result(
        a.out,
        {"benchmark": "emulated_kernels", "build_seconds": round(build_s, 1), "results": rows},
    )


if __name__ == "__main__":
    main()
