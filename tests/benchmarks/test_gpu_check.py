"""benchmarks/gpu_check.py without a GPU: it refuses in one line, and its parts that do not need
one (the model's timing with each route, the training step, the user's commands) run on the CPU,
so that a GPU run finds its plumbing sound."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpu_check

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: gpu_check runs instead of refusing")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: benchmarks/gpu_check.py needs an NVIDIA GPU with CUDA (torch sees none)"
    ]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def tiny_model():
    return gpu_check.random_model(torch, "art-tiny", "cpu")


def test_the_model_figures_measure_every_route(tiny_model):
    got = gpu_check.model_figures(torch, tiny_model, 2, ("float32",), repeats=2)
    row = got["float32"]
    assert set(row) >= {"reference", "routed", "fused", "encoder_alone_clips_per_s"}
    assert all(row[r]["clips_per_s"] > 0 and row[r]["one_clip_ms"] > 0 for r in gpu_check.ROUTES)
    assert row["fused_over_reference"] == pytest.approx(
        row["routed"]["clips_per_s"] / row["reference"]["clips_per_s"]
    )
    assert row["routed"]["decisions"] == []  # nothing is routed to a kernel on the CPU


def test_the_training_step_runs_art_trains_step(tiny_model):
    got = gpu_check.training_step(torch, tiny_model, batch=2, steps=1)
    assert got["clips_per_s"] > 0 and got["precision"] == "fp32"


def test_what_did_not_pass_is_named():
    report = {
        "tests": {"exit_code": 1, "summary": "1 failed, 19 passed"},
        "sanitizer": {
            "memcheck": {"exit_code": 1, "status": "ran"},
            "racecheck": {"exit_code": 1, "status": "unsupported"},  # says nothing of the kernels
        },
        "commands": {"art-train": {"exit_code": 0}, "torchrun": {"exit_code": 1}},
    }
    assert gpu_check.failed(report, {"kernels": "RuntimeError: x"}) == [
        "section kernels",
        "GPU tests (1 failed, 19 passed)",
        "compute-sanitizer memcheck",
        "command torchrun",
    ]


@pytest.mark.slow
def test_the_users_commands_run_as_written(tmp_path):
    """The smoke run's command lines, on the CPU: art-synth, art-train, art-eval,
    art-build-engine (INT8) and torchrun each exit 0."""
    got = gpu_check.user_commands(tmp_path, device="cpu")
    assert list(got) == ["art-synth", "art-train", "art-eval", "art-build-engine", "torchrun"]
    assert {name: row["exit_code"] for name, row in got.items()} == dict.fromkeys(got, 0), got


def test_the_kernel_benchmark_without_a_gpu_says_so_and_exits_2(capsys):
    import kernels

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the kernels are timed instead")
    assert kernels.main(["--out", "unused.json"]) == 2
    assert "needs an NVIDIA GPU" in capsys.readouterr().err
