"""Export to ONNX, the runner protocol, engine dirs and evaluation through the runtime."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from art_edge.cliplist import read_classes, read_list
from art_edge.errors import UserError
from art_edge.preprocess import load_clip
from art_edge.runtime.backends import OnnxRuntimeRunner
from art_edge.runtime.engine import ARTEngine, read_manifest
from art_train import build_engine, evaluate
from art_train.checkpoint import load_checkpoint


def _val_clips(synth, engine):
    recs = read_list(synth / "val.csv", read_classes(synth / "classes.txt"))
    return np.stack([load_clip(r.path, engine.preprocessing) for r in recs]), [
        r.label for r in recs
    ]


GRAPH_FILES = ("frame_encoder.onnx", "clip_topk.onnx", "frame_head.onnx", "clip_readout.onnx")


def test_graphs_pass_full_check_and_carry_the_art_nodes(engine_dir):
    for name in GRAPH_FILES:
        model = onnx.load(str(engine_dir / name))
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
        assert {o.domain: o.version for o in model.opset_import}[""] >= 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["classes"]) == read_manifest(engine_dir)["classes"]
        assert int(meta["num_frames"]) == 4 and "preprocessing" in meta and "config" in meta
    # each fused op lands in the graph that holds its stage
    for name, op in (("frame_head.onnx", "QRAttention"), ("clip_readout.onnx", "TrackletLink")):
        graph = onnx.load(str(engine_dir / name))
        art_nodes = [n for n in graph.graph.node if n.domain == "art"]
        assert {n.op_type for n in art_nodes} == {op}
        for node in art_nodes:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["plugin_namespace"] == b"art"
        assert {f.name for f in graph.functions} == {op} and all(
            f.domain == "art" for f in graph.functions
        )
    qr = next(
        n
        for n in onnx.load(str(engine_dir / "frame_head.onnx")).graph.node
        if n.op_type == "QRAttention"
    )
    assert {a.name for a in qr.attribute} >= {"num_heads", "scale"}


def test_onnxruntime_matches_pytorch_on_the_val_set(trained, engine_dir, synth):
    model, _ = load_checkpoint(trained)
    with ARTEngine.load(engine_dir) as engine:
        clips, _ = _val_clips(synth, engine)
        ort_out = engine.classify_clips(clips)
    with torch.no_grad():
        ref = model(torch.from_numpy(clips))
    assert np.abs(ort_out["logits"] - ref["logits"].numpy()).max() <= 1e-4
    assert (ort_out["logits"].argmax(-1) == ref["logits"].argmax(-1).numpy()).all()
    assert np.abs(ort_out["attention"] - ref["attention"].numpy()).max() <= 1e-4
    assert np.abs(ort_out["saliency"] - ref["saliency"].numpy()).max() <= 1e-4
    np.testing.assert_array_equal(ort_out["topk_ids"], ref["topk_ids"].numpy())


def test_streaming_one_frame_at_a_time_equals_the_whole_clip(engine_dir, synth):
    with ARTEngine.load(engine_dir) as engine:
        clips, _ = _val_clips(synth, engine)
        whole = engine.classify_clips(clips[:1])
        frames = [
            engine.encode_frames(clips[0, t : t + 1]) for t in range(clips.shape[1])
        ]  # as a live stream does
        patches = np.concatenate([p for p, _ in frames])[None]
        tokens = np.concatenate([c for _, c in frames])[None]
        streamed = engine.run_head(patches, tokens)
    np.testing.assert_allclose(streamed["logits"], whole["logits"], atol=1e-5)


def test_encoder_workers_encode_parts_side_by_side_as_one_batch(engine_dir, synth):
    """A batch split across encoder workers (uneven parts, fewer frames than workers too) gives
    the frames' encodings in order, as one worker would; a worker count is a CPU option only."""
    from art_edge.runtime.engine import default_encoder_workers

    with ARTEngine.load(engine_dir, threads=2) as engine:
        clips, _ = _val_clips(synth, engine)
        frames = np.ascontiguousarray(clips.reshape(-1, *clips.shape[2:])[:7])
        one = engine.encode_frames(frames)
    with ARTEngine.load(engine_dir, threads=2, encoder_workers=3) as engine:
        assert engine.runners["frame_encoder"].threads == 1  # 2 threads shared by 3: one each
        for n in (7, 2, 1):
            parts = engine.encode_frames(frames[:n])
            for got, want in zip(parts, one):
                np.testing.assert_allclose(got, want[:n], atol=1e-5)
    assert default_encoder_workers(1, 8) == 1  # one camera: all threads on each frame
    assert default_encoder_workers(4, 2) == 2  # several: a worker a camera, one per core at most
    assert default_encoder_workers(3, 8) == 3
    assert default_encoder_workers(4, 2, backend="tensorrt") == 1
    assert default_encoder_workers(4, 2, threaded=False) == 1


def test_eval_through_the_engine_equals_eval_of_the_checkpoint(trained, engine_dir, synth, capsys):
    args = ["--val", synth / "val.csv", "--classes", synth / "classes.txt", "--json"]
    assert evaluate.main(["--engine", str(engine_dir), *map(str, args)]) == 0
    by_engine = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluate.main(["--ckpt", str(trained), *map(str, args)]) == 0
    by_ckpt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    scores = ("top1", "mean_class_acc", "n", "confusion")  # --ckpt also says its speed and device
    assert {k: by_engine[k] for k in scores} == {k: by_ckpt[k] for k in scores}
    assert by_engine["n"] == 8


def test_polygraphy_runs_both_graphs(engine_dir):
    polygraphy = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    if not Path(polygraphy).exists():
        pytest.skip("polygraphy is not installed (pip install polygraphy)")
    for name in GRAPH_FILES:
        proc = subprocess.run(
            [polygraphy, "run", str(engine_dir / name), "--onnxrt"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "PASSED" in proc.stdout + proc.stderr


def test_manifest_lists_every_file_with_its_hash(engine_dir):
    manifest = read_manifest(engine_dir)
    assert set(manifest["files"]) == {
        p.name for p in engine_dir.iterdir() if p.name != "manifest.json"
    }
    assert manifest["precision"] == "fp32" and manifest["backend"] == "onnxruntime"
    assert manifest["model"]["num_frames"] == 4 and len(manifest["classes"]) == 4
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())


def test_an_edited_engine_file_is_refused(engine_dir, tmp_path):
    copy = tmp_path / "engine"
    shutil.copytree(engine_dir, copy)
    data = bytearray((copy / "frame_head.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "frame_head.onnx").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match the sha256"):
        ARTEngine.load(copy)
    (copy / "frame_head.onnx").unlink()
    with pytest.raises(UserError, match="missing frame_head.onnx"):
        ARTEngine.load(copy)


def test_runner_validates_feeds(engine_dir):
    with OnnxRuntimeRunner(engine_dir / "clip_readout.onnx", threads=1) as runner:
        good = {
            "x_cls": np.zeros((1, 64), np.float32),  # CLIP's joint space: the tower's embed_dim
            "responses": np.zeros((1, 4, 4, 32), np.float32),
            "s_topk": np.zeros((1, 4, 32), np.float32),
        }
        out = runner.infer(good)
        assert out["logits"].shape == (1, 4) and runner.inference_time > 0
        with pytest.raises(UserError, match=r"shape \[1, 5, 4, 32\]"):
            runner.infer({**good, "responses": np.zeros((1, 5, 4, 32), np.float32)})
        with pytest.raises(UserError, match="must be float32"):
            runner.infer({**good, "x_cls": good["x_cls"].astype(np.float64)})
        with pytest.raises(UserError, match="missing"):
            runner.infer({"x_cls": good["x_cls"]})
    with pytest.raises(UserError, match="activate"):
        runner.infer(good)


def test_an_engine_dir_of_the_old_format_is_refused_with_the_fix(engine_dir, tmp_path):
    copy = tmp_path / "engine"
    shutil.copytree(engine_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format": "art-engine/1"}))
    with pytest.raises(UserError, match="rebuild the engine dir with art-build-engine"):
        ARTEngine.load(copy)


def test_build_engine_bad_inputs_leave_nothing_behind(trained, tmp_path, engine_dir, capsys):
    def run(*args):
        code = build_engine.main([str(a) for a in args])
        return code, capsys.readouterr().err.strip().splitlines()[-1]

    code, line = run("--ckpt", tmp_path / "none", "--out", tmp_path / "e1")
    assert code == 2 and "not found" in line and not (tmp_path / "e1").exists()
    code, line = run("--ckpt", trained, "--out", engine_dir)
    assert code == 2 and "--force" in line
    code, line = run("--ckpt", trained, "--out", tmp_path / "e2", "--precision", "int8")
    assert code == 2 and "int8" in line and not (tmp_path / "e2").exists()
    corrupt = tmp_path / "corrupt_run"
    shutil.copytree(trained, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    code, line = run("--ckpt", corrupt, "--out", tmp_path / "e3")
    assert code == 2 and "corrupt" in line and not (tmp_path / "e3").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-built temp dirs


def test_tensorrt_backend_needs_tensorrt(engine_dir):
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        with pytest.raises(UserError, match="TensorRT"):
            build_engine.build_engine(engine_dir, engine_dir.parent / "trt", backend="tensorrt")
        with pytest.raises(UserError, match="holds no TensorRT engines"):
            ARTEngine.load(engine_dir, backend="tensorrt")
        return
    pytest.skip(
        "TensorRT is installed here: its engine build is exercised on a GPU device, not in this test"
    )


def test_art_edge_never_imports_torch(engine_dir):
    """Every art_edge module imports, and a live run completes, with torch never loaded."""
    root = Path(__file__).resolve().parents[2]
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in (root / "art_edge").rglob("*.py")
    )
    code = (
        f"import sys, {', '.join(modules)}; "
        f"assert art_edge.cli.main(['--engine', {str(engine_dir)!r}, '--source', "
        "'synthetic://?frames=8&size=32&clips=2', '--headless']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr


def test_graph_for_tensorrt_keeps_the_art_nodes_but_not_their_bodies(engine_dir):
    import onnx

    from calibration.tensorrt_build import graph_for_plugins

    nodes = {}
    for name in ("frame_head.onnx", "clip_readout.onnx"):
        model = onnx.load_from_string(graph_for_plugins(engine_dir / name))
        assert not [f for f in model.functions if f.domain == "art"]
        nodes.update({n.op_type: n for n in model.graph.node if n.domain == "art"})
    assert set(nodes) == {"QRAttention", "TrackletLink"}
    assert any(
        a.name == "plugin_namespace" and a.s == b"art" for a in nodes["QRAttention"].attribute
    )


def test_eval_views_average_the_probabilities_of_temporal_clips(engine_dir, synth):
    from art_edge.preprocess import load_clip, sample_segment_indices
    from art_edge.runtime.engine import ARTEngine, softmax

    assert list(sample_segment_indices(32, 4, train=False)) == list(
        sample_segment_indices(32, 4, train=False, view=(0, 1))
    )
    assert list(sample_segment_indices(32, 4, train=False, view=(0, 2))) == [2, 10, 18, 26]
    assert list(sample_segment_indices(32, 4, train=False, view=(1, 2))) == [6, 14, 22, 30]
    m = evaluate.evaluate_engine(
        engine_dir, synth / "val.csv", synth / "classes.txt", batch_size=3, threads=2, views=2
    )
    records = read_list(synth / "val.csv", read_classes(synth / "classes.txt"))
    with ARTEngine.load(engine_dir, threads=2) as engine:
        probs = sum(
            np.stack(
                [
                    softmax(row)
                    for row in engine.classify_clips(
                        np.stack(
                            [load_clip(r.path, engine.preprocessing, view=(v, 2)) for r in records]
                        )
                    )["logits"].astype(np.float64)
                ]
            )
            for v in range(2)
        )
    expected = np.mean(probs.argmax(-1) == np.array([r.label for r in records]))
    assert m["n"] == len(records) and m["top1"] == pytest.approx(expected)


def test_the_motion_read_out_exports_and_matches_pytorch(train_run, synth, tmp_path):
    """motion_dim > 0 adds the tracklets' lag-1 cross-covariance to the read-out graph;
    region_position adds each region's attention centroid to the frame head's responses."""
    from art_train.build_engine import build_engine

    run = tmp_path / "run"
    sets = ("--set", "motion_dim=4", "--set", "region_position=true")
    assert train_run(synth, run, "--epochs", 1, *sets) == 0
    build_engine(run, tmp_path / "engine", precision="fp32", backend="onnxruntime", log=print)
    model, _ = load_checkpoint(run)
    assert model.cfg.motion_dim == 4 and model.region_position is not None
    with ARTEngine.load(tmp_path / "engine") as engine:
        clips, _ = _val_clips(synth, engine)
        ort_out = engine.classify_clips(clips)
    with torch.no_grad():
        ref = model(torch.from_numpy(clips))
    assert np.abs(ort_out["logits"] - ref["logits"].numpy()).max() <= 1e-4
