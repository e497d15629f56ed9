"""plugins/: the CUDA sources compile for the target GPUs; their shared math matches NumPy."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CSRC = Path(__file__).resolve().parents[1] / "plugins" / "csrc"
# Orin (sm_87), desktop Ampere/Ada (sm_86, sm_89), H100 (sm_90). nvcc 13 no longer targets sm_72
# (Xavier); the sources use nothing newer than sm_70 features, so an older nvcc can build it.
ARCHS = ("86", "87", "89", "90")


def test_cuda_sources_compile_for_the_target_gpus(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: the CUDA compile check needs the CUDA toolkit")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    proc = subprocess.run([nvcc, "-std=c++17", "-O3", "-Werror", "all-warnings", "-c", str(CSRC / "art_ops.cu"),
                           "-o", str(tmp_path / "art_ops.o"), *gencode], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "art_ops.o").stat().st_size > 0


@pytest.fixture(scope="module")
def host_math(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH for the host-side math check")
    exe = tmp_path_factory.mktemp("host_math") / "host_math"
    src = CSRC.parent / "tests" / "host_math.cpp"
    subprocess.run([cxx, "-std=c++17", "-O2", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True, timeout=120)
    return exe


def _run(exe, x, eps):
    stdin = f"{len(x)} " + " ".join(f"{v:.9g}" for v in x) + f" {eps}\n"
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    return np.array(out[0].split(), dtype=np.float64), float(out[1])


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_online_softmax_and_inverse_norm_match_numpy(host_math, scale):
    rng = np.random.default_rng(int(scale * 10))
    x = (rng.standard_normal(197) * scale).astype(np.float32)
    probs, inv = _run(host_math, x, 1e-6)
    ref = np.exp(x.astype(np.float64) - x.max())
    ref /= ref.sum()
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-7)
    assert abs(inv - 1 / np.linalg.norm(x.astype(np.float64))) <= 1e-5 / np.linalg.norm(x)


def test_inverse_norm_is_clamped_by_eps_like_torch_normalize(host_math):
    _, inv = _run(host_math, np.zeros(4, np.float32), 1e-3)
    assert inv == pytest.approx(1e3)

