"""/healthz from snapshots of the rig, over real HTTP."""

import urllib.error
import urllib.request
from types import SimpleNamespace

from art_edge.rig.report import CameraSnapshot
from art_edge.serve.metrics import MetricsServer

from benchlib import free_port


def camera(name: str, idle_s: float) -> CameraSnapshot:
    counts = dict.fromkeys(("frames", "decisions", "dropped", "decisions_skipped", "corrupt",
                            "truncated", "reconnects", "clips_scored", "clips_correct"), 0)  # fmt: skip
    return CameraSnapshot(name, "live", **counts, fps=0.0, frame_latency_ms=(None, None),
                          decision_latency_ms=(None, None), encode_ms_p50=None,
                          head_ms_p50=None, idle_s=idle_s)  # fmt: skip


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_healthz_names_a_silent_camera():
    snap = SimpleNamespace(cameras=(camera("pool", 60.0), camera("board", 0.1)))
    port = free_port()
    server = MetricsServer(lambda: snap, f"127.0.0.1:{port}", stale_after=10)
    server.start()
    try:
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and "pool" in body and "board" not in body
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and 'art_frames_total{camera="pool"} 0.0' in body
        assert get(f"http://127.0.0.1:{port}/nothing")[0] == 404
    finally:
        server.close()
