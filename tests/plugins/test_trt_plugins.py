"""The TensorRT C++ plugins (plugins/trt/art_plugins.cpp), built with -Wall -Wextra -Werror against
NVIDIA's published headers of TensorRT 10.3 (JetPack 6), 10.13 and 11.1, linked to the CPU build
of the kernels, and driven through their whole lifecycle by plugins/tests/trt_plugin_harness.cpp
the way TensorRT drives them; their outputs against the PyTorch references."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from art_train.ops import qr_attention_reference, tracklet_link_reference
from plugins.emulation import CUDA_INCLUDE, WARNINGS

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ["10.3.0", "10.13.3", "11.1.0"]
TOLERANCE = {"": 1e-5, "_f16": 3e-3}
SCALE, HEADS, TEMPERATURE, EPS = 0.7071, 8, 0.1, 1e-6
SHAPES = {
    "qr_q": (8, 2, 256),
    "qr_k": (8, 49, 256),
    "qr_v": (8, 49, 256),
    "link_r": (2, 8, 2, 256),
    "link_s": (2, 2, 256),
}


def compile_cpp(args, what):
    cxx = shutil.which("g++")
    proc = subprocess.run(
        [cxx, "-std=c++17", "-O2", *WARNINGS, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{what}:\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module", params=VERSIONS)
def harness(request, emulated_ops, tensorrt_share, tmp_path_factory):
    """(libart_plugins.so, the harness program) built against one TensorRT header set."""
    include = tensorrt_share / f"include-{request.param}"
    if not (include / "NvInferRuntime.h").is_file():
        pytest.skip(
            f"NVIDIA's TensorRT {request.param} headers are not at {include} (set ART_TENSORRT_HEADERS)"
        )
    if shutil.which("g++") is None or not (CUDA_INCLUDE / "cuda_runtime_api.h").is_file():
        pytest.skip("needs g++ and CUDA's headers in /usr/local/cuda/include")
    out = tmp_path_factory.mktemp(f"trt{request.param}")
    system = ["-isystem", include, "-isystem", CUDA_INCLUDE]  # their warnings are not ours
    emulated_source = emulated_ops.with_suffix(".cpp")
    lib, exe = out / "libart_plugins.so", out / "trt_plugin_harness"
    compile_cpp(
        [
            "-fPIC",
            "-shared",
            f"-I{ROOT / 'plugins' / 'tests'}",
            f"-I{ROOT / 'plugins' / 'csrc'}",
            *system,
            emulated_source.parent / "art_ops_emu.cpp",
            ROOT / "plugins" / "trt" / "art_plugins.cpp",
            "-o",
            lib,
        ],
        f"libart_plugins.so against TensorRT {request.param}",
    )
    compile_cpp(
        [*system, ROOT / "plugins" / "tests" / "trt_plugin_harness.cpp", "-o", exe, "-ldl"],
        f"the harness against TensorRT {request.param}",
    )
    return lib, exe


def write_inputs(folder: Path) -> dict:
    rng = np.random.default_rng(5)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    for name, a in arrays.items():
        (folder / f"{name}.bin").write_bytes(a.tobytes())
        (folder / f"{name}_f16.bin").write_bytes(a.astype(np.float16).tobytes())
    return arrays


def references(arrays: dict, suffix: str) -> dict:
    dt = np.float16 if suffix else np.float32
    t = {k: torch.from_numpy(v.astype(dt).astype(np.float64)) for k, v in arrays.items()}
    out, attn = qr_attention_reference(t["qr_q"], t["qr_k"], t["qr_v"], HEADS, SCALE)
    agg, sal, coh = tracklet_link_reference(t["link_r"], t["link_s"], TEMPERATURE, EPS)
    return {
        "qr_out": out,
        "qr_attn": attn,
        "link_agg": agg,
        "link_saliency": sal,
        "link_coherence": coh,
    }


def test_plugins_through_their_lifecycle_match_the_reference(harness, tmp_path):
    lib, exe = harness
    arrays = write_inputs(tmp_path)
    proc = subprocess.run(
        [str(exe), str(lib), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed checks" in proc.stdout
    for suffix, tol in TOLERANCE.items():
        for name, ref in references(arrays, suffix).items():
            got = np.frombuffer(
                (tmp_path / f"{name}{suffix}.bin").read_bytes(),
                np.float16 if suffix else np.float32,
            )
            err = np.abs(got.astype(np.float64) - ref.numpy().ravel()).max()
            assert err <= tol, f"{name}{suffix}: {err}"


def test_the_library_exports_what_trtexec_looks_up(harness):
    lib, _ = harness
    exported = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True
    ).stdout
    assert {"getCreators", "setLoggerFinder"} <= {
        line.split()[-1] for line in exported.splitlines()
    }
