"""Where events go: a JSONL file, an MQTT broker, a webhook. Each sink takes event dicts from any
thread; a broker or endpoint that is away never stops recognition: the sink warns once, keeps a
bounded queue, and counts what it had to drop.

    sinks = open_sinks(["events.jsonl", "mqtts://rig:pw@broker/rig/pool", "http://box:8080/hook"])
    sinks.emit(decision_event(decision, classes, "pool"))
    sinks.close()            # flushes what can still be sent, within a few seconds
    sinks.counts()           # {"mqtts://rig:***@broker/rig/pool": {"sent": …, "failed": …, …}}

Sinks are known by their masked names (art_edge.rig.credentials): no password, token or query
value of a URI is ever printed, logged, labelled or written into the summary.

As outputs of a rig (art_edge.rig.observers): EventSinks (`--events`: decisions by the --emit policy,
and segments) and SegmentLog (`--segments`).
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from urllib.parse import urlsplit

import numpy as np

from art_edge.errors import UserError, warn
from art_edge.files import check_writable
from art_edge.rig.credentials import (
    login_for,
    masked,
    redact,
    tls_context,
    userinfo,
    without_userinfo,
)
from art_edge.rig.observers import RigObserver
from art_edge.rig.outlets import Deadline, JsonlFile, Rotation, run_header
from art_edge.rig.report import OutputSnapshot

QUEUE_BOUND = 1000  # events held per network sink while its broker or endpoint is away


def decision_event(decision, classes: list[str], camera: str, wall_time: float | None = None):
    """One decision as the event sinks carry it: ts, camera, frame, label, score, top-k, saliency;
    a tracked camera's also its track's id and box."""
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
    if decision.track is not None:  # a tracked camera: whose decision, and where it was
        event["track"] = decision.track
        event["box"] = [round(float(v), 1) for v in decision.box] if decision.box else None
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


CA_HINT = " (--events-ca names the CA that signed its certificate)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is a failure (the event is not re-sent elsewhere with its
    credentials): give the final URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirected ({code})", headers, fp)


class WebhookSink:
    """A JSON POST per event from a thread of its own: retries with back-off (0.25 s doubling to
    4 s, `attempts` tries), then the event counts as failed; a bounded queue while the endpoint is
    away (the oldest event is dropped and counted when it is full). `https://` verifies the
    server's certificate (`tls`: a context of art_edge.rig.credentials.tls_context); a user and
    password in the URL, or `login`, go as HTTP Basic authentication; redirects are not followed."""

    def __init__(self, url: str, attempts: int = 5, bound: int = QUEUE_BOUND, timeout: float = 5.0,
                 tls=None, login=None, quiet: bool = False):  # fmt: skip
        self.name, self.uri, self.attempts, self.timeout = masked(url), url, attempts, timeout
        self.url = without_userinfo(url)
        self.headers = {"Content-Type": "application/json"}
        user, password = userinfo(url) or login or (None, None)
        if user is not None:
            basic = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        handlers = [_NoRedirect()]
        if urlsplit(url).scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=tls or tls_context()))
        self.opener = urllib.request.build_opener(*handlers)
        self.queue: queue.Queue = queue.Queue(maxsize=bound)
        self.sent = self.failed = self.dropped = 0
        self.error = None
        self._warned, self._stop = quiet, threading.Event()  # quiet: its owner warns
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
            request = urllib.request.Request(self.url, body, self.headers, method="POST")
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        self.error = None
                        return True
            except (
                urllib.error.URLError,
                OSError,
                http.client.HTTPException,
            ) as e:  # no answer, or not HTTP
                self._failed(e)
            if attempt + 1 < self.attempts and not self._stop.is_set():
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
        return False

    def _failed(self, error: Exception):
        reason = getattr(error, "reason", error)
        self.error = redact(str(reason), self.uri)
        if isinstance(error, urllib.error.HTTPError) and error.code in (401, 403):
            self.error = f"login refused ({error.code} {error.reason})"
        if isinstance(reason, ssl.SSLCertVerificationError):
            self.error += CA_HINT
        if not self._warned:
            self._warned = True
            warn(f"webhook {self.name}: {self.error}; retrying, events queue (at most "
                 f"{QUEUE_BOUND})")  # fmt: skip

    def close(self, timeout: float = 5.0):
        """Send what is queued for up to `timeout` seconds; what is left counts as failed."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        self.failed += self.queue.qsize()


LOGIN_REFUSED = (4, 5, 134, 135)  # MQTT 3.1.1 and 5: bad user name or password, not authorized


class MqttSink:
    """QoS 1 publishes to `mqtt://` (or `mqtts://`, TLS) `[USER[:PASSWORD]@]HOST[:PORT]/TOPIC`
    through paho-mqtt, which reconnects by itself and keeps unacknowledged messages (at most
    `bound`) while the broker is away; a publish that finds the queue full is dropped and
    counted. `tls`: the context mqtts:// verifies the broker with; `login`: (user, password)
    when the URI has none. A broker that refuses the login is reported as such."""

    def __init__(self, uri: str, bound: int = QUEUE_BOUND, tls=None, login=None, quiet=False):
        import paho.mqtt.client as mqtt

        self.name, self.uri = masked(uri), uri
        self.host, self.port, self.topic, secure = parse_mqtt_uri(uri)
        self.sent = self.failed = self.dropped = 0
        self.error, self._warned = None, quiet  # quiet: its owner (a Delivery) warns
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        user, password = userinfo(uri) or login or (None, None)
        if user is not None:
            self.client.username_pw_set(user, password)
        if secure:
            self.client.tls_set_context(tls or tls_context())
        self.client.max_queued_messages_set(bound)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()

    def _warn_once(self, message: str):
        if not self._warned:
            self._warned = True
            warn(f"MQTT broker {self.name}: {message}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            self.error = None
        elif reason_code.value in LOGIN_REFUSED:
            self.error = f"login refused ({reason_code})"
            self._warn_once(
                f"{self.error}: check the user and password (the URI's, or --events-credentials)"
            )
        else:
            self.error = f"connection refused ({reason_code})"
            self._warn_once(f"{self.error}; retrying")

    def _on_connect_fail(self, client, userdata):
        error = sys.exc_info()[1]  # paho calls this in the handler of the connection's error
        self.error = redact(str(error or "cannot connect"), self.uri)
        if isinstance(error, ssl.SSLCertVerificationError):
            self.error += CA_HINT
        self._warn_once(f"unreachable ({self.error}); retrying")

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.sent += 1

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.error is None:
            self._warn_once(f"away ({reason_code}); reconnecting")

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
        self._warned = True  # our own disconnect is no news
        self.client.disconnect()
        self.client.loop_stop()


def parse_mqtt_uri(uri: str) -> tuple[str, int, str, bool]:
    """mqtt(s)://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC → (host, port, topic, TLS)."""
    parts = urlsplit(uri)
    topic, secure = parts.path.lstrip("/"), parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if secure else 1883)
    except ValueError:
        port = None
    ok = parts.scheme in ("mqtt", "mqtts") and parts.hostname and port is not None
    if not ok or not topic or "#" in topic or "+" in topic:
        raise UserError(
            f"--events {masked(uri)}: an MQTT sink is mqtt://HOST[:PORT]/TOPIC, or mqtts:// for "
            "TLS (e.g. mqtt://localhost:1883/rig/events), with a topic and no wildcards"
        )
    return parts.hostname, port, topic, secure


def check_http_uri(uri: str):
    parts = urlsplit(uri)
    try:
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        parts = None
    if parts is None or not parts.hostname:
        raise UserError(
            f"--events {masked(uri)}: a webhook is http(s)://HOST[:PORT]/PATH (e.g. "
            "http://localhost:8080/hook)"
        )


class Sinks:
    """The fan-out: every event to every sink; a failing sink never stops the others."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def emit(self, event: dict):
        for sink in self.sinks:
            sink.emit(event)

    def counts(self) -> dict:
        """Each sink's sent, failed and dropped counts (and its last error, while it has one), by
        its masked name."""
        counts = {}
        for s in self.sinks:
            counts[s.name] = {"sent": s.sent, "failed": s.failed, "dropped": s.dropped}
            if getattr(s, "error", None):
                counts[s.name]["error"] = s.error
        return counts

    def close(self):
        for sink in self.sinks:
            sink.close()


NETWORK = ("mqtt:", "mqtts:", "http:", "https:")
TLS = ("mqtts:", "https:")


def check_sink_specs(specs: list[str]):
    """Every --events value checked before anything starts (a malformed URI is one line, its
    secrets masked)."""
    for spec in specs:
        if spec.startswith(("mqtt:", "mqtts:")):
            parse_mqtt_uri(spec)
        elif spec.startswith(("http:", "https:")):
            check_http_uri(spec)
        elif "://" in spec:
            raise UserError(
                f"--events {masked(spec)}: give a .jsonl path, mqtt(s)://HOST:PORT/TOPIC or "
                "http(s)://…"
            )
        else:
            check_writable(spec, "--events", is_file=True)


def open_sinks(specs: list[str], logins=None, tls=None, quiet: bool = False) -> Sinks:
    """The sinks of --events values that check_sink_specs took; `logins`: a netrc of the hosts'
    logins (art_edge.rig.credentials.read_logins), for the URIs that carry none; `tls`: the
    context that mqtts:// and https:// sinks verify their server with (default: the system's
    CAs). Two sinks whose masked names are the same are told apart by #2, #3, …"""
    sinks = []
    for spec in specs:
        host = urlsplit(spec).hostname if spec.startswith(NETWORK) else None
        login = login_for(logins, host) if host else None
        if spec.startswith(("mqtt:", "mqtts:")):
            sinks.append(MqttSink(spec, tls=tls, login=login, quiet=quiet))
        elif spec.startswith(("http:", "https:")):
            sinks.append(WebhookSink(spec, tls=tls, login=login, quiet=quiet))
        else:
            sinks.append(JsonlSink(spec))
    seen = Counter()
    for sink in sinks:
        seen[sink.name] += 1
        if seen[sink.name] > 1:
            sink.name = f"{sink.name} #{seen[sink.name]}"
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
