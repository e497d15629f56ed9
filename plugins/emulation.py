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
        r"(\w+(?:<\w+>)?)\s*<<<(.*?)>>>\s*\(",
        r"::art_emu::launch(\1, \2, ",
        cuda_source,
        flags=re.S,
    )
    src = re.sub(
        r"extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;",
        r"\1* \2 = ::art_emu::dynamic_shared<\1>();",
        src,
    )
    if "<<<" in src or "extern __shared__" in src:
        raise AssertionError("a launch or extern __shared__ form the harness does not rewrite")
    return '#include "cuda_emu.h"\n' + src


def build_emulated(cuda_source: str, out_dir: Path) -> Path:
    """Compile a kernel source (the shipped one, or a deliberately broken copy) into a shared
    library with the C ABI of csrc/art_ops.h, -Wall -Wextra -Werror."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not (CUDA_INCLUDE / "cuda_fp16.h").is_file():
        raise EmulationUnavailable(
            f"the emulated kernels need g++ and CUDA's headers (cuda_fp16.h) in {CUDA_INCLUDE}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cpp, lib = out_dir / "art_ops_emu.cpp", out_dir / "libart_ops_emu.so"
    cpp.write_text(emulation_source(cuda_source))
    proc = subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O2",
            "-fPIC",
            "-shared",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{EMU}",
            f"-I{CSRC}",
            "-isystem",
            str(CUDA_INCLUDE),
            str(cpp),
            "-o",
            str(lib),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the emulated kernels do not compile:\n{proc.stderr[-4000:]}")
    return lib
