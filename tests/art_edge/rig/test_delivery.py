"""Network events that survive an outage: the on-disk spool keeps order across restarts and
drops only beyond its bound; a webhook that hangs and a broker that is away for a whole run are
said once, their events wait (emitting never does) and arrive in order when the endpoint is
back, in the same run or the next."""

import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from art_edge.rig.delivery import Delivery, MqttTransport, Spool, WebhookTransport, spool_folder
from art_edge.rig.outlets import Deadline
from art_edge.rig.sinks import MqttSink, WebhookSink

from benchlib import free_port, wait_for
from unattended_parts import MOSQUITTO, Broker


def event(i: int) -> dict:
    return {"type": "decision", "frame": i, "label": "a"}


def test_the_spool_keeps_order_across_restarts_and_drops_only_beyond_its_bound(tmp_path):
    spool = Spool(tmp_path / "s", max_bytes=100_000)
    for i in range(100):
        assert spool.append(json.dumps(event(i)).encode()) == 0
    for i in range(30):
        assert json.loads(spool.peek(0))["frame"] == i
        spool.pop()
    spool.close()
    spool = Spool(tmp_path / "s", max_bytes=100_000)  # the next run
    assert len(spool) == 70 and json.loads(spool.peek(0))["frame"] == 30
    assert json.loads(spool.peek(5))["frame"] == 35
    small = Spool(tmp_path / "small", max_bytes=8192)
    dropped = sum(small.append(json.dumps(event(i)).encode()) for i in range(1000))
    assert dropped > 0 and len(small) + dropped == 1000  # every event kept or counted
    first = json.loads(small.peek(0))["frame"]
    frames = []
    while small.peek(0) is not None:
        frames.append(json.loads(small.peek(0))["frame"])
        small.pop()
    assert frames == list(range(first, 1000))  # the newest kept, in order


class Hook(http.server.BaseHTTPRequestHandler):
    hang = threading.Event()
    bodies: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).hang.is_set():
            time.sleep(2.0)  # longer than the sink waits: it never answers in time
            return
        type(self).bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_spool_counts_what_waits_when_delivery_catches_up_with_a_full_file(tmp_path):
    """Each file delivered to its end before the next file was begun: the count of what waits
    stays exact, and once all is delivered the spool leaves nothing for the next run (it once
    kept a whole file's events, re-sent by the next run, and waited out the shutdown's time)."""
    spool = Spool(tmp_path / "spool", 16384)  # files of 4 KB
    body = b"x" * 99  # 100 bytes a line: a file is full after 41 events
    delivered = 0
    for _ in range(5):  # each round fills the current file and delivers it all
        for _ in range(41):
            spool.append(body)
        while spool.peek(0) is not None:
            spool.pop()
            delivered += 1
        assert len(spool) == 0, delivered
    assert delivered == 205
    spool.close()
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    assert Spool(tmp_path / "spool", 16384).peek(0) is None  # the next run sends nothing again


def test_a_hanging_webhook_keeps_its_events_in_order_until_it_answers(tmp_path, capsys):
    Hook.hang.set()
    Hook.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    sink = WebhookSink(url, timeout=0.5)
    delivery = Delivery(sink, WebhookTransport(sink), Spool(tmp_path / "spool", 1_000_000))
    try:
        started = time.monotonic()
        for i in range(50):
            delivery.emit(event(i))
        assert time.monotonic() - started < 0.5  # emitting never waits for the endpoint
        wait_for(lambda: delivery.trouble.errors >= 2, what="two failed tries")
        assert delivery.health()[0] == "degraded" and delivery.sent == 0
        Hook.hang.clear()
        wait_for(lambda: delivery.sent == 50, what="the events delivered")
        delivery.close_within(Deadline(5))
    finally:
        server.shutdown()
    assert [b["frame"] for b in Hook.bodies] == list(range(50))
    assert delivery.dropped == delivery.failed == delivery.spooled == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "/hook" in line]
    assert len([s for s in said if "retrying" in s]) == 1 and len(said) == 2, said


@pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (make test installs it)"
)
def test_a_broker_away_for_a_whole_run_gets_its_events_in_the_next(tmp_path, capsys):
    """No broker for a whole run: said once, nothing lost (the events wait in the spool); the
    next run, with the broker there, delivers them first, in order, then its own."""
    import paho.mqtt.client as mqtt

    port = free_port()
    uri = f"mqtt://127.0.0.1:{port}/rig/events"
    folder = spool_folder(tmp_path, uri)
    sink = MqttSink(uri)
    first = Delivery(sink, MqttTransport(sink), Spool(folder, 1_000_000, uri))
    for i in range(20):
        first.emit(event(i))
    wait_for(lambda: first.trouble.errors >= 1, what="the broker to be missed")
    first.close_within(Deadline(1.0))
    assert first.spooled == 20 and first.sent == first.dropped == first.failed == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "rig/events" in line]
    assert len(said) == 1 and "Connection refused" in said[0], said  # the reason, from paho

    broker = Broker(tmp_path / "broker", port=port)
    broker.start()
    received, subscribed = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *a: c.subscribe("rig/events", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload)["frame"])
    try:
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        assert subscribed.wait(10)
        sink = MqttSink(uri)
        second = Delivery(sink, MqttTransport(sink), Spool(folder, 1_000_000, uri))
        for i in range(20, 30):
            second.emit(event(i))
        wait_for(lambda: len(received) >= 30, what="the spooled events and the new ones")
        second.close_within(Deadline(5))
    finally:
        sub.loop_stop()
        broker.stop()
    assert received == list(range(30)) and second.spooled == 0
    assert not list(folder.glob("*.jsonl"))  # all delivered: the spool starts the next run empty
