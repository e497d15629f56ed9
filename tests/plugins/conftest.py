"""Builds plugins/csrc/art_ops.cu for the host under the CUDA execution model of
plugins/tests/cuda_emu.h: the exact kernel source, with only the launch syntax and `extern
__shared__` rewritten."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "plugins" / "csrc"
EMU = ROOT / "plugins" / "tests"
CUDA_INCLUDE = Path("/usr/local/cuda/include")


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
    """Compile a kernel source (the shipped one, or a deliberately broken copy) into a shared library."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not (CUDA_INCLUDE / "cuda_fp16.h").is_file():
        pytest.skip(
            "the emulated kernels need g++ and CUDA's headers (cuda_fp16.h) in /usr/local/cuda/include"
        )
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
    assert proc.returncode == 0, proc.stderr[-4000:]
    return lib


@pytest.fixture(scope="session")
def emulated_ops(tmp_path_factory) -> Path:
    """libart_ops_emu.so built from the shipped art_ops.cu."""
    return build_emulated((CSRC / "art_ops.cu").read_text(), tmp_path_factory.mktemp("emu"))


@pytest.fixture(scope="session")
def build_kernel_copy(tmp_path_factory):
    """build_kernel_copy(source) → a library built from another version of art_ops.cu."""
    return lambda source: build_emulated(source, tmp_path_factory.mktemp("mutant"))
