"""/healthz from snapshots of the rig."""

import json
from types import SimpleNamespace

from art_edge.rig.report import CameraSnapshot
from art_edge.serve.metrics import MetricsServer

from benchlib import free_port


def camera(name: str, idle_s: float) -> CameraSnapshot:
    counts = dict.fromkeys(("frames", "decisions", "dropped", "decisions_skipped", "corrupt",
                            "truncated", "reconnects", "clips_scored", "clips_correct"), 0)  # fmt: skip
    return CameraSnapshot(name, "live", **counts, fps=0.0, frame_latency_ms=(None, None),
                          decision_latency_ms=(None, None), encode_ms_p50=None,
                          head_ms_p50=None, idle_s=idle_s, since_decision_s=idle_s)  # fmt: skip


def healthz(*cameras) -> tuple[list, dict]:
    snap = SimpleNamespace(cameras=cameras, outputs=(), ended=None, loop_idle_s=0.0)
    server = MetricsServer(lambda: snap, f"127.0.0.1:{free_port()}", stale_after=10)
    try:
        statuses = []
        body = server.app(
            {"PATH_INFO": "/healthz"}, lambda status, headers: statuses.append(status)
        )
        return statuses, json.loads(body[0])
    finally:
        server.close()


def test_healthz_names_a_silent_camera():
    """One camera of two silent: the rig is degraded (200), that camera failed, named."""
    statuses, report = healthz(camera("pool", 60.0), camera("board", 0.1))
    assert statuses == ["200 OK"] and report["status"] == "degraded"
    assert report["cameras"]["pool"]["status"] == "failed"
    assert "no frame for 60 s" in report["cameras"]["pool"]["reason"]
    assert report["cameras"]["board"]["status"] == "ok"
    statuses, report = healthz(camera("pool", 60.0))  # no camera decided: failed, 503
    assert statuses == ["503 Service Unavailable"] and report["status"] == "failed"
