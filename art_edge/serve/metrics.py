"""`art-edge --metrics HOST:PORT`: a Prometheus endpoint (prometheus_client) and a health check.

    GET /metrics   per-camera frames, FPS, dropped, corrupt, reconnects, decisions, the decision
                   latency histogram; per-sink events sent, failed and dropped
    GET /healthz   200 while every camera delivered a frame in the last `stale_after` seconds,
                   503 (naming the silent cameras) otherwise

The counters are read from a snapshot of the rig when Prometheus scrapes (nothing is done per
frame), except the latency histogram, observed at each decision. Served by uvicorn behind the
limits of art_edge.serve.guard (at most METRICS_CONNECTIONS connections); bound to localhost,
the Host header must name it (a web page cannot reach it by DNS rebinding). Sinks appear by
their masked names: no credential or query value of a sink's URI is ever a label.
"""

from __future__ import annotations

from art_edge.rig.observers import RigObserver
from art_edge.serve.guard import GuardedServer, Hosts, RequestCheck, respond

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METRICS_CONNECTIONS = 32  # Prometheus and a health check or two need a few


class RigCollector:
    """Reads a snapshot of the rig, and the sinks' counts, at scrape time."""

    def __init__(self, snapshot, sink_counts):
        self.snapshot, self.sink_counts = snapshot, sink_counts

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
        for cam in self.snapshot().cameras:
            for key, value in cam.counters().items():
                per_camera[key].add_metric([cam.name], value)
        yield from per_camera.values()
        sinks = [
            CounterMetricFamily(f"art_events_{k}", f"events {k}", labels=["sink"])
            for k in ("sent", "failed", "dropped")
        ]
        for name, counts in self.sink_counts().items():
            for family, key in zip(sinks, ("sent", "failed", "dropped")):
                family.add_metric([name], counts[key])
        yield from sinks


class MetricsServer(RigObserver):
    """An output of the rig: the decision latency histogram is observed at each decision; the
    rest is read from snapshots when Prometheus scrapes."""

    def __init__(self, snapshot, address: str, stale_after: float = 10.0, sink_counts=dict):
        """`snapshot()`: the rig's (art_edge.rig.report.RigSnapshot); `sink_counts()`: the event
        sinks' sent, failed and dropped counts by sink (by their masked names)."""
        from prometheus_client import CollectorRegistry, Histogram, make_asgi_app

        self.snapshot, self.stale_after = snapshot, stale_after
        self.registry = CollectorRegistry()
        self.registry.register(RigCollector(snapshot, sink_counts))
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
        hosts = Hosts(self.host, self.port) if self.guard.loopback else None
        self.app = RequestCheck(self.route, hosts)

    def start(self):
        self.guard.start(self.app, "art-edge:metrics")

    def on_decision(self, camera: str, decision):
        self.latency.labels(camera).observe(decision.latency_ms / 1000)

    def health(self) -> tuple[int, str]:
        """/healthz: (200, "ok") while every camera delivers frames, else 503 naming the others."""
        silent = [c.name for c in self.snapshot().cameras if c.silent(self.stale_after)]
        if silent:
            return 503, f"no frame for {self.stale_after:g} s: {', '.join(silent)}"
        return 200, "ok"

    async def route(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/healthz":
            return await respond(scope, send, *self.health())
        if path in ("/metrics", "/"):
            return await self.metrics_app(scope, receive, send)
        return await respond(scope, send, 404, "/metrics or /healthz")

    def close(self):
        self.guard.close()
