"""SIGTERM (what `timeout`, `docker stop` and CI send) in the middle of the work of the commands
that write folders: the command stops like on Ctrl-C, exits 130, and leaves nothing half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def terminate_when(cmd, ready, cwd, timeout=120):
    """Start `cmd`, send SIGTERM once `ready()` holds; → (exit code, stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", *map(str, cmd)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"the command ended or stalled before the signal: {proc.communicate()[1][-2000:]}"
            )
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def hidden(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_sigterm_during_art_synth_leaves_nothing(tmp_path):
    out = tmp_path / "data"
    code, err = terminate_when(
        ["art_edge.synthetic", "--out", out, "--per-class", 200],
        lambda: any(p.name.startswith(".data.synth-") for p in tmp_path.iterdir()),
        tmp_path,
    )
    assert code == 130 and "interrupted" in err, (code, err[-2000:])
    assert not out.exists() and hidden(tmp_path) == []


@pytest.mark.slow
def test_sigterm_during_art_build_engine_leaves_nothing(trained, synth, tmp_path):
    out = tmp_path / "engine"
    code, err = terminate_when(
        [
            "art_train.build_engine",
            "--ckpt",
            trained,
            "--out",
            out,
            "--precision",
            "int8",
            "--calib",
            synth / "train.csv",
            "--holdout",
            synth / "val.csv",
        ],
        lambda: any((p / "frame_encoder.onnx").is_file() for p in tmp_path.glob(".engine.*")),
        tmp_path,
    )
    assert code == 130 and "interrupted" in err
    assert not out.exists() and hidden(tmp_path) == []


@pytest.mark.slow
def test_sigterm_during_art_train_keeps_the_run_dir_consistent(synth_args, small_args, tmp_path):
    out = tmp_path / "run"
    args = ["art_train.train", *synth_args, "--out", out, *small_args]
    # stopped before its first checkpoint: the run dir it created is gone
    code, err = terminate_when([*args, "--epochs", 50], lambda: out.is_dir(), tmp_path)
    assert code == 130 and "interrupted" in err and not out.exists()
    # stopped after one: a complete checkpoint, resumable, and no partial file
    code, err = terminate_when(
        [*args, "--epochs", 50], lambda: (out / "last.pt").is_file(), tmp_path
    )
    assert code == 130
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    assert hidden(out) == []


def test_sigterm_with_a_stuck_output_ends_in_time_and_writes_the_summary(engine_dir, tmp_path):
    """art-edge with one events file on a FIFO nobody drains (its writer is stuck for good)
    beside a plain one: SIGTERM ends it within --stop-timeout and a few seconds, exit 0, the
    summary written (the stuck output's events counted lost), the plain file complete."""
    fifo, plain, summary = tmp_path / "stuck.jsonl", tmp_path / "events.jsonl", tmp_path / "s.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "art_edge.cli", "--engine", str(engine_dir), "--source",
         "synthetic://?frames=16&size=48&fps=30", "--headless", "--events", str(fifo),
         "--events", str(plain), "--emit", "decision", "--stop-timeout", "2",
         "--summary", str(summary)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (plain.is_file() and plain.read_text().count("\n") >= 6):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 0, err[-2000:]
    assert took < 2 + 6, f"shutdown took {took:.1f} s"
    import json

    doc = json.loads(summary.read_text())
    lines = plain.read_text().splitlines()
    assert len(lines) == 1 + doc["events"]  # the run's header, then every event
    stuck = doc["outputs"][str(fifo)]
    assert stuck["written"] == 0 and stuck["lost"] + stuck["dropped"] == doc["events"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point of it
def test_a_sigterm_swallowed_by_a_finalizer_still_commits_nothing(tmp_path):
    """Python drops an exception that a signal handler raises inside a finalizer (a writer's
    __del__, say): the command went on and could finish with exit 0 after SIGTERM. The artifact
    is not committed and the command still ends as interrupted."""
    from art_edge.errors import _terminate, cli_entry
    from art_edge.files import atomic_dir

    class Finalized:
        def __del__(self):
            _terminate(signal.SIGTERM, None)  # the handler, run inside a finalizer

    @cli_entry
    def command(argv):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "clip.mp4").write_text("x")
            Finalized()  # collected at once: its KeyboardInterrupt is "ignored" by Python
        return 0

    assert command([]) == 130
    assert list(tmp_path.iterdir()) == []
