"""benchmarks/ort_profile.py: the profile breakdown and ceilings the speed benchmarks report."""

import numpy as np
import pytest

from ort_profile import amdahl, int8_gemm_ratio, matmul_graph, op_time_shares


def test_amdahl():
    assert amdahl(0.0, 10.0) == pytest.approx(1.0)
    assert amdahl(0.5, 2.0) == pytest.approx(1 / 0.75)
    assert amdahl(0.8, float("inf")) == pytest.approx(5.0)
    assert amdahl(1.0, float("inf")) == float("inf")


def test_weight_product_found_with_its_shape(tmp_path):
    w = np.random.default_rng(0).standard_normal((32, 48)).astype(np.float32)
    feeds = {"x": np.ones((20, 32), np.float32)}
    fp32 = op_time_shares(matmul_graph(w, 20, int8=False), feeds, threads=1, runs=3)
    assert fp32["shares"] == {"weight_products": pytest.approx(1.0)}
    assert fp32["product_shapes"] == [[20, 32, 48, 1]]
    int8 = op_time_shares(matmul_graph(w, 20, int8=True), feeds, threads=1, runs=3)
    # ONNX Runtime fuses the Q/DQ MatMul into its integer kernel: no float product is left.
    assert "weight_products" not in int8["shares"] and int8["shares"]["integer_products"] > 0
    assert int8["product_shapes"] == []


def test_int8_graph_close_to_float():
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    w, x = (
        rng.standard_normal((64, 16)).astype(np.float32),
        rng.uniform(-4, 4, (8, 64)).astype(np.float32),
    )
    run = {
        k: ort.InferenceSession(
            matmul_graph(w, 8, int8=k).SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {"x": x})[0]
        for k in (False, True)
    }
    assert np.linalg.norm(run[True] - run[False]) / np.linalg.norm(run[False]) < 0.05


def test_gemm_ratio_reports_each_shape():
    out = int8_gemm_ratio([[16, 64, 64, 2]], threads=1, repeats=3, blocks=1)
    assert out["speedup"] > 0 and [s["count"] for s in out["shapes"]] == [2]


def test_soak_quarter_fps_from_frame_marks():
    from soak import quarter_fps

    marks = [(f, f / 100.0) for f in range(0, 400, 10)]  # 100 frames a second throughout
    marks += [(f, 3.9 + (f - 390) / 50.0) for f in range(400, 800, 10)]  # then 50
    assert quarter_fps(marks, 800) == pytest.approx([100, 100, 50, 50], rel=0.05)
