"""`art-edge --metrics HOST:PORT`: a Prometheus endpoint (prometheus_client) and a health check.

    GET /metrics   per-camera frames, FPS, dropped, corrupt, reconnects, decisions, the decision
                   latency histogram; per-sink events sent, failed and dropped
    GET /healthz   200 while every camera delivered a frame in the last `stale_after` seconds,
                   503 (naming the silent cameras) otherwise

The counters are read from a snapshot of the rig when Prometheus scrapes (nothing is done per
frame), except the latency histogram, observed at each decision.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from art_edge.errors import UserError
from art_edge.files import parse_host_port
from art_edge.rig.observers import RigObserver

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # a scrape every few seconds is not news
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


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
        sinks' sent, failed and dropped counts by sink."""
        from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app

        self.snapshot, self.stale_after = snapshot, stale_after
        self.host, self.port = parse_host_port(address, "--metrics")
        self.registry = CollectorRegistry()
        self.registry.register(RigCollector(snapshot, sink_counts))
        self.latency = Histogram(
            "art_decision_latency_seconds",
            "capture of a decision's newest frame → decision made",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.metrics_app = make_wsgi_app(self.registry)
        try:
            self.server = make_server(
                self.host, self.port, self.app, server_class=_Server, handler_class=_Quiet
            )
        except OSError as e:
            raise UserError(
                f"--metrics {address}: cannot listen there ({e.strerror}); pick a free port"
            ) from None
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="art-edge:metrics", daemon=True
        )

    def start(self):
        self.thread.start()

    def on_decision(self, camera: str, decision):
        self.latency.labels(camera).observe(decision.latency_ms / 1000)

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            cameras = self.snapshot().cameras
            silent = [c.name for c in cameras if c.silent(self.stale_after)]
            status = "503 Service Unavailable" if silent else "200 OK"
            body = f"no frame for {self.stale_after:g} s: {', '.join(silent)}" if silent else "ok"
            start_response(status, [("Content-Type", "text/plain")])
            return [body.encode() + b"\n"]
        if path in ("/metrics", "/"):
            return self.metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics or /healthz\n"]

    def close(self):
        if self.thread.is_alive():  # shutdown() waits for a serve_forever that never started
            self.server.shutdown()
        self.server.server_close()
