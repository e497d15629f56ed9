"""art-edge as a systemd service: the notify protocol against a real datagram socket (the one
systemd gives in NOTIFY_SOCKET), a watchdog withheld while frames arrive undecided, and the unit
that --print-systemd-unit writes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from art_edge.rig.report import CameraSnapshot
from art_edge.serve.systemd import ServiceNotifier

ROOT = Path(__file__).resolve().parents[3]


class NotifySocket:
    """What systemd listens on for a Type=notify service: an AF_UNIX datagram socket."""

    def __init__(self, folder: Path):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list = []

    def receive(self, until, timeout: float = 120.0) -> list:
        """Datagrams (each a list of KEY=VALUE lines) until `until(messages)` holds."""
        deadline = time.monotonic() + timeout
        while not until(self.messages):
            assert time.monotonic() < deadline, f"no such message in {self.messages[-5:]}"
            try:
                self.messages.append(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                pass
        return self.messages

    def count(self, field: str) -> int:
        return sum(field in m for m in self.messages)


def test_the_notify_protocol_against_a_real_socket(engine_dir, tmp_path):
    """READY=1 once the rig runs, STATUS= with each camera's FPS, WATCHDOG=1 every
    WATCHDOG_USEC/2 while it decides, STOPPING=1 at SIGTERM; exit 0."""
    notify = NotifySocket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "art_edge.cli", "--engine", str(engine_dir), "--source",
         "pool=synthetic://?frames=16&size=48&fps=25", "--headless"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        notify.receive(lambda ms: any("READY=1" in m for m in ms))
        notify.receive(lambda ms: sum("WATCHDOG=1" in m for m in ms) >= 3)
        proc.send_signal(signal.SIGTERM)
        notify.receive(lambda ms: any("STOPPING=1" in m for m in ms), timeout=30)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    statuses = [f for m in notify.messages for f in m if f.startswith("STATUS=")]
    assert any(s.startswith("STATUS=ok: pool ") and " FPS" in s for s in statuses), statuses
    ready = next(i for i, m in enumerate(notify.messages) if "READY=1" in m)
    assert not any("WATCHDOG=1" in m for m in notify.messages[:ready])


def camera(idle_s: float, since_decision_s: float) -> CameraSnapshot:
    counts = dict.fromkeys(("frames", "decisions", "dropped", "decisions_skipped", "corrupt",
                            "truncated", "reconnects", "clips_scored", "clips_correct"), 0)  # fmt: skip
    return CameraSnapshot("pool", "live", **counts, fps=25.0, frame_latency_ms=(None, None),
                          decision_latency_ms=(None, None), encode_ms_p50=None, head_ms_p50=None,
                          idle_s=idle_s, since_decision_s=since_decision_s)  # fmt: skip


class Snap:
    def __init__(self, cam):
        self.cameras, self.outputs, self.ended, self.loop_idle_s, self.running = (
            (cam,), (), None, 0.0, True)  # fmt: skip


def test_the_watchdog_is_withheld_while_frames_arrive_undecided(tmp_path):
    """Frames arrive and no decision comes (a stuck head): STATUS goes on, WATCHDOG=1 stops (so
    systemd restarts the rig); decisions again: the pings come back."""
    notify, state = NotifySocket(tmp_path), {"cam": camera(0.1, 0.2)}
    notifier = ServiceNotifier(lambda: Snap(state["cam"]), notify.path, stale_after=1.0,
                               env={"WATCHDOG_USEC": "200000"})  # fmt: skip
    notifier.start()
    try:
        notify.receive(lambda ms: sum("WATCHDOG=1" in m for m in ms) >= 2, timeout=20)
        state["cam"] = camera(0.1, 30.0)  # frames, no decisions
        time.sleep(0.3)
        before, seen = notify.count("WATCHDOG=1"), len(notify.messages)
        notify.receive(lambda ms: len(ms) >= seen + 4, timeout=20)
        assert notify.count("WATCHDOG=1") == before
        assert any(f.startswith("STATUS=failed") for f in notify.messages[-1])
        state["cam"] = camera(0.1, 0.2)
        notify.receive(lambda ms: notify.count("WATCHDOG=1") > before, timeout=20)
    finally:
        notifier.close()
    notify.receive(lambda ms: ["STOPPING=1", "STATUS=stopping"] in ms, timeout=10)
    assert notify.messages[-1] == ["STOPPING=1", "STATUS=stopping"]  # the last word


def test_the_unit_that_print_systemd_unit_writes(tmp_path):
    from art_edge import cli

    config = tmp_path / "rig.toml"
    config.write_text('engine = "/opt/engine"\nsource = ["pool=rtsp://cam/stream"]\n'
                      "stop_timeout = 8.0\n")  # fmt: skip
    unit = tmp_path / "art-edge.service"
    out = subprocess.run([sys.executable, "-m", "art_edge.cli", "--config", str(config),
                          "--print-systemd-unit"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    unit.write_text(out.stdout)
    text = out.stdout
    for line in ("Type=notify", "Restart=on-failure", "WatchdogSec=30", "TimeoutStopSec=28",
                 f"ExecStart={sys.executable} -m art_edge.cli --config {config}"):  # fmt: skip
        assert line in text.splitlines(), line
    assert cli.main(["--print-systemd-unit"]) == 2  # it needs the --config file it runs
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not checked by systemd")
    check = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in check.stderr.splitlines() if str(unit) in line]
    assert not problems, check.stderr
