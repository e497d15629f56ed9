"""`art-edge --metrics HOST:PORT`: a Prometheus endpoint (prometheus_client) and a health check.

    GET /metrics   per-camera frames, FPS, dropped, corrupt, reconnects, decisions, the decision
                   latency histogram; per-sink events sent, failed and dropped
    GET /healthz   JSON: ok, degraded or failed, for the rig, each camera and each output, from
                   recognition's progress (art_edge.rig.health); 200 while the rig is ok or
                   degraded, 503 when it failed (no camera is being decided)

The counters are read from a snapshot of the rig when Prometheus scrapes (nothing is done per
frame), except the latency histogram, observed at each decision. Served by uvicorn behind the
limits of art_edge.serve.guard (at most METRICS_CONNECTIONS connections); bound to localhost,
the Host header must name it (a web page cannot reach it by DNS rebinding). Sinks appear by
their masked names: no credential or query value of a sink's URI is ever a label.
"""

from __future__ import annotations

import json

from art_edge.rig.health import rig_health
from art_edge.rig.observers import RigObserver
from art_edge.rig.outlets import DEGRADED, FAILED, OK
from art_edge.serve.guard import GuardedServer, Hosts, RequestCheck, respond

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METRICS_CONNECTIONS = 32  # Prometheus and a health check or two need a few


class RigCollector:
    """Reads a snapshot of the rig, and the sinks' counts, at scrape time."""

    def __init__(self, snapshot, sink_counts, stale_after: float | None = None):
        """`stale_after`: the health gauges' (art_edge.rig.health; None: none)."""
        self.snapshot, self.sink_counts, self.stale_after = snapshot, sink_counts, stale_after

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        per_camera = {
            "frames": CounterMetricFamily("art_frames", "frames encoded", labels=["camera"]),
            "decisions": CounterMetricFamily("art_decisions", "decisions made", labels=["camera"]),
            "dropped": CounterMetricFamily(
                "art_dropped_frames", "frames dropped", labels=["camera"]
            ),
            "corrupt": CounterMetricFamily(
                "art_corrupt_frames", "frames that did not decode", labels=["camera"]
            ),
            "reconnects": CounterMetricFamily(
                "art_reconnects", "camera reconnects", labels=["camera"]
            ),
            "fps": GaugeMetricFamily("art_fps", "frames per second, recent", labels=["camera"]),
        }
        tracks = GaugeMetricFamily("art_tracks", "live tracks served (--track)", labels=["camera"])
        left_out = GaugeMetricFamily(
            "art_tracks_left_out", "live tracks beyond --max-tracks", labels=["camera"]
        )
        for cam in self.snapshot().cameras:
            for key, value in cam.counters().items():
                per_camera[key].add_metric([cam.name], value)
            if cam.tracks is not None:
                tracks.add_metric([cam.name], len(cam.tracks))
                left_out.add_metric([cam.name], cam.tracks_left_out)
        yield from per_camera.values()
        yield from (tracks, left_out)
        sinks = [
            CounterMetricFamily(f"art_events_{k}", f"events {k}", labels=["sink"])
            for k in ("sent", "failed", "dropped")
        ]
        for name, counts in self.sink_counts().items():
            for family, key in zip(sinks, ("sent", "failed", "dropped")):
                family.add_metric([name], counts[key])
        yield from sinks
        if self.stale_after is not None:
            yield from health_families(self.snapshot(), self.stale_after)


def health_families(snap, stale_after: float):
    """Gauges of health, read from the same report as /healthz: a camera that stops is 0 (its
    art_fps falls to 0 too), never its last value."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    report = rig_health(snap, stale_after)
    level = {OK: 0, DEGRADED: 1, FAILED: 2}
    rig = GaugeMetricFamily("art_health", "the rig: 0 ok, 1 degraded, 2 failed")
    rig.add_metric([], level[report["status"]])
    up = GaugeMetricFamily(
        "art_camera_up", "1 while the camera is being decided", labels=["camera"]
    )
    since = GaugeMetricFamily("art_seconds_since_decision", "since the camera's last decision",
                              labels=["camera"])  # fmt: skip
    for name, cam in report["cameras"].items():
        up.add_metric([name], int(cam["status"] != FAILED))
        since.add_metric([name], cam["since_decision_s"])
    out_up = GaugeMetricFamily("art_output_up", "1 while the output is not failed (stuck)",
                               labels=["output"])  # fmt: skip
    out_ok = GaugeMetricFamily("art_output_ok", "1 while the output is ok (not paused, spooling "
                               "or dropping)", labels=["output"])  # fmt: skip
    counts = {k: CounterMetricFamily(f"art_output_{k}", f"items {k} by the output", labels=["output"])
              for k in ("dropped", "errors")}  # fmt: skip
    pending = GaugeMetricFamily("art_output_pending", "items waiting (queued or spooled)",
                                labels=["output"])  # fmt: skip
    for name, out in report["outputs"].items():
        out_up.add_metric([name], int(out["status"] != FAILED))
        out_ok.add_metric([name], int(out["status"] == OK))
        pending.add_metric([name], out.get("pending", 0))
        for key, family in counts.items():
            family.add_metric([name], out.get(key, 0))
    yield from (rig, up, since, out_up, out_ok, pending, *counts.values())


class MetricsServer(RigObserver):
    """An output of the rig: the decision latency histogram is observed at each decision; the
    rest is read from snapshots when Prometheus scrapes."""

    def __init__(self, snapshot, address: str, stale_after: float = 10.0, sink_counts=dict):
        """`snapshot()`: the rig's (art_edge.rig.report.RigSnapshot); `sink_counts()`: the event
        sinks' sent, failed and dropped counts by sink (by their masked names)."""
        from prometheus_client import CollectorRegistry, Histogram, make_asgi_app

        self.snapshot, self.stale_after = snapshot, stale_after
        self.registry = CollectorRegistry()
        self.registry.register(RigCollector(snapshot, sink_counts, stale_after))
        self.latency = Histogram(
            "art_decision_latency_seconds",
            "capture of a decision's newest frame → decision made",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.metrics_app = make_asgi_app(self.registry)
        self.guard = GuardedServer("--metrics", address, METRICS_CONNECTIONS)
        self.host, self.port = self.guard.host, self.guard.port
        hint = "bind --metrics to an address others can reach (e.g. a management network's)"
        hosts = Hosts(self.host, self.port, (), hint) if self.guard.loopback else None
        self.app = RequestCheck(self.route, hosts)

    def start(self):
        self.guard.start(self.app, "art-edge:metrics")

    def on_decision(self, camera: str, decision):
        self.latency.labels(camera).observe(decision.latency_ms / 1000)

    async def route(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/healthz":
            code, report = self.healthz()
            return await respond(scope, send, code, json.dumps(report), "application/json")
        if path in ("/metrics", "/"):
            return await self.metrics_app(scope, receive, send)
        return await respond(scope, send, 404, "/metrics or /healthz")

    def healthz(self) -> tuple[int, dict]:
        """/healthz: (200 while the rig is ok or degraded, 503 when failed; the report)."""
        report = rig_health(self.snapshot(), self.stale_after)
        return (503 if report["status"] == FAILED else 200), report

    def close(self):
        self.guard.close()
