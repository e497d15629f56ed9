"""art-edge, the command: bad input in one line, Ctrl-C, real footage end to end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "art_edge.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_bad_inputs_are_one_line(engine_dir, tmp_path):
    cases = [
        (["--engine", engine_dir, "--camera", "57", "--headless"], "cannot open camera 57"),
        (["--engine", tmp_path / "nope", "--camera", "0"], "engine dir not found"),
        (["--engine", engine_dir, "--video", tmp_path / "missing.mp4"], "video file not found"),
        (
            ["--engine", engine_dir, "--source", "synthetic://", "--headless", "--output", "o.mp4"],
            "--headless draws",
        ),
    ]
    for args, message in cases:
        r = run_cli(*args)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(err) == 1 and message in err[0], (args, r.stderr)


def test_cli_unreadable_file_is_one_line(engine_dir, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    r = run_cli("--engine", engine_dir, "--video", bad, "--headless")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "cannot read" in r.stderr


def test_sigint_finishes_cleanly(engine_dir, tmp_path):
    out, events = tmp_path / "live.mp4", tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "art_edge.cli",
            "--engine",
            str(engine_dir),
            "--source",
            "synthetic://?frames=16&size=48&fps=30",
            "--output",
            str(out),
            "--events",
            str(events),
            "--emit",
            "decision",
            "--summary",
            str(tmp_path / "s.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (events.is_file() and events.read_text().count("\n") >= 4):
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stderr.read() if proc.poll() else "slow"
        )
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"] > 0
    assert len(events.read_text().splitlines()) == 1 + summary["events"] >= 4  # the run header
    assert "FPS" in stdout


def test_real_footage_through_the_cli(engine_dir, tmp_path, real_clip):
    """Camera footage (640×272, 25 FPS) from a package, through art-edge end to end."""
    video = real_clip("bikes.mp4")
    out, events, summary = tmp_path / "bikes.mp4", tmp_path / "ev.jsonl", tmp_path / "s.json"
    r = run_cli(
        "--engine",
        engine_dir,
        "--video",
        video,
        "--max-frames",
        60,
        "--output",
        out,
        "--events",
        events,
        "--emit",
        "decision",
        "--summary",
        summary,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert (
        s["frames"] == 60 and s["decisions"] == 15 and s["dropped"] == 0
    )  # a decision every 4 frames
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines[0]["type"] == "run" and len(lines) == 1 + s["decisions"]
