"""Where events go: a JSONL file, an MQTT broker, a webhook. Each sink takes event dicts from any
thread; a broker or endpoint that is away never stops recognition: the sink warns once, keeps a
bounded queue, and counts what it had to drop.

    sinks = open_sinks(["events.jsonl", "mqtt://localhost:1883/rig/pool", "http://box:8080/hook"])
    sinks.emit(decision_event(decision, classes, "pool"))
    sinks.close()            # flushes what can still be sent, within a few seconds
    sinks.counts()           # {"mqtt://…": {"sent": …, "failed": …, "dropped": …}, …}

As outputs of a rig (art_edge.rig.observers): EventSinks (`--events`: decisions by the --emit policy,
and segments) and SegmentLog (`--segments`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from urllib.parse import urlsplit

import numpy as np

from art_edge.errors import UserError, warn
from art_edge.files import check_writable
from art_edge.rig.observers import RigObserver
from art_edge.rig.outlets import Deadline, JsonlFile, Rotation, run_header
from art_edge.rig.report import OutputSnapshot

QUEUE_BOUND = 1000  # events held per network sink while its broker or endpoint is away


def decision_event(decision, classes: list[str], camera: str, wall_time: float | None = None):
    """One decision as the event sinks carry it: ts, camera, frame, label, score, top-k, saliency."""
    event = {
        "type": "decision",
        "ts": round(wall_time if wall_time is not None else time.time(), 3),
        "camera": camera,
        "frame": decision.frame,
        "label": classes[decision.label],
        "score": round(decision.score, 4),
        "topk": [{"label": classes[c], "score": round(p, 4)} for c, p in decision.topk],
        # per tracklet: its saliency over the T sampled frames (each row sums to 1)
        "saliency": np.round(decision.saliency.T.astype(np.float64), 4).tolist(),
        "changed": decision.changed,
        "latency_ms": round(decision.latency_ms, 1),
    }
    if decision.truth is not None and 0 <= decision.truth < len(classes):
        event["truth"] = classes[decision.truth]
    return event


class JsonlSink:
    """One JSON object a line (art_edge.rig.outlets.JsonlFile): appended, never truncated, a run
    header line at each start, rotated as `rotation` says; written from a thread of its own, so
    a full, read-only or stuck disk never holds up the rig (the file pauses with one warning,
    retries, and drops what its queue cannot hold, counted). Started by its first event."""

    def __init__(self, path, rotation: Rotation | None = None, header: dict | None = None,
                 stall_after: float = 10.0):  # fmt: skip
        self.name = str(path)
        self.file = JsonlFile(path, rotation or Rotation(), header or run_header(), QUEUE_BOUND,
                              stall_after)  # fmt: skip
        self._lock, self._started = threading.Lock(), False

    def emit(self, event: dict):
        if not self._started:
            with self._lock:
                if not self._started:
                    self.file.start()
                    self._started = True
        self.file.put(event)

    @property
    def sent(self) -> int:
        return self.file.written

    @property
    def failed(self) -> int:  # held when the run ended, never written
        return self.file.lost

    @property
    def dropped(self) -> int:
        return self.file.dropped

    def snapshot(self) -> OutputSnapshot:
        return self.file.snapshot()

    def close_within(self, deadline: Deadline):
        if self._started:
            self.file.close(deadline)

    def close(self, timeout: float = 5.0):
        self.close_within(Deadline(timeout))

    def discard(self):
        """Take back what this run wrote (a run that processed nothing)."""
        self.file.discard()


class WebhookSink:
    """A JSON POST per event from a thread of its own: retries with back-off (0.25 s doubling to
    4 s, `attempts` tries), then the event counts as failed; a bounded queue while the endpoint is
    away (the oldest event is dropped and counted when it is full)."""

    def __init__(self, url: str, attempts: int = 5, bound: int = QUEUE_BOUND, timeout: float = 5.0):
        self.name, self.url, self.attempts, self.timeout = url, url, attempts, timeout
        self.queue: queue.Queue = queue.Queue(maxsize=bound)
        self.sent = self.failed = self.dropped = 0
        self._warned, self._stop = False, threading.Event()
        self._thread = threading.Thread(target=self._run, name="art-edge:webhook", daemon=True)
        self._thread.start()

    def emit(self, event: dict):
        while True:
            try:
                self.queue.put_nowait(json.dumps(event).encode())
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self):
        while not (self._stop.is_set() and self.queue.empty()):
            try:
                body = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._post(body):
                self.sent += 1
            else:
                self.failed += 1

    def _post(self, body: bytes) -> bool:
        delay = 0.25
        for attempt in range(self.attempts):
            request = urllib.request.Request(
                self.url, body, {"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
            except (urllib.error.URLError, OSError) as e:
                if not self._warned:
                    self._warned = True
                    warn(f"webhook {self.url}: {e}; retrying, events queue (at most {QUEUE_BOUND})")
            if attempt + 1 < self.attempts and not self._stop.is_set():
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
        return False

    def close(self, timeout: float = 5.0):
        """Send what is queued for up to `timeout` seconds; what is left counts as failed."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        self.failed += self.queue.qsize()


class MqttSink:
    """QoS 1 publishes to `mqtt://HOST:PORT/TOPIC` through paho-mqtt, which reconnects by itself
    and keeps unacknowledged messages (at most `bound`) while the broker is away; a publish that
    finds the queue full is dropped and counted."""

    def __init__(self, uri: str, bound: int = QUEUE_BOUND):
        import paho.mqtt.client as mqtt

        self.name, (self.host, self.port, self.topic) = uri, parse_mqtt_uri(uri)
        self.sent = self.failed = self.dropped = 0
        self._warned = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.max_queued_messages_set(bound)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.sent += 1

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._warned:
            self._warned = True
            warn(f"MQTT broker {self.host}:{self.port} away ({reason_code}); reconnecting")

    def emit(self, event: dict):
        import paho.mqtt.client as mqtt

        info = self.client.publish(self.topic, json.dumps(event), qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1

    def close(self, timeout: float = 5.0):
        """Give queued messages a few seconds to go out, then disconnect."""
        deadline = time.monotonic() + timeout
        while self.client._out_messages and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.05)
        self.failed += len(self.client._out_messages)  # noqa: SLF001 (paho exposes no count)
        self.client.disconnect()
        self.client.loop_stop()


def parse_mqtt_uri(uri: str) -> tuple[str, int, str]:
    parts = urlsplit(uri)
    topic = parts.path.lstrip("/")
    try:
        port = parts.port or 1883
    except ValueError:
        port = None
    if parts.scheme != "mqtt" or not parts.hostname or not topic or port is None or "#" in topic:
        raise UserError(
            f"--events {uri}: an MQTT sink is mqtt://HOST[:PORT]/TOPIC (e.g. "
            "mqtt://localhost:1883/rig/events), with a topic and no wildcards"
        )
    return parts.hostname, port, topic


def check_http_uri(uri: str):
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        parts = None
    if parts is None or not parts.hostname:
        raise UserError(
            f"--events {uri}: a webhook is http(s)://HOST[:PORT]/PATH (e.g. http://localhost:8080/hook)"
        )


class Sinks:
    """The fan-out: every event to every sink; a failing sink never stops the others."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def emit(self, event: dict):
        for sink in self.sinks:
            sink.emit(event)

    def counts(self) -> dict:
        return {
            s.name: {"sent": s.sent, "failed": s.failed, "dropped": s.dropped} for s in self.sinks
        }

    def close(self):
        for sink in self.sinks:
            sink.close()


def check_sink_specs(specs: list[str]):
    """Every --events value checked before anything starts (a malformed URI is one line)."""
    for spec in specs:
        if spec.startswith("mqtt:"):
            parse_mqtt_uri(spec)
        elif spec.startswith(("http:", "https:")):
            check_http_uri(spec)
        elif "://" in spec:
            raise UserError(
                f"--events {spec}: give a .jsonl path, mqtt://HOST:PORT/TOPIC or http(s)://…"
            )
        else:
            check_writable(spec, "--events", is_file=True)


def open_sinks(specs: list[str]) -> Sinks:
    """The sinks of --events values that check_sink_specs took."""
    sinks = []
    for spec in specs:
        if spec.startswith("mqtt:"):
            sinks.append(MqttSink(spec))
        elif spec.startswith(("http:", "https:")):
            sinks.append(WebhookSink(spec))
        else:
            sinks.append(JsonlSink(spec))
    return Sinks(sinks)


class EventSinks(RigObserver):
    """`--events`: each decision the --emit policy picks ("change": the decided label changed;
    "decision": all of them) and each finished segment, to every sink; counted per camera."""

    def __init__(self, sinks: Sinks, classes: list[str], emit: str = "change"):
        self.sinks, self.classes, self.emit = sinks, classes, emit
        self.events: Counter = Counter()  # events per camera

    def on_decision(self, camera: str, decision):
        if self.emit == "decision" or decision.changed:
            self.sinks.emit(decision_event(decision, self.classes, camera))
            self.events[camera] += 1

    def on_segment(self, camera: str, record: dict):
        self.sinks.emit(record)
        self.events[camera] += 1

    def counts(self) -> dict:
        return self.sinks.counts()

    def close(self):
        self.sinks.close()

    def close_within(self, deadline: Deadline):
        """Each sink gets what is left of `deadline` (those that take one)."""
        for sink in self.sinks.sinks:
            close_within = getattr(sink, "close_within", None)
            close_within(deadline) if close_within else sink.close()

    def outputs(self) -> list:
        return [s.snapshot() for s in self.sinks.sinks if hasattr(s, "snapshot")]

    def discard(self):
        for sink in self.sinks.sinks:
            getattr(sink, "discard", lambda: None)()


class SegmentLog(RigObserver):
    """`--segments PATH`: one JSON line per finished segment (a JsonlSink)."""

    def __init__(self, path, rotation: Rotation | None = None, header: dict | None = None,
                 stall_after: float = 10.0):  # fmt: skip
        self.file = JsonlSink(path, rotation, header, stall_after)

    def on_segment(self, camera: str, record: dict):
        self.file.emit(record)

    def outputs(self) -> list:
        return [self.file.snapshot()]

    def close_within(self, deadline: Deadline):
        self.file.close_within(deadline)

    def close(self):
        self.file.close()

    def discard(self):
        self.file.discard()
