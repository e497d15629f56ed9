"""benchmarks/unattended.py, short: one cycle of each fault among the real parts (RTSP cameras,
Mosquitto, a webhook, a FIFO, a small tmpfs), then SIGTERM: no event lost, every clip plays,
health saw each fault and came back, the shutdown within its bound. The long run (24 cycles, the
memory and descriptor figures) is the benchmark's."""

import json
import shutil
from pathlib import Path

import pytest

import unattended
from unattended_parts import MOSQUITTO


@pytest.mark.slow
def test_one_cycle_of_each_fault_with_real_parts(tmp_path, rtsp_server):
    if not Path(MOSQUITTO).exists() or shutil.which("mount") is None:
        pytest.skip("mosquitto (make test installs it) or mount is missing")
    rtsp_server.kill()  # only its check was needed: the benchmark starts its own cameras
    out = tmp_path / "unattended.json"
    unattended.main(["--cycles", "6", "--fault-seconds", "5", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["events_lost"] == 0 and doc["events"]["events_total"] > 100
    assert doc["clips_unreadable"] == 0
    assert doc["events_left_in_spools"] == 0  # all delivered: nothing for the next run to re-send
    assert doc["fault_cycles"] == 6  # every fault repaired, health ok again after each
    assert all(c["degraded_seen"] for c in doc["cycles"]), doc["cycles"]
    assert doc["camera_absent_at_start"]["late_ok_after_start"]
    assert doc["camera_absent_at_start"]["rig_while_absent"] == "degraded"
    stopped = doc["shutdown"]
    assert stopped["exit_code"] == 0 and stopped["shutdown_seconds"] < stopped["shutdown_bound_s"]
    assert abs(doc["fd_growth"]) <= 1
