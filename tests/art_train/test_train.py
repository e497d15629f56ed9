import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from art_edge.errors import UserError
from art_train import evaluate, train
from art_train.checkpoint import WEIGHTS, load_checkpoint
from art_train.train import resolve_config


def test_training_writes_the_run_dir(trained, synth):
    for name in (
        "model.safetensors",
        "model.json",
        "metrics.jsonl",
        "curves.png",
        "confusion.png",
        "last.pt",
        "summary.json",
    ):
        assert (trained / name).is_file(), name
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 2
    for key in (
        "loss",
        "L_v",
        "L_con",
        "L_MTC",
        "L_sema",
        "mtc_spatial",
        "mtc_temporal",
        "mtc_tracklet",
        "sema_video",
        "sema_prototype",
        "val_top1",
        "lr",
    ):
        assert key in rows[0], key
    meta = json.loads((trained / "model.json").read_text())
    assert meta["classes"] == (synth / "classes.txt").read_text().split()
    assert meta["preprocessing"]["num_frames"] == 4 and meta["model"]["dim"] == 32
    assert not list(trained.glob(".*"))  # no temporary files left behind


def test_checkpoint_loads_and_evaluates(trained, synth, capsys):
    model, meta = load_checkpoint(trained)
    assert not model.training and model.cfg.num_classes == 4
    assert (
        evaluate.main(
            [
                str(a)
                for a in (
                    "--ckpt",
                    trained,
                    "--val",
                    synth / "val.csv",
                    "--classes",
                    synth / "classes.txt",
                    "--batch-size",
                    2,
                    "--json",
                )
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cm = np.array(report["confusion"])
    assert report["n"] == 8 and cm.shape == (4, 4) and cm.sum() == 8
    # the reported figures are the confusion matrix's: top-1 its trace, mean class accuracy its rows'
    assert report["top1"] == pytest.approx(np.trace(cm) / 8)
    assert report["mean_class_acc"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(1)))
    # no GPU here: the CPU, in float32; its speed is reported
    assert report["device"] == "cpu" and report["precision"] == "fp32"
    assert report["clips_per_s"] > 0


def test_resume_continues_exactly(synth, tmp_path, trained, train_run):
    out, epochs = tmp_path / "resumed", len((trained / "metrics.jsonl").read_text().splitlines())
    assert train_run(synth, out, "--epochs", 1) == 0
    assert train_run(synth, out, "--epochs", epochs, "--resume") == 0
    a = torch.load(trained / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == epochs - 1
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5, msg=k)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == epochs


def test_restarts_continue_the_best_probe_exactly(synth, tmp_path, train_run):
    """restarts=2: both seeds probe 1 epoch; the winner's run equals a straight 2-epoch run of its seed."""
    out = tmp_path / "restarted"
    assert (
        train_run(synth, out, "--epochs", 2, "--set", "restarts=2", "--set", "probe_epochs=1") == 0
    )
    info = json.loads((out / "restarts.json").read_text())
    assert [c["seed"] for c in info["candidates"]] == [0, 1000] and info["chosen"] in (0, 1000)
    assert not (out / "probes").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    straight = tmp_path / "straight"
    assert train_run(synth, straight, "--epochs", 2, "--seed", info["chosen"]) == 0
    a = torch.load(out / "last.pt", weights_only=True)["model"]
    b = torch.load(straight / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def _cli_error(main, args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_bad_inputs_give_one_clear_line(synth, tmp_path, trained, capsys, synth_args):
    base = synth_args
    code, line = _cli_error(
        train.main, ["--config", "art-huge", *base, "--out", tmp_path / "x"], capsys
    )
    assert code == 2 and "art-tiny" in line and "art-b16" in line

    (tmp_path / "empty.csv").write_text("path,label\n")
    code, line = _cli_error(
        train.main, ["--train", tmp_path / "empty.csv", *base[2:], "--out", tmp_path / "y"], capsys
    )
    assert code == 2 and "no clips" in line and not (tmp_path / "y").exists()

    other = tmp_path / "other.txt"
    other.write_text("x\ny\nz\nw\n")
    ev = ["--val", synth / "val.csv", "--classes", other]
    code, line = _cli_error(evaluate.main, ["--ckpt", trained, *ev], capsys)
    assert code == 2 and "does not match" in line and "4 classes given" in line

    code, line = _cli_error(
        evaluate.main,
        [
            "--ckpt",
            tmp_path / "nope",
            "--val",
            synth / "val.csv",
            "--classes",
            synth / "classes.txt",
        ],
        capsys,
    )
    assert code == 2 and "not found" in line


def test_classes_file_that_does_not_match_the_checkpoint(synth, tmp_path, trained, capsys):
    names = (synth / "classes.txt").read_text().split()
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("\n".join([names[1], names[0], *names[2:]]) + "\n")
    code, line = _cli_error(
        evaluate.main, ["--ckpt", trained, "--val", synth / "val.csv", "--classes", swapped], capsys
    )
    assert code == 2 and "does not match" in line


def test_missing_corrupt_and_mismatched_checkpoints(synth, tmp_path, trained, capsys):
    import shutil

    ev = ["--val", synth / "val.csv", "--classes", synth / "classes.txt"]
    no_weights = tmp_path / "no_weights"
    shutil.copytree(trained, no_weights)
    (no_weights / WEIGHTS).unlink()
    code, line = _cli_error(evaluate.main, ["--ckpt", no_weights, *ev], capsys)
    assert code == 2 and "has no model.safetensors" in line

    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained, corrupt)
    (corrupt / WEIGHTS).write_bytes((trained / WEIGHTS).read_bytes()[:300])
    code, line = _cli_error(evaluate.main, ["--ckpt", corrupt, *ev], capsys)
    assert code == 2 and "corrupt" in line

    wrong = tmp_path / "wrong"
    shutil.copytree(trained, wrong)
    meta = json.loads((wrong / "model.json").read_text())
    meta["model"]["dim"] = 48
    (wrong / "model.json").write_text(json.dumps(meta))
    code, line = _cli_error(evaluate.main, ["--ckpt", wrong, *ev], capsys)
    assert code == 2 and "do not fit" in line


def test_existing_run_dir_needs_resume(synth, trained, capsys, synth_args):
    code, line = _cli_error(
        train.main,
        [*synth_args, "--out", trained],
        capsys,
    )
    assert code == 2 and "--resume" in line


def test_config_file_and_set_overrides(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"base": "art-tiny", "model": {"dim": 64}, "train": {"epochs": 3}}))
    m, t = resolve_config(str(cfg), ["lr=0.01", "num_queries=3", "flip=true"])
    assert (m.dim, m.num_queries, t.epochs, t.lr, t.flip) == (64, 3, 3, 0.01, True)
    with pytest.raises(UserError, match="unknown field"):
        resolve_config("art-tiny", ["nonsense=1"])


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(synth, tmp_path, small_args):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "art_train.train",
        "--train",
        str(synth / "train.csv"),
        "--val",
        str(synth / "val.csv"),
        "--classes",
        str(synth / "classes.txt"),
        "--out",
        str(out),
        "--epochs",
        "1",
        *small_args,
    ]
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    assert (out / "model.safetensors").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_baseline_variant_trains_with_the_art_tiny_preset(synth, tmp_path, train_run):
    """The Baseline has no queries: the preset's query selection init must pass it by."""
    out = tmp_path / "baseline"
    assert train_run(synth, out, "--epochs", 1, "--variant", "baseline") == 0
    assert json.loads((out / "model.json").read_text())["model"]["variant"] == "baseline"


def test_pre_clip_gradient_norms_and_clipped_share_are_logged(synth, tmp_path, train_run):
    for clip, expected in (
        ("0", 0.0),
        ("1e-9", 1.0),
    ):  # clipping off: no step clipped; a tiny bound: all
        out = tmp_path / f"clip{clip}"
        assert train_run(synth, out, "--epochs", 1, "--set", f"grad_clip={clip}") == 0
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert row["clipped_fraction"] == expected
        assert 0 < row["grad_norm_mean"] <= row["grad_norm_max"]


def test_param_groups_scale_the_pretrained_tower_and_spare_biases_from_decay():
    from dataclasses import replace as dc_replace

    from art_train.configs import get_config
    from art_train.model import create_model
    from art_train.train import param_groups

    model = create_model("art-tiny", class_names=["a", "b", "c", "d"])
    _, tcfg = get_config("art-tiny")
    groups = param_groups(model, dc_replace(tcfg, lr=0.01, tower_lr_scale=0.25, weight_decay=0.05))
    assert sum(len(g["params"]) for g in groups) == sum(
        1 for p in model.parameters() if p.requires_grad
    )
    tower = {id(p) for p in model.frame_encoder.visual.parameters()}
    for g in groups:
        in_tower = {id(p) in tower for p in g["params"]}
        assert len(in_tower) == 1  # a group is all tower or all new modules
        assert g["lr"] == pytest.approx(0.0025 if in_tower.pop() else 0.01)
        if g["weight_decay"]:
            assert all(p.ndim >= 2 for p in g["params"])  # no decay on biases and norms


def test_val_fraction_carves_validation_from_the_training_list(synth, tmp_path, small_args):
    from art_train.train import carve_validation

    records = [type("R", (), {"label": c})() for c in (0, 0, 0, 0, 1, 1, 2)]
    train_part, val_part = carve_validation(records, 0.5, seed=0)
    assert sorted(r.label for r in val_part) == [
        0,
        0,
        1,
    ]  # half of each class; a lone clip stays in training
    assert len(train_part) + len(val_part) == len(records)
    out = tmp_path / "run"
    args = [
        "--train",
        synth / "train.csv",
        "--classes",
        synth / "classes.txt",
        "--out",
        out,
        "--val-fraction",
        0.25,
        "--epochs",
        1,
        *small_args,
    ]
    assert train.main([str(a) for a in args]) == 0
    assert (out / "model.safetensors").is_file()


def test_art_tiny_starts_from_the_shipped_tower_unless_told_none(
    synth_args, small_args, tmp_path, capsys
):
    """Default flags load the label-free tower the package ships (model.json says so); with
    `--clip-weights none` the tower starts from random weights."""
    from safetensors.torch import load_file

    from art_train.clip import packaged_tower, resolve_clip_weights

    tower = packaged_tower("ART-ResNet-Tiny")
    assert tower is not None and tower.stat().st_size < 3e6  # a few MB at most, in git
    assert resolve_clip_weights(None, "ART-ResNet-Tiny") == str(tower)
    assert resolve_clip_weights("none", "ART-ResNet-Tiny") is None
    assert resolve_clip_weights(None, "ViT-B-16") is None  # nothing shipped: random, as before
    flags = [a for a in small_args if a not in ("--clip-weights", "none")]
    out = tmp_path / "run"
    args = ["--config", "art-tiny", *synth_args, "--out", out, *flags, "--epochs", 1]
    assert train.main([str(a) for a in args]) == 0
    assert f"--clip-weights {tower}: 91 tensors loaded" in capsys.readouterr().err
    assert json.loads((out / "model.json").read_text())["clip_weights"] == str(tower)
    shipped = load_file(str(tower))
    model, _ = load_checkpoint(out)
    own = model.frame_encoder.visual.state_dict()
    # epoch 1's best checkpoint moved from it, but a batch-norm count says where it started
    key = next(k for k in shipped if k.endswith("num_batches_tracked"))
    assert own[key.removeprefix("visual.")] > shipped[key]
