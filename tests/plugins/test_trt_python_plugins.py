"""plugins/trt_python.py run through NVIDIA's own `tensorrt.plugin` package (10.13 and 11.1, from
shared/tensorrt), over the smallest stand-in for TensorRT's compiled bindings
(plugins/tests/tensorrt_standin, labelled as such): registration, output types and shapes, the
FP32/FP16 combinations autotune offers, serialization, and enqueue on host buffers with the CPU
build of the kernels, against the PyTorch references."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from art_train.ops import qr_attention_reference, tracklet_link_reference

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "trt_python_worker.py"
INPUTS = {
    "QRAttention_q": (8, 2, 256),
    "QRAttention_k": (8, 49, 256),
    "QRAttention_v": (8, 49, 256),
    "TrackletLink_r": (2, 8, 2, 256),
    "TrackletLink_s": (2, 2, 256),
}


@pytest.fixture(scope="session")
def numpy_for_tensorrt(tmp_path_factory) -> str:
    """A folder with a numpy that tensorrt.plugin accepts (< 2.4: it calls int() on 1-element
    arrays), first on the worker's path; '' when the numpy here already is one."""
    major, minor = (int(x) for x in np.__version__.split(".")[:2])
    if (major, minor) < (2, 4):
        return ""
    target = tmp_path_factory.mktemp("numpy")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "numpy<2.4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"could not install numpy<2.4 for NVIDIA's tensorrt.plugin: {proc.stderr.strip()[-300:]}"
        )
    return str(target)


def references(folder: Path, dtype) -> dict:
    t = {
        k: torch.from_numpy(np.load(folder / f"{k}.npy").astype(dtype).astype(np.float64))
        for k in INPUTS
    }
    out, attn = qr_attention_reference(
        t["QRAttention_q"], t["QRAttention_k"], t["QRAttention_v"], 8, 0.7071
    )
    agg, sal, coh = tracklet_link_reference(t["TrackletLink_r"], t["TrackletLink_s"], 0.1, 1e-6)
    return {
        "QRAttention_out": out,
        "QRAttention_attn": attn,
        "TrackletLink_agg": agg,
        "TrackletLink_saliency": sal,
        "TrackletLink_coherence": coh,
    }


@pytest.mark.parametrize("version", ["10.13.3", "11.1.0"])
def test_python_plugins_through_nvidias_package(
    version, emulated_ops, numpy_for_tensorrt, tensorrt_share, tmp_path
):
    package = tensorrt_share / f"python-{version}" / "tensorrt"
    if not (package / "plugin" / "__init__.py").is_file():
        pytest.skip(
            f"NVIDIA's tensorrt.plugin {version} is not at {package} (set ART_TENSORRT_HEADERS)"
        )
    rng = np.random.default_rng(11)
    for name, shape in INPUTS.items():
        np.save(tmp_path / f"{name}.npy", rng.standard_normal(shape).astype(np.float32))
    standin = ROOT / "plugins" / "tests" / "tensorrt_standin"
    path = [p for p in (numpy_for_tensorrt, str(standin), str(ROOT)) if p]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "ART_TENSORRT_PLUGIN_DIR": str(package),
        "ART_OPS_LIBRARY": str(emulated_ops),
    }
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(report.pop("tensorrt.plugin")).is_relative_to(package)  # NVIDIA's package, not ours
    expected_shapes = {
        "QRAttention": [[8, 2, 256], [8, 2, 49]],
        "TrackletLink": [[2, 2, 256], [2, 8, 2], [2, 7, 2]],
    }
    expected_fields = {
        "QRAttention": ["num_heads", "scale"],
        "TrackletLink": ["eps", "temperature"],
    }
    for op, r in report.items():
        assert r["registered"] and set(r["output_types"]) == {"FLOAT"}
        assert r["output_shapes"] == expected_shapes[op] and not any(r["batch_constant"])
        n = len(r["combinations"][0])
        assert [list(c) for c in r["combinations"]] == [
            ["FLOAT/LINEAR"] * n,
            ["HALF/LINEAR"] * n,
        ], op
        assert r["serialized"] == expected_fields[op]
    for dtype, tol in ((np.float32, 1e-5), (np.float16, 3e-3)):
        for name, ref in references(tmp_path, dtype).items():
            got = np.load(tmp_path / f"{name}_{dtype.__name__}.npy").astype(np.float64)
            assert np.abs(got - ref.numpy()).max() <= tol, f"{name} {dtype.__name__}"
