"""The edge install (`pip install art-toolkit`, no extras: numpy, OpenCV, ONNX Runtime, onnx) in a
fresh virtualenv without torch: the dataset tools, a device-side INT8 build from an engine dir made
on the training host, scoring it, and a headless art-edge run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory):
    """A virtualenv with `pip install <this checkout>` and nothing else: its bin folder."""
    work = tmp_path_factory.mktemp("edge")
    env_dir, source = work / "venv", work / "src"
    # a copy of the checkout: pip builds in the source folder, and the checkout stays as it is
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "demo", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    pip = subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir / "bin"


def run(bin_dir, *args, timeout=600):
    return subprocess.run(
        [str(bin_dir / args[0]), *map(str, args[1:])],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=bin_dir,
    )


@pytest.mark.slow
def test_torch_is_not_in_the_edge_install(edge_venv):
    proc = run(edge_venv, "python", "-c", "import torch")
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


@pytest.mark.slow
def test_dataset_tools_run_without_torch(edge_venv, tmp_path):
    proc = run(
        edge_venv, "art-synth", "--out", tmp_path / "d", "--per-class", 2, "--val-per-class", 1
    )
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "d" / "train.csv").read_text().splitlines()) == 1 + 2 * 6
    ann = tmp_path / "kinetics"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,abc,0,10,train\n"
    )
    (ann / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,xyz,5,15,val\n"
    )
    proc = run(
        edge_venv, "art-prepare-dataset", "kinetics", "--annotations", ann, "--out", tmp_path / "k"
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k" / "classes.txt").read_text().split() == ["abseiling"]


@pytest.mark.slow
def test_int8_build_score_and_run_on_the_device_without_torch(
    edge_venv, engine_dir, synth, tmp_path
):
    out = tmp_path / "int8"
    proc = run(
        edge_venv,
        "art-build-engine",
        "--from",
        engine_dir,
        "--out",
        out,
        "--precision",
        "int8",
        "--backend",
        "onnxruntime",
        "--calib",
        synth / "train.csv",
        "--holdout",
        synth / "val.csv",
        "--threads",
        2,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "int8" and manifest["source"] == {"engine_dir": str(engine_dir)}
    gate = json.loads((out / "int8_report.json").read_text())["gate"]
    scores = {}
    for name, d in (("int8", out), ("fp32", engine_dir)):
        proc = run(
            edge_venv,
            "art-eval",
            "--engine",
            d,
            "--val",
            synth / "val.csv",
            "--classes",
            synth / "classes.txt",
            "--threads",
            2,
            "--json",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    # art-eval scores the same held-out clips the gate compared: the same top-1, FP32 and INT8
    assert scores["int8"]["n"] == gate["n"] == 8
    assert scores["int8"]["top1"] == pytest.approx(gate["top1_int8"])
    assert scores["fp32"]["top1"] == pytest.approx(gate["top1_fp32"])
    assert (
        100 * (scores["fp32"]["top1"] - scores["int8"]["top1"])
        <= gate["top1_drop_points"] + 1e-9
        <= 1.0
    )
    video = sorted((synth / "videos").glob("val_*.mp4"))[0]
    proc = run(
        edge_venv,
        "art-edge",
        "--engine",
        out,
        "--video",
        video,
        "--headless",
        "--threads",
        2,
        "--summary",
        tmp_path / "summary.json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 16 and summary["decisions"] >= 1


@pytest.mark.slow
def test_the_dashboard_page_ships_in_the_edge_install(edge_venv):
    """The page's assets are package data (no CDN, nothing outside the wheel): the installed
    package serves them."""
    check = (
        "from art_edge.serve.web import STATIC; "
        "names = sorted(p.name for p in STATIC.iterdir()); print(names); "
        "assert {'index.html', 'dashboard.js', 'dashboard.css'} <= set(names), names; "
        "import av, starlette, uvicorn, websockets; "
        "av.codec.Codec('libx264', 'w')"
    )
    proc = run(edge_venv, "python", "-c", check)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_the_hog_people_detector_ships_in_the_edge_install(edge_venv):
    """OpenCV's default HOG people model is package data: `--track hog` finds its weights in the
    installed package, with no download."""
    check = (
        "import numpy as np; from art_edge.video.detect import open_detector; "
        "d = open_detector('hog'); assert d.hog.svm.shape == (3781,), d.hog.svm.shape; "
        "print(d.detect(np.zeros((256, 192, 3), np.uint8)).shape)"
    )
    proc = run(edge_venv, "python", "-c", check)
    assert proc.returncode == 0, proc.stderr[-3000:]
