"""/healthz and /metrics from snapshots of the rig, over real HTTP."""

import json
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
                          head_ms_p50=None, idle_s=idle_s, since_decision_s=idle_s)  # fmt: skip


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


class Served:
    """A MetricsServer of a fixed snapshot, on a free localhost port."""

    def __init__(self, *cameras):
        snap = SimpleNamespace(cameras=cameras, outputs=(), ended=None, loop_idle_s=0.0)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.server = MetricsServer(lambda: snap, self.url[7:], stale_after=10)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.close()

    def healthz(self) -> tuple[int, dict]:
        status, kind, body = get(f"{self.url}/healthz")
        assert kind.startswith("application/json"), kind
        return status, json.loads(body)


def test_healthz_names_a_silent_camera():
    """One camera of two silent: the rig is degraded (200), that camera failed, named."""
    with Served(camera("pool", 60.0), camera("board", 0.1)) as served:
        status, report = served.healthz()
        assert status == 200 and report["status"] == "degraded"
        assert report["cameras"]["pool"]["status"] == "failed"
        assert "no frame for 60 s" in report["cameras"]["pool"]["reason"]
        assert report["cameras"]["board"]["status"] == "ok"
        status, _, body = get(f"{served.url}/metrics")
        assert status == 200 and 'art_frames_total{camera="pool"} 0.0' in body
        assert get(f"{served.url}/nothing")[0] == 404
    with Served(camera("pool", 60.0)) as served:  # no camera decided: failed, 503
        status, report = served.healthz()
        assert status == 503 and report["status"] == "failed"
