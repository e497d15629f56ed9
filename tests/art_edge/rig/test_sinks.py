"""The event sinks' secrets and TLS: credentials from the URI, the environment or a netrc file,
never shown (a live `art-edge` against a real Mosquitto with a password file: its /metrics,
its output and its summary are searched for every secret); a refused login said as such;
mqtts:// and an https:// webhook against certificates the test makes."""

import base64
import http.server
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from art_edge.errors import UserError
from art_edge.rig.credentials import expand_env, masked, redact

from benchlib import fetch, free_port, wait_for

PASSWORD, WRONG, API_KEY = "Pw-4-the-broker-7731", "Not-the-password-5520", "K3y-0f-the-hook-9902"


def test_masked_names_and_redacted_messages(monkeypatch):
    assert (
        masked("mqtt://rig:pa%40ss@broker:1883/rig/events")
        == "mqtt://rig:***@broker:1883/rig/events"
    )
    assert masked("mqtts://TOKEN@broker/t") == "mqtts://***@broker/t"
    assert masked("https://box/hook?apikey=K&team=a") == "https://box/hook?apikey=***&team=***"
    assert masked("https://hooks.example/services/T0/B0/abcdefghijklmnopqrstuvwx") == (
        "https://hooks.example/services/T0/B0/***"
    )
    assert masked("events.jsonl") == "events.jsonl"
    uri = "http://u:pa%40ss@box/h?apikey=s3cr3t"
    assert redact("failed for pa@ss and s3cr3t at pa%40ss", uri) == "failed for *** and *** at ***"
    monkeypatch.setenv("ART_TEST_PW", "from-env")
    assert expand_env("mqtt://u:${ART_TEST_PW}@h/t", "--events") == "mqtt://u:from-env@h/t"
    monkeypatch.delenv("ART_TEST_PW")
    with pytest.raises(UserError, match=r"\$\{ART_TEST_PW\} is not set"):
        expand_env("mqtt://u:${ART_TEST_PW}@h/t", "--events")


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook that takes an event only with its API key (or its Basic login)."""

    bodies: list = []
    basic: str | None = None  # "user:password" it asks for, else the ?apikey=

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        auth = self.headers.get("Authorization", "")
        if self.basic is not None:
            ok = auth == "Basic " + base64.b64encode(self.basic.encode()).decode()
        else:
            ok = self.path.endswith(f"apikey={API_KEY}")
        if ok:
            type(self).bodies.append(json.loads(body))
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_hook(tls: ssl.SSLContext | None = None) -> http.server.ThreadingHTTPServer:
    Hook.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def subscribe(port: int, topic: str, tls: ssl.SSLContext | None = None):
    """→ (client, the payloads it receives on `topic`), logged in as artuser."""
    import paho.mqtt.client as mqtt

    received, subscribed = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.username_pw_set("artuser", PASSWORD)
    if tls is not None:
        sub.tls_set_context(tls)
    sub.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    assert subscribed.wait(10), "the subscriber was not let in"
    return sub, received


def test_no_secret_reaches_metrics_logs_or_summary(engine_dir, tmp_path, broker):
    """`art-edge` publishes to a Mosquitto that wants a login, its password from the
    environment (${MQTT_PW} in the URI); a second MQTT sink has a wrong password; a webhook's API
    key is in its query. Events reach the broker and the hook; the wrong login is reported as
    refused; and no password or key appears in /metrics, in art-edge's output or in its
    summary, where the sinks are named with *** in their place."""
    mq = broker(tmp_path, users={"artuser": PASSWORD})
    mq.start()
    sub, received = subscribe(mq.port, "rig/events")
    hook, metrics, out = serve_hook(), free_port(), tmp_path / "out"
    good = f"mqtt://artuser:${{MQTT_PW}}@127.0.0.1:{mq.port}/rig/events"
    wrong = f"mqtt://artuser:{WRONG}@127.0.0.1:{mq.port}/rig/other"
    webhook = f"http://127.0.0.1:{hook.server_address[1]}/hook?apikey={API_KEY}"
    cmd = [
        sys.executable, "-m", "art_edge.cli", "--engine", str(engine_dir),
        "--source", "synthetic://?frames=16&size=72&fps=30&clips=0", "--headless",
        "--window", "12", "--stride", "3", "--threads", "1", "--emit", "decision",
        "--events", good, "--events", wrong, "--events", webhook, "--events", str(out / "ev.jsonl"),
        "--metrics", f"127.0.0.1:{metrics}", "--summary", str(out / "summary.json"),
    ]  # fmt: skip
    env = dict(os.environ, MQTT_PW=PASSWORD)
    with open(tmp_path / "art-edge.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: len(received) >= 3 and len(Hook.bodies) >= 3, 60, "events at both ends")
        scraped = wait_for(lambda: refused_in(fetch(f"http://127.0.0.1:{metrics}/metrics")[2]),
                           20, "all three sinks on /metrics")  # fmt: skip
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.loop_stop()
        hook.shutdown()
    output = (tmp_path / "art-edge.log").read_text()
    summary_text = (out / "summary.json").read_text()
    for secret in (PASSWORD, WRONG, API_KEY):
        for name, text in (("/metrics", scraped), ("the output", output), ("the summary", summary_text)):  # fmt: skip
            assert secret not in text, f"{secret!r} in {name}"
    sinks = json.loads(summary_text)["sinks"]
    shown = {masked(good.replace("${MQTT_PW}", PASSWORD)), masked(wrong), masked(webhook)}
    assert shown <= set(sinks) and f"artuser:***@127.0.0.1:{mq.port}/rig/events" in output
    assert sinks[masked(wrong)]["error"].startswith("login refused (Not authorized)")
    assert re.search(
        r"warning: events to mqtt://artuser:\*\*\*@.*/rig/other: login refused", output
    )
    good_counts = sinks[masked(good.replace("${MQTT_PW}", PASSWORD))]
    assert good_counts["sent"] >= 3 and good_counts["failed"] == 0 and "error" not in good_counts
    assert sinks[masked(webhook)]["sent"] >= 3 and sinks[masked(webhook)]["failed"] == 0


def refused_in(metrics: bytes) -> str | None:
    """/metrics once it lists the three sinks (None before)."""
    text = metrics.decode()
    return text if text.count("art_events_sent_total{sink=") >= 4 else None


def tls_run(engine_dir, folder: Path, sinks: list, **settings) -> dict:
    """A short art-edge run (3 synthetic clips) in this process; → its summary."""
    from art_edge.api import run
    from art_edge.rig.camera import CameraSpec
    from art_edge.rig.config import RigConfig
    from art_edge.runtime.engine import ARTEngine
    from art_edge.runtime.streaming import StreamConfig
    from art_edge.video.sources import open_source

    config = RigConfig.from_settings(
        stream=StreamConfig(window=12, stride=3), headless=True, emit="decision",
        events=[*sinks, str(folder / "ev.jsonl")], **settings,
    )  # fmt: skip
    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        uri = "synthetic://?frames=16&size=72&clips=3&fps=60"
        return run(engine, [CameraSpec("cam", open_source(uri, classes=engine.classes))], config)


def test_mqtts_and_an_https_webhook_verify_their_servers(
    engine_dir, tmp_path, broker, certs, capsys
):
    """A Mosquitto TLS listener (the test's certificate, a client certificate required, logins
    required) and an HTTPS webhook (the same CA, HTTP Basic): with --events-ca, --events-cert,
    --events-key and the logins from a netrc file, every event arrives at both; without the CA,
    neither server is trusted: nothing is sent, and the summary and a warning say why."""
    mq = broker(tmp_path, users={"artuser": PASSWORD}, certs=certs)
    mq.start()
    sub, received = subscribe(mq.port, "rig/tls")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
    server_tls.load_cert_chain(certs.server, certs.server_key)
    server_tls.verify_mode = ssl.CERT_REQUIRED
    Hook.basic = f"artuser:{PASSWORD}"
    hook = serve_hook(server_tls)
    logins = tmp_path / "logins.netrc"
    logins.write_text(f"machine 127.0.0.1 login artuser password {PASSWORD}\n")
    logins.chmod(0o600)
    sinks = [f"mqtts://127.0.0.1:{mq.tls_port}/rig/tls",
             f"https://127.0.0.1:{hook.server_address[1]}/hook"]  # fmt: skip
    client = dict(events_cert=str(certs.client), events_key=str(certs.client_key))
    try:
        summary = tls_run(engine_dir, tmp_path, sinks, events_ca=str(certs.ca),
                          events_credentials=str(logins), **client)  # fmt: skip
        lines = (tmp_path / "ev.jsonl").read_text().splitlines()
        written = [e for e in map(json.loads, lines) if e.get("type") != "run"]  # not the header
        wait_for(lambda: len(received) >= len(written), 15, "every event at the subscriber")
        capsys.readouterr()
        untrusted = tls_run(engine_dir, tmp_path, sinks, events_credentials=str(logins), **client)
        warnings = capsys.readouterr().err
    finally:
        sub.loop_stop()
        hook.shutdown()
        Hook.basic = None
    assert written and received == written and Hook.bodies == written
    for name, counts in summary["sinks"].items():
        if "://" in name:
            assert counts["sent"] == len(written) and counts["failed"] == 0, (name, counts)
    for name, counts in untrusted["sinks"].items():
        if "://" in name:
            assert counts["sent"] == 0 and "certificate verify failed" in counts["error"], counts
    assert warnings.count("--events-ca names the CA that signed its certificate") == 2
    assert PASSWORD not in warnings
