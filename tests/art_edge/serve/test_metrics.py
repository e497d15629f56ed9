"""/healthz from snapshots of the rig."""

from types import SimpleNamespace

from art_edge.rig.report import CameraSnapshot
from art_edge.serve.metrics import MetricsServer

from benchlib import free_port


def test_healthz_names_a_silent_camera():

    def camera(name: str, idle_s: float) -> CameraSnapshot:
        counts = dict.fromkeys(("frames", "decisions", "dropped", "decisions_skipped", "corrupt",
                                "truncated", "reconnects", "clips_scored", "clips_correct"), 0)  # fmt: skip
        return CameraSnapshot(name, "live", **counts, fps=0.0, frame_latency_ms=(None, None),
                              decision_latency_ms=(None, None), encode_ms_p50=None,
                              head_ms_p50=None, idle_s=idle_s)  # fmt: skip

    snap = SimpleNamespace(cameras=(camera("pool", 60.0), camera("board", 0.1)))
    server = MetricsServer(lambda: snap, f"127.0.0.1:{free_port()}", stale_after=10)
    try:
        statuses = []
        body = server.app(
            {"PATH_INFO": "/healthz"}, lambda status, headers: statuses.append(status)
        )
        assert (
            statuses == ["503 Service Unavailable"]
            and b"pool" in body[0]
            and b"board" not in body[0]
        )
    finally:
        server.close()
