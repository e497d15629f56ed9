"""The dashboard (`art-edge --web`): its token gate and API against a running rig, and the page
itself in a real headless Chromium against a live `art-edge` with two cameras, one of them a
real RTSP server that is killed and restarted."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from art_edge.api import run
from art_edge.rig.camera import CameraSpec
from art_edge.rig.config import RigConfig
from art_edge.runtime.streaming import StreamConfig
from art_edge.video.sources import open_source

from benchlib import fetch, free_port, headless_chromium, wait_for

CFG = StreamConfig(window=12, stride=3, smoothing=0.3)
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TOKEN = "s3cret"


def test_the_token_gate_the_api_and_the_frames(engine_dir):
    """With --web-token: no token or a wrong one is refused (HTTP 401, the WebSocket closed);
    the right one in the query sets a cookie that then suffices; a bearer header works for
    scripts; /api/engine gives the manifest's facts; the WebSocket sends the engine, the state and
    JPEG frames of the camera; a clip name that leaves the clips folder is not served."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from art_edge.runtime.engine import ARTEngine

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ARTEngine.load(engine_dir, threads=1, head_threads=1) as engine:
        source = open_source("synthetic://?frames=16&size=72&fps=20", classes=engine.classes)
        opts = RigConfig.from_settings(stream=CFG, headless=True, web=f"127.0.0.1:{port}",
                           web_token=TOKEN, clips=None)  # fmt: skip
        stop = threading.Event()
        runner = threading.Thread(
            target=run, args=(engine, [CameraSpec("pool", source)], opts, stop)
        )
        runner.start()
        try:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            wait_for(lambda: fetch(f"{base}/api/state", bearer)[0] == 200, 20, "the server")
            assert fetch(f"{base}/")[0] == 401
            status, _, body = fetch(f"{base}/?token=wrong")
            assert status == 401 and b"token" in body
            status, headers, body = fetch(f"{base}/?token={TOKEN}")
            assert status == 200 and b"<title>art-edge</title>" in body
            cookie = headers["set-cookie"].split(";")[0]
            assert fetch(f"{base}/static/dashboard.js", {"Cookie": cookie})[0] == 200
            assert fetch(f"{base}/static/dashboard.js", {"Cookie": "art_edge_token=x"})[0] == 401
            facts = json.loads(fetch(f"{base}/api/engine", bearer)[2])
            assert facts["classes"] == engine.classes and facts["backend"] == "onnxruntime"
            assert facts["precision"] == engine.manifest["precision"]
            assert fetch(f"{base}/clips/..%2Fmanifest.json", bearer)[0] == 404
            with pytest.raises(InvalidStatus):
                connect(f"ws://127.0.0.1:{port}/ws?token=wrong", open_timeout=5)
            with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", open_timeout=5) as ws:
                assert json.loads(ws.recv(timeout=5))["type"] == "engine"
                state = json.loads(ws.recv(timeout=5))
                assert state["type"] == "state" and state["cameras"][0]["name"] == "pool"
                frame = next(
                    m for m in iter(lambda: ws.recv(timeout=10), None) if isinstance(m, bytes)
                )
        finally:
            stop.set()
            runner.join(timeout=30)
    length = int.from_bytes(frame[:2], "big")
    header = json.loads(frame[2 : 2 + length])
    image = cv2.imdecode(np.frombuffer(frame[2 + length :], np.uint8), cv2.IMREAD_COLOR)
    assert header["camera"] == "pool" and header["frame"] >= 0
    assert image is not None and min(image.shape[:2]) >= 72  # drawn, upscaled for legibility


# The image a tile shows, as a few numbers (drawn on a canvas: the page's own pixels).
PIXELS = """
const frame = document.querySelector(`.tile[data-camera="${arguments[0]}"] canvas.frame`);
if (!frame || !frame.width || frame.dataset.frame === undefined) return null;
const c = document.createElement('canvas'); c.width = 32; c.height = 24;
const g = c.getContext('2d'); g.drawImage(frame, 0, 0, 32, 24);
return Array.from(g.getImageData(0, 0, 32, 24).data.filter((_, i) => i % 4 === 0));
"""


def tile_text(driver, camera: str, part: str) -> str:
    return driver.execute_script(
        f'const e = document.querySelector(`.tile[data-camera="{camera}"] .{part}`);'
        "return e ? e.textContent : null;"
    )


def last_event_label(events: Path, camera: str) -> str | None:
    lines = events.read_text().splitlines() if events.exists() else []
    labels = [e["label"] for e in map(json.loads, lines) if e.get("camera") == camera]
    return labels[-1] if labels else None


def start_art_edge(engine_dir, port: int, rtsp_uri: str, out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "art_edge.cli", "--engine", str(engine_dir),
        "--source", f"ring={rtsp_uri}", "--source", "board=synthetic://?frames=24&size=96&fps=15",
        "--headless", "--window", "12", "--stride", "3", "--reconnect-timeout", "60",
        "--web", f"127.0.0.1:{port}", "--web-token", TOKEN,
        "--events", str(out / "events.jsonl"), "--segments", str(out / "segments.jsonl"),
        "--clips", str(out / "clips"), "--pre", "0.3", "--post", "0.3",
        "--min-score", "0", "--min-duration", "0",
    ]  # fmt: skip
    log = open(out / "art-edge.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed; make test installs them",
)
def test_the_dashboard_in_a_real_browser(engine_dir, tmp_path, rtsp_server):
    """Headless Chromium against `art-edge --web` with two cameras: a wrong token is refused; both
    tiles show images that change; each label shown is the one of the camera's last event; a
    segment appears on the timeline and its clip plays; the RTSP camera's server is killed (the
    tile says reconnecting) and restarted (its frames come back); the page's own socket is cut and
    comes back. A screenshot is saved (ART_DASHBOARD_SCREENSHOT=path copies it there)."""
    port, out = free_port(), tmp_path / "out"
    out.mkdir()
    proc = start_art_edge(engine_dir, port, rtsp_server.uri, out)
    driver = None
    try:
        engine_api = f"http://127.0.0.1:{port}/api/engine"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        wait_for(lambda: fetch(engine_api, bearer)[0] == 200, 60, "art-edge --web")
        driver = headless_chromium()
        driver.get(f"http://127.0.0.1:{port}/?token=wrong")
        assert "wrong or missing token" in driver.find_element("tag name", "body").text
        driver.get(f"http://127.0.0.1:{port}/?token={TOKEN}")
        check_tiles_and_labels(driver, out / "events.jsonl")
        check_segments_and_a_clip(driver)
        check_camera_outage(driver, rtsp_server)
        check_page_reconnects(driver)
        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("ART_DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, os.environ["ART_DASHBOARD_SCREENSHOT"])
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, (out / "art-edge.log").read_text()[-2000:]


def check_tiles_and_labels(driver, events: Path):
    cameras = ("ring", "board")
    wait_for(
        lambda: all(driver.execute_script(PIXELS, c) for c in cameras), 30, "both tiles' images"
    )
    first = {c: driver.execute_script(PIXELS, c) for c in cameras}
    for c in cameras:
        wait_for(lambda c=c: driver.execute_script(PIXELS, c) != first[c], 15, f"{c}'s image to change")  # fmt: skip
    for (
        c
    ) in cameras:  # the page and the events file are read a moment apart: retry until both agree
        wait_for(
            lambda c=c: (
                (shown := tile_text(driver, c, "label")) == last_event_label(events, c)
                and shown is not None
            ),
            20,
            f"{c}'s label to equal its last event's",
        )


def check_segments_and_a_clip(driver):
    bars = ".tile .timeline .segment"
    wait_for(lambda: driver.find_elements("css selector", bars), 30, "a segment on a timeline")
    driver.execute_script(
        "window.clipPlayed = false; document.getElementById('player')"
        ".addEventListener('playing', () => { window.clipPlayed = true; });"
    )
    # found and clicked in one step: the list is redrawn as segments and clips arrive
    click = (
        "const b = document.querySelector('#segments button.play:not([disabled])');"
        "if (b) b.click(); return !!b;"
    )
    wait_for(lambda: driver.execute_script(click), 30, "a written clip to click")
    wait_for(lambda: driver.execute_script("return window.clipPlayed"), 15, "the clip to play")
    error = driver.execute_script(
        "const e = document.getElementById('player').error; return e && e.code"
    )
    assert error is None


def check_camera_outage(driver, rtsp_server):
    is_reconnecting = "return document.querySelector('.tile[data-camera=\"ring\"]').classList.contains('reconnecting')"
    rtsp_server.kill()
    wait_for(
        lambda: driver.execute_script(is_reconnecting), 30, "the ring tile to say reconnecting"
    )
    state = driver.find_element("css selector", '.tile[data-camera="ring"] .overlay-state')
    assert "reconnecting" in state.text
    before = driver.execute_script(PIXELS, "board")
    wait_for(lambda: driver.execute_script(PIXELS, "board") != before, 10, "the other camera to go on")  # fmt: skip
    frame = lambda: driver.execute_script(
        "return document.querySelector('.tile[data-camera=\"ring\"] canvas.frame').dataset.frame"
    )  # noqa: E731
    stale_frame = frame()
    rtsp_server.start()
    wait_for(
        lambda: not driver.execute_script(is_reconnecting) and frame() != stale_frame,
        60,
        "the ring camera to come back",
    )


def check_page_reconnects(driver):
    """The page's socket is cut (as a network blip would): it says so, reconnects, and its
    frames go on."""
    frame = lambda: driver.execute_script(
        "return document.querySelector('.tile[data-camera=\"board\"] canvas.frame').dataset.frame"
    )  # noqa: E731
    connections = "return window.artDashboard.connections"
    before = driver.execute_script(connections)
    driver.execute_script("window.artDashboard.socket.close()")
    wait_for(lambda: driver.execute_script(connections) > before, 15, "the page to reconnect")
    assert driver.find_element("id", "connection").text == "live"
    seen = frame()
    wait_for(lambda: frame() != seen, 15, "frames after the page reconnected")
