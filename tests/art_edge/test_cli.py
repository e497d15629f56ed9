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


def test_the_config_that_print_config_writes_runs_the_same_rig(engine_dir, synth, tmp_path, capsys):
    """--print-config from a two-camera command line, then `art-edge --config` with that file:
    the same settings, cameras, regions and engine flags, and a run that makes the same
    decisions; a flag given beside the file wins over it."""
    from art_edge import cli
    from art_edge.rig.config import RigConfig, from_flags

    val, video = synth / "val.csv", sorted((synth / "videos").glob("val_*.mp4"))[0]
    flags = ["--engine", engine_dir, "--source", f"list={val}", "--source", f"one={video}",
             "--roi", "one=0.1,0.1,0.8,0.8", "--window", "12", "--stride", "2",
             "--min-score", "0.3", "--segments", tmp_path / "segments.jsonl", "--events",
             tmp_path / "events.jsonl", "--emit", "decision", "--head-threads", "1",
             "--encoder-workers", "2", "--headless", "--rotate", "10MB", "--stop-timeout", "3"]  # fmt: skip
    flags = [str(f) for f in flags]
    assert cli.main([*flags, "--print-config"]) == 0
    rig_toml = tmp_path / "rig.toml"
    rig_toml.write_text(capsys.readouterr().out)
    by_flags, by_file = cli.parse_args(flags)[0], cli.parse_args(["--config", str(rig_toml)])[0]
    assert RigConfig.from_flags(by_flags) == RigConfig.from_flags(by_file)
    assert from_flags(cli.EngineFlags, by_flags) == from_flags(cli.EngineFlags, by_file)
    assert cli.named_sources(by_flags) == cli.named_sources(by_file) == [
        ("list", str(val)), ("one", str(video))]  # fmt: skip
    assert cli.rois(by_flags) == cli.rois(by_file) and by_file.engine == str(engine_dir)
    overridden = cli.parse_args(["--config", str(rig_toml), "--stride", "3", "--source", "x=0"])[0]
    assert overridden.stride == 3 and overridden.source == ["x=0"] and overridden.window == 12
    summaries = []
    for args in (flags, ["--config", str(rig_toml)]):
        summary = tmp_path / f"summary{len(summaries)}.json"
        assert cli.main([*args, "--summary", str(summary)]) == 0
        summaries.append(json.loads(summary.read_text()))
    runs = [[], []]
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "run":
            runs.append([])
        elif event["type"] == "decision":
            runs[-1].append((event["camera"], event["frame"], event["label"]))
    first, second = runs[-2:]
    assert first and sorted(first) == sorted(second)  # both runs appended, the same decisions
    for name in ("list", "one"):
        a, b = (s["cameras"][name] for s in summaries)
        assert a["frames"] == b["frames"] > 0 and a["decisions"] == b["decisions"]


def test_print_config_writes_paths_that_hold_from_any_folder(engine_dir, synth, tmp_path, capsys,
                                                            monkeypatch):  # fmt: skip
    """A service runs the file in its own folder: relative paths on the command line are written
    absolute; URIs, camera indexes and ${NAME} references are written as given."""
    from art_edge import cli

    monkeypatch.chdir(synth)
    monkeypatch.setenv("MQTT_PASSWORD", "not-in-the-file")
    flags = ["--engine", str(engine_dir), "--source", "one=val.csv", "--source", "cam=0",
             "--source", "b=synthetic://?frames=8", "--events", "ev.jsonl", "--events",
             "mqtt://rig:${MQTT_PASSWORD}@broker/t", "--segments", "out/segments.jsonl",
             "--headless"]  # fmt: skip
    assert cli.main([*flags, "--print-config"]) == 0
    (tmp_path / "rig.toml").write_text(capsys.readouterr().out)
    assert "not-in-the-file" not in (tmp_path / "rig.toml").read_text()
    monkeypatch.chdir(tmp_path)
    by_file = cli.parse_args(["--config", str(tmp_path / "rig.toml")])[0]
    assert cli.named_sources(by_file) == [
        ("one", str(synth / "val.csv")), ("cam", "0"), ("b", "synthetic://?frames=8")]  # fmt: skip
    assert by_file.events == [str(synth / "ev.jsonl"), "mqtt://rig:${MQTT_PASSWORD}@broker/t"]
    assert by_file.segments == str(synth / "out" / "segments.jsonl")
