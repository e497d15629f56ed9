"""Fixtures shared by every test folder: a small synthetic dataset, a run trained on it, an engine dir."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]

# A very small ART so that a training test takes seconds on 2 cores.
TRAINED_EPOCHS = 6
SMALL = [
    "--set",
    "image_size=32",
    "--set",
    "num_frames=4",
    "--set",
    "dim=32",
    "--set",
    "num_heads=2",
    "--set",
    "batch_size=4",
    "--set",
    "schedule=step",
    "--set",
    "warmup_epochs=0",
    "--set",
    "restarts=1",
    # art-tiny's read-out of each region's motion (region_position, a 16×16 cross-covariance per
    # tracklet) needed more than 12 clips and 2 epochs to leave chance: with it this model stayed on
    # one class at scores ~0.27, and the live tests need labels that change, the INT8 gate logits
    # that are not tied. So the small ART reads its tracklets in time order; the motion read-out
    # has tests of its own (test_model.py, test_export_runtime.py) and `make demo` gates it in INT8.
    "--set",
    "motion_dim=0",
    "--set",
    "region_position=false",
    "--set",
    "tracklet_readout=ordered",
]


@pytest.fixture(scope="session")
def small_args():
    """art-train flags of the very small ART the tests train."""
    return list(SMALL)


@pytest.fixture(scope="session")
def train_run():
    """train_run(synth, out, *extra_flags) → art-train's exit code, for the small ART."""
    return train_small


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A small synthetic fine-grained dataset (real MP4 files), shared by the session."""
    from art_edge.synthetic import make_dataset

    return make_dataset(
        tmp_path_factory.mktemp("synth") / "data",
        per_class=3,
        val_per_class=2,
        size=72,
        num_frames=16,
        num_classes=4,
        seed=1,
        progress=False,
    )


def data_args(synth) -> list:
    """--train, --val and --classes of the synthetic dataset."""
    return [
        "--train",
        synth / "train.csv",
        "--val",
        synth / "val.csv",
        "--classes",
        synth / "classes.txt",
    ]


@pytest.fixture(scope="session")
def synth_args(synth):
    return data_args(synth)


def train_small(synth, out, *extra):
    from art_train import train

    args = [
        "--config",
        "art-tiny",
        *data_args(synth),
        "--out",
        out,
        *SMALL,
        *extra,
    ]
    return train.main([str(a) for a in args])


@pytest.fixture(scope="session")
def trained(synth, tmp_path_factory):
    """A run dir of the small ART, trained for 6 epochs (well under a second each): from the
    tower art-tiny ships, its labels then differ from clip to clip because it has begun to tell
    the classes apart, which the live tests need (after 2 they hardly did)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_small(synth, out, "--epochs", TRAINED_EPOCHS) == 0
    return out


@pytest.fixture(scope="session")
def engine_dir(trained, tmp_path_factory):
    """An FP32 ONNX Runtime engine dir built from `trained`."""
    from art_train.build_engine import build_engine

    out = tmp_path_factory.mktemp("engine") / "engine"
    build_engine(trained, out, precision="fp32", backend="onnxruntime", log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def demo_engine(tmp_path_factory):
    """The demo's engine: art-tiny trained by `make demo`'s recipe on art-synth's six classes.
    demo/engine when `make demo` made it (or the dir ART_DEMO_ENGINE names); else made here by the
    demo's own steps (its dataset, 10 epochs of art-tiny from the shipped tower), in FP32 without
    the INT8 calibration and the demo's playback: about two minutes on 2 cores."""
    given = Path(os.environ.get("ART_DEMO_ENGINE") or ROOT / "demo" / "engine")
    if (given / "manifest.json").is_file():
        return given
    from art_train import demo

    out = tmp_path_factory.mktemp("demo")
    demo.prepare_data(out / "data", per_class=60)
    demo.train_tiny(out / "data", out / "run", None)
    demo.build(out / "data", out / "run", out / "engine", "fp32")
    return out / "engine"
