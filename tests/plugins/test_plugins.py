"""plugins/: the CUDA sources compile for the target GPUs; their shared math matches NumPy."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CSRC = Path(__file__).resolve().parents[2] / "plugins" / "csrc"
# Orin (sm_87), desktop Ampere/Ada (sm_86, sm_89), H100 (sm_90). nvcc 13 no longer targets sm_72
# (Xavier); the sources use nothing newer than sm_70 features, so an older nvcc can build it.
ARCHS = ("86", "87", "89", "90")


def test_cuda_sources_compile_for_the_target_gpus(tmp_path):
    """art_ops.cu for every target, linked into plugins/tests/sanitizer_driver.cu (the program
    gpu_check.py runs under compute-sanitizer), warnings as errors."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: the CUDA compile check needs the CUDA toolkit")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    sources = [CSRC / "art_ops.cu", CSRC.parent / "tests" / "sanitizer_driver.cu"]
    proc = subprocess.run(
        [nvcc, "-std=c++17", "-O3", "--threads", "2", "-Werror", "all-warnings", f"-I{CSRC}", *map(str, sources),
         "-o", str(tmp_path / "sanitizer_driver"), *gencode],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "sanitizer_driver").stat().st_size > 0


@pytest.fixture(scope="module")
def host_math(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler on PATH for the host-side math check")
    exe = tmp_path_factory.mktemp("host_math") / "host_math"
    src = CSRC.parent / "tests" / "host_math.cpp"
    subprocess.run(
        [cxx, "-std=c++17", "-O2", "-Wall", "-Werror", str(src), "-o", str(exe)],
        check=True,
        timeout=120,
    )
    return exe


def _run(exe, x, eps):
    stdin = f"{len(x)} " + " ".join(f"{v:.9g}" for v in x) + f" {eps}\n"
    out = subprocess.run(
        [str(exe)], input=stdin, capture_output=True, text=True, check=True
    ).stdout.split("\n")
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


@pytest.mark.slow
def test_torch_binding_compiles_against_the_torch_headers(tmp_path):
    """The PyTorch extension's C++ side (no CUDA torch headers needed) compiles warning-free."""
    import sysconfig

    import torch.utils.cpp_extension as ext

    cxx = shutil.which("c++") or shutil.which("g++")
    cuda_include = Path("/usr/local/cuda/include")
    if cxx is None or not (cuda_include / "cuda_runtime_api.h").is_file():
        pytest.skip(
            "needs a C++ compiler and the CUDA headers (cuda_runtime_api.h) for the syntax check"
        )
    includes = [
        *ext.include_paths(),
        str(CSRC),
        str(cuda_include),
        sysconfig.get_paths()["include"],
    ]
    proc = subprocess.run(
        [
            cxx,
            "-std=c++20",
            "-Wall",
            "-Werror",
            "-fsyntax-only",
            "-DTORCH_EXTENSION_NAME=art_ops_torch",
            *[f"-I{i}" for i in includes],
            str(CSRC.parent / "torch" / "art_ops_torch.cpp"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(
            "no CUDA GPU here: the fused kernels are checked against the PyTorch reference on a GPU"
        )
    from plugins.torch_ops import fused_ops

    ops = fused_ops()
    if ops is None:
        pytest.fail("a GPU is present but the fused-op extension did not build (see the warning)")
    return torch, ops


# (n = clips × frames, queries, tokens, dim, heads): the paper's B=8, T=16 and an edge clip.
QR_SHAPES = [(8 * 16, 2, 196, 256, 8), (1 * 8, 4, 49, 384, 6), (3, 16, 1024, 64, 1)]
LINK_SHAPES = [(8, 16, 2, 256), (1, 8, 4, 384), (2, 64, 16, 32)]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", QR_SHAPES)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 1e-2)])
def test_qr_attention_kernel_matches_reference(shape, dtype, tol):
    torch, ops = _cuda()
    from art_train.ops import qr_attention_reference

    n, nq, length, dim, heads = shape
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(n, m, dim, device="cuda", generator=g) for m in (nq, length, length))
    scale = 4.0 * (dim // heads) ** -0.5
    ref_out, ref_attn = qr_attention_reference(q.double(), k.double(), v.double(), heads, scale)
    t = getattr(torch, dtype)
    with torch.no_grad():
        out, attn = ops.qr_attention(q.to(t), k.to(t), v.to(t), heads, scale)
    assert (out.double() - ref_out).abs().max().item() <= tol
    assert (attn.double() - ref_attn).abs().max().item() <= tol


@pytest.mark.gpu
@pytest.mark.parametrize("shape", LINK_SHAPES)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 1e-2)])
def test_tracklet_link_kernel_matches_reference(shape, dtype, tol):
    torch, ops = _cuda()
    from art_train.ops import tracklet_link_reference

    b, t, k, d = shape
    g = torch.Generator(device="cuda").manual_seed(1)
    r, s = (
        torch.randn(b, t, k, d, device="cuda", generator=g),
        torch.randn(b, k, d, device="cuda", generator=g),
    )
    ref = tracklet_link_reference(r.double(), s.double(), 0.1)
    dt = getattr(torch, dtype)
    with torch.no_grad():
        got = ops.tracklet_link(r.to(dt), s.to(dt), 0.1)
    # agg sums T responses of size ~√d: compare relative to its scale.
    for name, a, e in zip(("agg", "saliency", "coherence"), got, ref):
        scale = max(1.0, e.abs().max().item()) if name == "agg" else 1.0
        assert (a.double() - e).abs().max().item() <= tol * scale, name


@pytest.mark.slow
def test_cmake_builds_the_kernel_library_and_its_abi_checks_shapes(tmp_path):
    """CMake + nvcc build libart_ops.so (TensorRT absent: the plugin library is skipped with a
    warning); the C ABI refuses shapes outside the kernel limits before touching the GPU."""
    import ctypes

    cmake, nvcc = shutil.which("cmake"), shutil.which("nvcc")
    if cmake is None or nvcc is None:
        pytest.skip("needs cmake and nvcc on PATH")
    build = tmp_path / "build"
    cfg = subprocess.run(
        [
            cmake,
            "-S",
            str(CSRC.parent),
            "-B",
            str(build),
            f"-DCMAKE_CUDA_COMPILER={nvcc}",
            "-DCMAKE_CUDA_ARCHITECTURES=87",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cfg.returncode == 0, cfg.stdout[-2000:] + cfg.stderr[-2000:]
    assert "TensorRT not found" in cfg.stderr + cfg.stdout
    built = subprocess.run(
        [cmake, "--build", str(build), "-j2"], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stdout[-3000:]
    lib_path = build / "libart_ops.so"
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as e:
        pytest.skip(f"libart_ops.so built but cannot load here ({e})")
    ART_EINVAL, ART_FLOAT32 = -1, 0
    vp, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    lib.art_qr_attention.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, i, f, vp]
    lib.art_tracklet_link.argtypes = [i, vp, vp, vp, vp, vp, i, i, i, i, f, f, vp]
    null = None
    # 17 queries (limit 16), 1025 tokens (limit 1024), dim not divisible by heads:
    for n, nq, length, dim, heads in ((1, 17, 8, 8, 1), (1, 2, 1025, 8, 1), (1, 2, 8, 10, 3)):
        assert (
            lib.art_qr_attention(
                ART_FLOAT32, null, null, null, null, null, n, nq, length, dim, heads, 1.0, null
            )
            == ART_EINVAL
        )
    # 65 frames (limit 64), one frame (no coherence), a zero temperature:
    for b, t, k, d, temp in ((1, 65, 2, 8, 0.1), (1, 1, 2, 8, 0.1), (1, 8, 2, 8, 0.0)):
        assert (
            lib.art_tracklet_link(
                ART_FLOAT32, null, null, null, null, null, b, t, k, d, temp, 1e-6, null
            )
            == ART_EINVAL
        )
    assert (
        lib.art_qr_attention(7, null, null, null, null, null, 1, 2, 8, 8, 1, 1.0, null)
        == ART_EINVAL
    )  # dtype


def test_python_plugins_without_tensorrt_say_what_is_missing():
    try:
        import tensorrt.plugin  # noqa: F401

        pytest.skip("TensorRT is installed here: the missing-TensorRT message cannot be shown")
    except (ImportError, OSError):
        pass
    with pytest.raises(ImportError, match=r"needs TensorRT ≥ 10.9 .* CMake"):
        import plugins.trt_python  # noqa: F401
