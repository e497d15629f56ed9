"""Several cameras in one process: the shared encoder batch decides as each camera alone;
segments, clips, event sinks (a real HTTP server, a real Mosquitto broker) and metrics."""

import http.server
import json
import threading
import time
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from art_edge.api import run, run_edge
from art_edge.rig.camera import CameraSpec, parse_source_specs
from art_edge.rig.config import RigConfig
from art_edge.runtime.streaming import StreamConfig
from art_edge.video.sources import open_source

from benchlib import free_port

CFG = StreamConfig(window=12, stride=3, smoothing=0.3)


def read_jsonl(path) -> list:
    """The records of a JSONL output, without the line that heads each run."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [r for r in lines if r.get("type") != "run"]


def test_source_names():
    assert parse_source_specs(["pool=rtsp://h/s", "synthetic://?frames=8&size=64", "0"]) == [
        ("pool", "rtsp://h/s"),
        ("cam1", "synthetic://?frames=8&size=64"),
        ("cam2", "0"),
    ]


@pytest.mark.parametrize("workers, threaded", [(1, False), (2, True)])
def test_two_cameras_in_one_batch_decide_as_each_camera_alone(
    engine_dir, synth, tmp_path, workers, threaded
):
    """Two file cameras through one encoder (its batches in `workers` parts side by side): every
    frame of each encoded, both cameras' frames in one batch, and each camera's decisions
    (probabilities included) those it makes alone. With reader threads, whether frames of both
    cameras are ready at once depends on the machine's timing; with one thread (--no-threads)
    each step reads a stride of each camera, so the shared batch is certain."""
    from art_edge.runtime.engine import ARTEngine

    val, video = synth / "val.csv", sorted((synth / "videos").glob("val_*.mp4"))[0]
    with ARTEngine.load(engine_dir, threads=2, head_threads=1, encoder_workers=workers) as engine:

        def source(which):
            return open_source(str(which), classes=engine.classes)

        both = tmp_path / "both.jsonl"
        opts = RigConfig.from_settings(stream=CFG, events=str(both), emit="decision", headless=True,
                                       threaded=threaded)  # fmt: skip
        summary = run(engine, [CameraSpec("a", source(val)), CameraSpec("b", source(video))], opts)
        alone = {}
        for name, which in (("a", val), ("b", video)):
            path = tmp_path / f"{name}.jsonl"
            single = RigConfig.from_settings(
                stream=CFG, events=str(path), emit="decision", headless=True
            )
            alone[name] = run_edge(engine, source(which), single), read_jsonl(path)
    events = read_jsonl(both)
    assert summary["encoder_workers"] == workers
    if threaded:
        assert summary["max_head_batch"] == 2, summary  # both cameras' heads in one batch
        # each frame's share of its batch's encoding, measured whether it ran in parts or not
        assert all(summary["cameras"][n]["encode_ms_p50"] > 0.1 for n in ("a", "b")), summary
    else:
        assert summary["max_batch"] > CFG.stride, summary  # frames of both cameras in one batch
    for name in ("a", "b"):
        assert summary["cameras"][name]["frames"] == alone[name][0]["frames"] > 0
        mine = [e for e in events if e["camera"] == name]
        theirs = alone[name][1]
        assert [(e["frame"], e["label"]) for e in mine] == [
            (e["frame"], e["label"]) for e in theirs
        ]
        for e, f in zip(mine, theirs):
            np.testing.assert_allclose(
                [t["score"] for t in e["topk"]], [t["score"] for t in f["topk"]], atol=2e-4
            )


def test_segments_and_their_clips_from_the_cli(engine_dir, synth, tmp_path):
    """Two cameras: a segment per action in the JSONL, named by camera; a clip per segment, H.264,
    that OpenCV plays to its last frame, and nothing half-written left."""
    from art_edge import cli

    val, video = synth / "val.csv", sorted((synth / "videos").glob("val_*.mp4"))[0]
    out = tmp_path / "out"
    code = cli.main(
        [
            "--engine", str(engine_dir), "--source", f"list={val}", "--source", f"one={video}",
            "--headless", "--window", "12", "--stride", "2", "--min-score", "0.3",
            "--min-duration", "0.1", "--segments", str(out / "segments.jsonl"),
            "--clips", str(out / "clips"), "--pre", "0.2", "--post", "0.2",
            "--summary", str(out / "summary.json"),
        ]
    )  # fmt: skip
    assert code == 0
    segments, summary = (
        read_jsonl(out / "segments.jsonl"),
        json.loads((out / "summary.json").read_text()),
    )
    assert segments and {s["camera"] for s in segments} <= {"list", "one"}
    assert all(s["end_s"] - s["start_s"] >= 0.1 - 1e-6 and s["mean_score"] >= 0.3 for s in segments)
    written = sorted((out / "clips").iterdir())
    assert written and all(not p.name.startswith(".") for p in written)  # no .part files
    assert len(written) + summary["clips_dropped"] == len(segments)
    for path in written:
        with av.open(str(path)) as container:  # H.264, which browsers play (mp4v they refuse)
            assert container.streams.video[0].codec_context.name == "h264", path
        cap = cv2.VideoCapture(str(path))
        count, frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0
        while cap.read()[0]:
            frames += 1
        assert frames == count > 0, path
    assert {p.name.split("_")[0] for p in written} <= {"list", "one"}


class Hook(http.server.BaseHTTPRequestHandler):
    """A webhook that fails its first `failures` requests with 503."""

    failures, bodies, seen = 0, [], 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen += 1
        if type(self).seen <= type(self).failures:
            self.send_response(503)
        else:
            type(self).bodies.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def synthetic_camera(engine, clips=3, fps=0):
    return open_source(
        f"synthetic://?frames=16&size=72&clips={clips}&fps={fps}", classes=engine.classes
    )


def test_webhook_retries_and_metrics(engine_dir, tmp_path):
    """A webhook that fails its first attempts still gets every event, in order; Prometheus sees
    each camera's frames while the rig runs, and /healthz says the cameras are ok."""
    from art_edge.runtime.engine import ARTEngine

    Hook.failures, Hook.bodies, Hook.seen = 3, [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, scraped = free_port(), {}
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    jsonl = tmp_path / "events.jsonl"
    opts = RigConfig.from_settings(stream=CFG, events=[str(jsonl), url], emit="decision", headless=True,
                       metrics=f"127.0.0.1:{port}")  # fmt: skip

    def scrape():
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    scraped["metrics"] = r.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    scraped["healthz"] = (r.status, r.read().decode())
                # both cameras counted and a decision's latency observed (a scrape can come
                # before the first decision)
                text = scraped["metrics"]
                if 'camera="cam1"' in text and "art_decision_latency_seconds_bucket" in text:
                    return
            except OSError:
                pass
            time.sleep(0.1)

    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        threading.Thread(target=scrape, daemon=True).start()
        specs = [CameraSpec("cam0", synthetic_camera(engine, 3, fps=40)),
                 CameraSpec("cam1", synthetic_camera(engine, 3, fps=40))]  # fmt: skip
        summary = run(engine, specs, opts)
    server.shutdown()
    written = read_jsonl(jsonl)
    assert len(written) == summary["events"] > 0
    assert Hook.bodies == written
    assert summary["sinks"][url] == {"sent": len(written), "failed": 0, "dropped": 0}
    assert 'art_frames_total{camera="cam0"}' in scraped["metrics"]
    assert "art_decision_latency_seconds_bucket" in scraped["metrics"]
    code, health = scraped["healthz"][0], json.loads(scraped["healthz"][1])
    assert code == 200 and health["cameras"]["cam0"]["status"] == "ok"  # the webhook: degraded
    assert health["outputs"][url]["status"] in ("ok", "degraded")


def test_mqtt_events_survive_a_broker_restart(engine_dir, tmp_path, broker):
    """Events go to a real broker; it is stopped and restarted mid-run; recognition goes on, and
    every event (those published while it was away included) reaches the subscriber."""
    import paho.mqtt.client as mqtt

    from art_edge.runtime.engine import ARTEngine

    broker = broker(tmp_path)
    broker.start()
    received, subscribed = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="art-test", clean_session=False)
    sub.on_connect = lambda c, *a: c.subscribe("rig/events", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    sub.reconnect_delay_set(0.2, 1)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    assert subscribed.wait(10)
    jsonl = tmp_path / "events.jsonl"
    opts = RigConfig.from_settings(stream=CFG, events=[str(jsonl), f"mqtt://127.0.0.1:{broker.port}/rig/events"],
                       emit="decision", headless=True)  # fmt: skip
    outage = {}

    def restart():
        time.sleep(1.5)
        broker.stop()
        outage["frames_before"] = len(jsonl.read_text().splitlines())
        time.sleep(2.0)
        outage["frames_during"] = len(jsonl.read_text().splitlines()) - outage["frames_before"]
        broker.start()

    try:
        with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
            threading.Thread(target=restart, daemon=True).start()
            summary = run(engine, [CameraSpec("pool", synthetic_camera(engine, 12, fps=30))], opts)
        written = read_jsonl(jsonl)
        deadline = time.monotonic() + 15
        while len({e["frame"] for e in received}) < len(written) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.loop_stop()
        broker.stop()
    assert outage["frames_during"] > 0  # recognition went on while the broker was away
    assert {e["frame"] for e in received} == {e["frame"] for e in written}
    counts = summary["sinks"][f"mqtt://127.0.0.1:{broker.port}/rig/events"]
    assert counts["dropped"] == counts["failed"] == 0


@pytest.mark.slow
def test_an_rtsp_camera_reconnects_while_the_other_camera_goes_on(
    engine_dir, tmp_path, rtsp_server
):
    """A real RTSP server beside a synthetic camera: the server is killed and restarted; the RTSP
    camera reconnects (counted) and its decisions continue; the other camera never stopped."""
    from art_edge.runtime.engine import ARTEngine

    server, jsonl, times = rtsp_server, tmp_path / "events.jsonl", {}
    opts = RigConfig.from_settings(stream=CFG, events=str(jsonl), emit="decision", headless=True,
                       max_frames=300)  # fmt: skip

    def outage():
        time.sleep(3)
        server.kill()
        times["down"] = time.time()
        time.sleep(3)
        server.start()
        times["up"] = time.time()

    with ARTEngine.load(engine_dir, threads=2, head_threads=1) as engine:
        specs = [
            CameraSpec("ring", open_source(server.uri, reconnect_timeout=20)),
            CameraSpec("board", synthetic_camera(engine, clips=0, fps=25)),
        ]
        threading.Thread(target=outage, daemon=True).start()
        summary = run(engine, specs, opts)
    events = read_jsonl(jsonl)
    ring, board = ([e["ts"] for e in events if e["camera"] == name] for name in ("ring", "board"))
    assert summary["cameras"]["ring"]["reconnects"] >= 1
    assert summary["cameras"]["ring"]["frames"] == 300
    assert any(ts > times["up"] for ts in ring)  # its decisions continued after the restart
    during = [ts for ts in board if times["down"] - 1 <= ts <= times["up"] + 1]
    assert len(during) > 5 and max(b - a for a, b in zip(during, during[1:])) < 1.0


def test_an_existing_output_file_is_replaced_and_a_folder_is_refused(tmp_path):
    """A second run writes its --summary/--events/--segments over the first's (it used to be
    refused as 'a file, not a folder')."""
    from art_edge.errors import UserError
    from art_edge.files import check_writable

    earlier = tmp_path / "summary.json"
    earlier.write_text("{}")
    check_writable(earlier, "--summary", is_file=True)
    with pytest.raises(UserError, match="a folder, not a file"):
        check_writable(tmp_path, "--summary", is_file=True)


@pytest.mark.slow
def test_two_cameras_on_real_footage_with_every_output(engine_dir, tmp_path, real_clip, broker):
    """Two real clips (720p and 640×272, played at their 25 FPS) through `art-edge` with segments,
    clips, JSONL + MQTT (a real Mosquitto) + webhook events and metrics, all in one run: every
    event reaches the broker and the webhook, each segment has a clip that OpenCV plays to its
    last frame, and Prometheus counted both cameras' frames while they ran."""
    import paho.mqtt.client as mqtt

    from art_edge import cli

    broker, out = broker(tmp_path), tmp_path / "out"
    broker.start()
    received, subscribed = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="art-real")
    sub.on_connect = lambda c, *a: c.subscribe("rig/events", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    Hook.failures, Hook.bodies, Hook.seen = 0, [], 0
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    port, scraped = free_port(), []

    def scrape():
        while not scraped or 'camera="bikes"' not in scraped[-1]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    scraped.append(r.read().decode())
            except OSError:
                time.sleep(0.2)

    try:
        assert subscribed.wait(10)
        threading.Thread(target=scrape, daemon=True).start()
        code = cli.main(
            [
                "--engine", str(engine_dir), "--source", f"bunny={real_clip('bigbuckbunny.mp4')}",
                "--source", f"bikes={real_clip('bikes.mp4')}", "--realtime", "--headless",
                "--window", "12", "--stride", "3", "--min-score", "0", "--min-duration", "0.2",
                "--segments", str(out / "segments.jsonl"), "--clips", str(out / "clips"),
                "--pre", "0.5", "--post", "0.5", "--events", str(out / "events.jsonl"),
                "--events", f"mqtt://127.0.0.1:{broker.port}/rig/events",
                "--events", f"http://127.0.0.1:{hook.server_address[1]}/hook",
                "--metrics", f"127.0.0.1:{port}", "--summary", str(out / "summary.json"),
                "--stop-timeout", "120",  # every 720p clip written, however loaded the machine
            ]
        )  # fmt: skip
        written = read_jsonl(out / "events.jsonl")
        deadline = time.monotonic() + 15
        while len(received) < len(written) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.loop_stop()
        broker.stop()
        hook.shutdown()
    summary = json.loads((out / "summary.json").read_text())
    segments = read_jsonl(out / "segments.jsonl")
    assert code == 0 and summary["cameras"]["bunny"]["frames"] > 0
    assert summary["cameras"]["bikes"]["frames"] > 0
    assert {s["camera"] for s in segments} == {"bunny", "bikes"}
    assert written and received == written and Hook.bodies == written
    assert sum(e.get("type") == "segment" for e in written) == len(segments)
    clips = sorted((out / "clips").iterdir())
    assert len(clips) == len(segments) and summary["clips_dropped"] == 0
    for path in clips:
        cap = cv2.VideoCapture(str(path))
        count, frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0
        while cap.read()[0]:
            frames += 1
        assert frames == count > 0, path
    assert any('art_frames_total{camera="bunny"}' in m for m in scraped)
    assert 'art_frames_total{camera="bikes"}' in scraped[-1]
