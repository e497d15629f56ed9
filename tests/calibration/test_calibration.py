"""INT8: calibration, Q/DQ quantization, the cache, the gate and its failures."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from art_edge.errors import UserError

QUIET = dict(log=lambda *a: None)


def int8_options(synth, **kw):
    from calibration.build import Int8Options

    base = dict(
        calib=str(synth / "train.csv"), holdout=str(synth / "val.csv"), max_drop=100.0, threads=2
    )
    return Int8Options(**{**base, **kw})


@pytest.fixture(scope="module")
def int8_engine(trained, synth, tmp_path_factory):
    from art_train.build_engine import build_engine

    out = tmp_path_factory.mktemp("int8") / "engine"
    logs = []
    build_engine(trained, out, "int8", "onnxruntime", int8_options(synth), log=logs.append)
    return out, logs


def initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_int8_engine_dir_contents_and_manifest(int8_engine):
    out, logs = int8_engine
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    graphs = ("frame_encoder", "clip_topk", "frame_head", "clip_readout")
    assert manifest["graphs"] == {g: f"{g}.int8.onnx" for g in graphs}
    assert manifest["int8"]["fp32_graphs"] == {g: f"{g}.onnx" for g in graphs}
    for name in (
        "int8_report.json",
        "int8_report.png",
        "calibration_cache.json",
        "frame_encoder.onnx",
    ):
        assert name in manifest["files"], name
    report = json.loads((out / "int8_report.json").read_text())
    gate = report["gate"]
    assert gate["n"] == 8 and gate["top1_agreement"] * 8 == pytest.approx(
        round(gate["top1_agreement"] * 8)
    )
    assert gate["top1_drop_points"] == pytest.approx(100 * (gate["top1_fp32"] - gate["top1_int8"]))
    for graph in ("frame_encoder", "clip_head"):  # FP32 and INT8 timed side by side on this machine
        speed = report["speed_onnxruntime_cpu"][graph]
        assert speed["fp32_ms"] > 0 and speed["int8_ms"] > 0
        assert speed["speedup"] == pytest.approx(speed["fp32_ms"] / speed["int8_ms"])
    assert any(line.startswith("INT8 speed here") for line in logs)
    errs = [r["added_rel_error"] for r in report["node_errors"]]
    assert errs == sorted(errs, reverse=True) and len(errs) > 5
    assert all(r["output_rel_error"] >= 0 for r in report["node_errors"])


def test_speed_note_only_when_int8_is_slower(monkeypatch):
    import calibration.build as build

    def fake(fe, head):
        return lambda *a: {
            "frame_encoder": {"fp32_ms": 10.0, "int8_ms": 10.0 / fe, "speedup": fe},
            "clip_head": {"fp32_ms": 5.0, "int8_ms": 5.0 / head, "speedup": head},
        }

    for fe, head, note in ((0.4, 0.7, True), (1.5, 1.1, False), (0.9, 1.2, False)):
        monkeypatch.setattr(build, "measure_speed", fake(fe, head))
        logs = []
        build._speed(None, None, None, logs.append)
        assert f"({fe:.2f}×)" in logs[0]
        assert any("--precision fp32 is faster" in line for line in logs) == note


def test_canonical_graph_is_symmetric_int8_with_per_channel_weights(int8_engine):
    out, _ = int8_engine
    for graph in ("frame_encoder", "clip_topk", "frame_head", "clip_readout"):
        model = onnx.load(str(out / f"{graph}.int8.onnx"))
        inits = initializers(model)
        qnodes = [
            n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        ]
        assert qnodes, graph
        for n in qnodes:
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), f"{graph}: {n.name} zero point {zp}"
        weight_scales = [
            inits[n.input[1]]
            for n in qnodes
            if n.op_type == "DequantizeLinear" and n.input[0] in inits
        ]
        assert any(s.size > 1 for s in weight_scales), "weights should carry per-channel scales"
        # Only matrix products read dequantized tensors: norms, softmax, adds and the art nodes stay float.
        dq_out = {o for n in qnodes if n.op_type == "DequantizeLinear" for o in n.output}
        readers = {n.op_type for n in model.graph.node if any(i in dq_out for i in n.input)}
        assert readers <= {"MatMul", "Conv", "Gemm"}, readers
        assert not any(
            n.op_type in ("LayerNormalization", "Softmax")
            for n in model.graph.node
            if any(i in dq_out for i in n.input)
        )
    for name, op in (
        ("frame_head", "QRAttention"),
        ("clip_readout", "TrackletLink"),
    ):  # the art nodes stay float
        head = onnx.load(str(out / f"{name}.int8.onnx"))
        assert {n.op_type for n in head.graph.node if n.domain == "art"} == {op}
        assert {f.name for f in head.functions} == {op}


def test_int8_engine_runs_and_tracks_fp32(int8_engine, engine_dir, synth):
    from art_edge.cliplist import read_classes, read_list
    from art_edge.preprocess import load_clip
    from art_edge.runtime.engine import ARTEngine

    out, _ = int8_engine
    records = read_list(synth / "val.csv", read_classes(synth / "classes.txt"))
    with ARTEngine.load(out, threads=2) as e8, ARTEngine.load(engine_dir, threads=2) as e32:
        clips = np.stack([load_clip(r.path, e8.preprocessing) for r in records])
        l8, l32 = e8.classify_clips(clips)["logits"], e32.classify_clips(clips)["logits"]
    assert l8.shape == l32.shape
    # INT8 within a few percent of FP32. (Not measured against how much the logits differ from
    # clip to clip: this small model's logits hardly do, and that spread varies 10× by seed
    # while the INT8 error does not; `make demo` and benchmarks/int8.py gate a trained model.)
    err = np.linalg.norm(l8 - l32) / np.linalg.norm(l32)
    assert err < 0.05, err


def test_cache_is_reused_when_it_matches_and_ignored_when_not(
    int8_engine, trained, synth, tmp_path
):
    from art_train.build_engine import build_engine

    out, first_logs = int8_engine
    assert not any("reusing" in line for line in first_logs)
    again = tmp_path / "again"
    shutil.copytree(out, again)
    logs = []
    build_engine(
        trained, again, "int8", "onnxruntime", int8_options(synth), force=True, log=logs.append
    )
    assert sum("reusing the" in line for line in logs) == 4, (
        logs
    )  # every graph: encoder and the three head stages
    # A cache from another graph: same file, a key that no longer matches.
    cache = json.loads((again / "calibration_cache.json").read_text())
    cache["entries"]["frame_encoder"]["key"]["graph_sha256"] = "0" * 64
    other = tmp_path / "other_cache.json"
    other.write_text(json.dumps(cache))
    logs = []
    build_engine(
        trained,
        tmp_path / "third",
        "int8",
        "onnxruntime",
        int8_options(synth, cache=str(other)),
        log=logs.append,
    )
    assert any(
        "frame_encoder ranges were made for a different graph_sha256" in line for line in logs
    ), logs


def test_gate_failure_stops_the_build_and_keeps_the_report(trained, synth, tmp_path):
    from art_train.build_engine import build_engine

    out = tmp_path / "engine"
    with pytest.raises(UserError, match="INT8 gate failed: top-1 drop .* most sensitive nodes"):
        build_engine(
            trained, out, "int8", "onnxruntime", int8_options(synth, max_drop=-1.0), **QUIET
        )
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".engine.build-")], (
        "temp dir left behind"
    )
    report = json.loads((tmp_path / "engine.int8_report.json").read_text())
    assert report["passed"] is False
    build_engine(
        trained,
        out,
        "int8",
        "onnxruntime",
        int8_options(synth, max_drop=-1.0, keep_failed=True),
        **QUIET,
    )
    assert json.loads((out / "manifest.json").read_text())["int8"]["passed"] is False


def test_auto_exclude_puts_nodes_back_in_float(trained, synth, tmp_path):
    from art_train.build_engine import build_engine

    opts = int8_options(
        synth, min_agreement=1.01, auto_exclude=1, keep_failed=True
    )  # never passes: 2 rounds
    build_engine(trained, tmp_path / "e", "int8", "onnxruntime", opts, **QUIET)
    report = json.loads((tmp_path / "e" / "int8_report.json").read_text())
    kept = report["kept_in_float_to_pass"]
    assert len(kept) == 2 and kept == [n["node"] for n in report["node_errors"][:2]]
    graphs = ("frame_encoder", "clip_topk", "frame_head", "clip_readout")
    for model in (onnx.load(str(tmp_path / "e" / f"{g}.int8.onnx")) for g in graphs):
        dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        for n in model.graph.node:
            if n.name in kept:
                assert not any(i in dq_out for i in n.input), f"{n.name} should read float inputs"


def write_list(path, rows):
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_bad_calibration_inputs(trained, synth, tmp_path):
    from art_edge.cliplist import read_classes, read_list
    from art_train.build_engine import build_engine

    records = read_list(synth / "train.csv", read_classes(synth / "classes.txt"))
    small = write_list(tmp_path / "small.csv", [(r.path, r.label) for r in records[:3]])
    with pytest.raises(UserError, match="has 3 clips; at least 8"):
        build_engine(
            trained,
            tmp_path / "a",
            "int8",
            "onnxruntime",
            int8_options(synth, calib=str(small)),
            **QUIET,
        )
    broken = write_list(
        tmp_path / "broken.csv",
        [(tmp_path / f"missing{i}.mp4", 0) for i in range(6)]
        + [(r.path, r.label) for r in records[:6]],
    )
    with pytest.raises(UserError, match="do not decode"):
        build_engine(
            trained,
            tmp_path / "b",
            "int8",
            "onnxruntime",
            int8_options(synth, calib=str(broken), holdout=str(broken)),
            **QUIET,
        )
    (tmp_path / "empty.csv").write_text("path,label\n")
    with pytest.raises(UserError, match="no clips"):
        build_engine(
            trained,
            tmp_path / "c",
            "int8",
            "onnxruntime",
            int8_options(synth, calib=str(tmp_path / "empty.csv")),
            **QUIET,
        )
    with pytest.raises(UserError, match="needs --calib"):
        build_engine(trained, tmp_path / "d", "int8", "onnxruntime", None, **QUIET)
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_cli_int8_without_calib_is_one_line(trained, tmp_path, capsys):
    from art_train import build_engine

    assert (
        build_engine.main(
            ["--ckpt", str(trained), "--out", str(tmp_path / "e"), "--precision", "int8"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--calib" in err[0]


def test_from_an_engine_dir_gives_the_same_contract_as_from_the_checkpoint(
    int8_engine, engine_dir, synth, tmp_path
):
    """`--from` on the device and `--ckpt` on the host: the same files, manifest keys and report,
    the same FP32 graphs (byte for byte) and so the same calibration ranges."""
    from art_train.build_engine import build_from

    ckpt_dir, _ = int8_engine
    from_dir = tmp_path / "from"
    build_from(engine_dir, from_dir, "int8", "onnxruntime", int8_options(synth), **QUIET)
    m_ckpt, m_from = (json.loads((d / "manifest.json").read_text()) for d in (ckpt_dir, from_dir))
    assert set(m_ckpt["files"]) == set(m_from["files"])
    assert set(m_ckpt) == set(m_from) and set(m_ckpt["int8"]) == set(m_from["int8"])
    assert m_from["source"] == {"engine_dir": str(engine_dir)} and "checkpoint" in m_ckpt["source"]
    for key in ("model", "classes", "preprocessing", "graphs", "precision"):
        assert m_ckpt[key] == m_from[key], key
    for graph in ("frame_encoder.onnx", "clip_topk.onnx", "frame_head.onnx", "clip_readout.onnx"):
        assert m_ckpt["files"][graph]["sha256"] == m_from["files"][graph]["sha256"]
    r_ckpt, r_from = (
        json.loads((d / "int8_report.json").read_text()) for d in (ckpt_dir, from_dir)
    )
    assert set(r_ckpt) == set(r_from) and r_ckpt["gate"]["n"] == r_from["gate"]["n"]
    assert r_ckpt["gate"]["top1_agreement"] == r_from["gate"]["top1_agreement"]


def test_from_refuses_a_damaged_engine_dir_and_writes_nothing(engine_dir, tmp_path, capsys):
    from art_train import build_engine

    broken = tmp_path / "broken"
    shutil.copytree(engine_dir, broken)
    (broken / "frame_head.onnx").write_bytes(b"not a graph")
    code = build_engine.main(["--from", str(broken), "--out", str(tmp_path / "out")])
    assert code == 2 and "does not match the sha256" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
