"""The CUDA kernels built for the host, under the CUDA execution model of plugins/tests/cuda_emu.h:
the exact source of plugins/csrc/art_ops.cu, with only the launch syntax and `extern __shared__`
rewritten. Used by the kernel tests (tests/plugins) and benchmarks/emulated_kernels.py.

    lib = build_emulated(SHIPPED_SOURCE.read_text(), out_dir)   # libart_ops_emu.so, the C ABI
"""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
SHIPPED_SOURCE = CSRC / "art_ops.cu"
EMU = ROOT / "tests"
CUDA_INCLUDE = Path("/usr/local/cuda/include")


class EmulationUnavailable(RuntimeError):
    """No C++ compiler or no CUDA headers here: the kernels cannot be built for the host."""


def emulation_source(cuda_source: str) -> str:
    """The two rewrites g++ needs, nothing in the kernels' logic."""
    src = re.sub(
        r"(\w+(?:<[\w\s,]+>)?)\s*<<<(.*?)>>>\s*\(",
        r"::art_emu::launch(\1, \2, ",
        cuda_source,
        flags=re.S,
    )
    src = re.sub(
        r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(\w+)\s+(\w+)\s*\[\s*\]\s*;",
        r"\1* \2 = ::art_emu::dynamic_shared<\1>();",
        src,
    )
    if "<<<" in src or "extern __shared__" in src:
        raise AssertionError("a launch or extern __shared__ form the harness does not rewrite")
    return '#include "cuda_emu.h"\n' + src


WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas"]  # nvcc's `#pragma unroll`
# The traced build: every load and store the compiler emits calls a hook of emu_trace.cpp
# (ThreadSanitizer's instrumentation without its runtime). No vectorisation and no scalar
# replacement of aggregates, so that each load is the one the source writes, as nvcc emits it: a
# 16-byte chunk stays one 16-byte load, a loop of scalar loads stays scalar loads.
TRACED = [
    "-O1",
    "-fsanitize=thread",
    "-fno-tree-sra",
    "-fno-tree-vectorize",
    "-fno-tree-slp-vectorize",
]


def build_emulated(cuda_source: str, out_dir: Path, traced: bool = False) -> Path:
    """Compile a kernel source (the shipped one, or a deliberately broken copy) into a shared
    library with the C ABI of csrc/art_ops.h, -Wall -Wextra -Werror. `traced`: its global-memory
    traffic is counted (art_emu_trace_* of tests/emu_trace.cpp; slower)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not (CUDA_INCLUDE / "cuda_fp16.h").is_file():
        raise EmulationUnavailable(
            f"the emulated kernels need g++ and CUDA's headers (cuda_fp16.h) in {CUDA_INCLUDE}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cpp, lib = out_dir / "art_ops_emu.cpp", out_dir / "libart_ops_emu.so"
    cpp.write_text(emulation_source(cuda_source))
    includes = [f"-I{EMU}", f"-I{CSRC}", "-isystem", str(CUDA_INCLUDE)]
    common = [cxx, "-std=c++17", "-fPIC", *WARNINGS, *includes]
    if not traced:
        compile_step(common + ["-O2", "-shared", str(cpp), "-o", str(lib)])
        return lib
    kernel_o, trace_o = out_dir / "kernels.o", out_dir / "emu_trace.o"
    compile_step(common + TRACED + ["-c", str(cpp), "-o", str(kernel_o)])
    compile_step(common + ["-O2", "-c", str(EMU / "emu_trace.cpp"), "-o", str(trace_o)])
    compile_step(
        [cxx, "-shared", "-Wl,--no-undefined", str(kernel_o), str(trace_o), "-o", str(lib)]
    )
    return lib


def compile_step(command: list) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the emulated kernels do not compile:\n{proc.stderr[-4000:]}")


def traffic_figures(counts: dict) -> dict:
    """From a traced launch's counts (tests/plugins/emu_worker.py trace_case): the bytes it read
    over the least it must (every input once), and the sectors its warps' loads touched against
    the fewest that hold what they asked for (1.0: every load coalesced)."""
    return {
        "bytes_read_over_minimum": counts["bytes_read"] / counts["input_bytes"],
        "sector_efficiency": counts["read_sectors_min"] / max(1.0, counts["read_sectors"]),
        "write_sector_efficiency": counts["write_sectors_min"] / max(1.0, counts["write_sectors"]),
        "share_read_in_16_byte_loads": counts["bytes_read_16"] / max(1.0, counts["bytes_read"]),
    }
