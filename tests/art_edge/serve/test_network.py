"""The rig's network surface, probed as someone on the venue's network would: a live `art-edge`
(its own process, real sockets, the descriptor limit systemd gives a service) with the dashboard
in localhost mode and /metrics. Half-sent requests by the thousand, other pages and DNS
rebinding (Host, Origin), bytes that are not ASCII, links out of the clips folder; and the
dashboard's viewers, capped, their frames drawn once for all of them within a CPU budget."""

import json
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from art_edge.rig.config import DashboardConfig
from art_edge.rig.report import CameraSnapshot
from art_edge.serve import web
from art_edge.serve.web import WebServer, clip_path

from benchlib import fetch, free_port, wait_for

DESCRIPTORS = 1024  # systemd's default soft limit for a service


class LiveEdge:
    """`art-edge` with an endless synthetic camera at 30 FPS, the dashboard (no token: localhost
    mode) and /metrics on localhost, clips on, at most DESCRIPTORS open files."""

    def __init__(self, engine_dir, folder: Path, *extra):
        self.web, self.metrics, self.clips = free_port(), free_port(), folder / "clips"
        self.log = folder / "art-edge.log"
        cmd = [
            sys.executable, "-m", "art_edge.cli", "--engine", str(engine_dir),
            "--source", "cam=synthetic://?frames=16&size=96&fps=30&clips=0", "--headless",
            "--window", "12", "--stride", "3", "--threads", "1", "--min-score", "0",
            "--min-duration", "0", "--clips", str(self.clips), "--pre", "0.2", "--post", "0.2",
            "--web", f"127.0.0.1:{self.web}", "--metrics", f"127.0.0.1:{self.metrics}", *extra,
        ]  # fmt: skip
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))  # noqa: E731
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit
            )
        wait_for(lambda: self.get("/healthz", self.metrics)[0] == 200, 60, "art-edge's /healthz")
        wait_for(lambda: self.get("/api/state")[0] == 200, 30, "art-edge's dashboard")

    def get(self, path: str, port: int | None = None, headers: dict | None = None, timeout=10):
        return fetch(f"http://127.0.0.1:{port or self.web}{path}", headers, timeout)

    def frames(self) -> float:
        status, _, body = self.get("/metrics", self.metrics, timeout=5)
        assert status == 200, f"/metrics did not answer ({status})"
        return float(re.search(r'art_frames_total\{camera="cam"\} (\S+)', body.decode()).group(1))

    def fps(self, seconds: float) -> float:
        f0, t0 = self.frames(), time.monotonic()
        time.sleep(seconds)
        return (self.frames() - f0) / (time.monotonic() - t0)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGINT; → (exit status, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout), time.monotonic() - started

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def live(engine_dir, tmp_path_factory):
    edge = LiveEdge(engine_dir, tmp_path_factory.mktemp("live"), "--web-origin", "https://rig.example.org")  # fmt: skip
    yield edge
    if edge.proc.poll() is None:
        edge.stop()


def raw_request(port: int, request: bytes) -> bytes:
    """What the server answers to `request`, sent byte for byte (its status line and headers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def ws_connect(port: int, **options):
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, proxy=None, **options)


def test_other_pages_and_dns_rebinding_are_refused(live):
    """Without a token (localhost mode): a Host that is not the dashboard's own (a rebound DNS
    name) gets 403 and no state; a WebSocket from another page's origin, or from a sandboxed page
    (Origin null), is refused; the dashboard's own names and the --web-origin are served."""
    from websockets.exceptions import InvalidStatus

    port = live.web
    for host in ("evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}"):
        status, _, body = live.get("/api/state", headers={"Host": host})
        assert status == 403 and b"cameras" not in body and b"--web-origin" in body, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "rig.example.org:443"):
        assert live.get("/api/state", headers={"Host": host})[0] == 200, host
    for origin in ("http://evil.example", f"http://evil.example:{port}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(port, origin=origin)
        assert refused.value.response.status_code == 403, origin
        assert live.get("/api/state", headers={"Origin": origin})[0] == 403, origin
    for origin in (f"http://127.0.0.1:{port}", "https://rig.example.org"):
        with ws_connect(port, origin=origin) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "engine"
            frame = next(m for m in iter(lambda: ws.recv(timeout=10), None) if isinstance(m, bytes))
            assert len(frame) > 100
    with ws_connect(port) as ws:  # a script sends no Origin: it is no web page
        assert json.loads(ws.recv(timeout=10))["type"] == "engine"
    assert "Traceback" not in live.log_text()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/state HTTP/1.1\r\nHost: HOST\r\nCookie: art_edge_token=\xff\xfe\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: HOST\r\nX-Name: caf\xc3\xa9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: HOST\r\nUser-Agent: a\x01b\r\n\r\n",
        b"GET /api/state?token=\xff HTTP/1.1\r\nHost: HOST\r\n\r\n",
        b"GET /clips/\xff.mp4 HTTP/1.1\r\nHost: HOST\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: HOST\r\nX-Long: " + b"a" * 40_000 + b"\r\n\r\n",
    ],
    ids=["cookie 0xFF", "UTF-8 header", "control byte", "query 0xFF", "path 0xFF", "40 KB header"],
)
def test_bad_bytes_get_a_400_never_a_traceback(live, request_bytes):
    before = live.log_text()
    for port in (live.web, live.metrics):
        request = request_bytes.replace(b"HOST", f"127.0.0.1:{port}".encode())
        assert status_of(raw_request(port, request)) == 400
    time.sleep(0.2)
    assert live.log_text() == before  # nothing logged: the sender's mistake is not the rig's news


def test_only_regular_files_inside_the_clips_folder_are_served(live, tmp_path):
    """A link in the clips folder to a file outside it, a link to a folder, a folder named like a
    clip and traversal of every spelling get 404; a clip, and a link to one beside it, are
    served."""
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not for the network")
    clips = live.clips
    clips.mkdir(exist_ok=True)
    (clips / "real.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (clips / "out.mp4").symlink_to(outside)
    (clips / "up.mp4").symlink_to(tmp_path)
    (clips / "beside.mp4").symlink_to(clips / "real.mp4")
    (clips / "dir.mp4").mkdir()
    for name in ("out.mp4", "up.mp4", "dir.mp4", "..%2Fsecret.mp4", "%2e%2e%2fsecret.mp4",
                 "..%5csecret.mp4", f"{outside}".replace("/", "%2F"), "nothing.mp4"):  # fmt: skip
        status, _, body = live.get(f"/clips/{name}")
        assert status == 404 and b"not for the network" not in body, name
    for path in ("/static/..%2F..%2Fweb.py", "/static/%2e%2e/web.py", "/static//etc/passwd"):
        assert live.get(path)[0] == 404, path
    assert live.get("/clips/real.mp4")[:3:2] == (200, b"\x00\x00\x00\x18ftypmp42")
    assert live.get("/clips/beside.mp4")[0] == 200
    assert clip_path(str(clips), "out.mp4") is None and clip_path(str(clips), "real.mp4")


def test_a_flood_of_half_sent_requests_costs_the_rig_nothing(engine_dir, tmp_path):
    """1,100 connections that each send a request line and one header and never finish (more than
    the process may open: 1,024), on the dashboard's port and on /metrics': recognition keeps
    its frame rate (within 20 %), /healthz and the page answer during the flood, nothing is
    logged, and the rig shuts down in time."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(hard, 4096) < 1200:
        pytest.skip(f"this test opens 1,100 connections; its descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    edge, held = LiveEdge(engine_dir, tmp_path), []
    try:
        before = edge.fps(4)
        for i in range(1100):
            sock = socket.create_connection(("127.0.0.1", edge.web if i % 4 else edge.metrics))
            sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(sock)
        during = edge.fps(4)
        health = [edge.get("/healthz", edge.metrics, timeout=3) for _ in range(5)]
        page = edge.get("/api/state", timeout=3)
        code, seconds = edge.stop()
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if edge.proc.poll() is None:
            edge.proc.kill()
    log = edge.log_text()
    assert during >= 0.8 * before, (before, during)
    assert [h[0] for h in health] == [200] * 5 and page[0] == 200
    assert code == 0 and seconds < 10, (code, seconds)
    assert "Traceback" not in log and "Too many open files" not in log and len(log) < 5000
    assert "INFO:" not in log  # the servers say nothing of their own


def camera(name: str, frame=None) -> CameraSnapshot:
    counts = dict.fromkeys(("frames", "decisions", "dropped", "decisions_skipped", "corrupt",
                            "truncated", "reconnects", "clips_scored", "clips_correct"), 0)  # fmt: skip
    return CameraSnapshot(name, "live", **counts, fps=30.0, frame_latency_ms=(None, None),
                          decision_latency_ms=(None, None), encode_ms_p50=None, head_ms_p50=None,
                          idle_s=0.0, last_frame=frame)  # fmt: skip


class MovingCamera:
    """A rig's snapshot() of two cameras whose newest frame changes at every call."""

    def __init__(self):
        self.index, self.rng = 0, np.random.default_rng(0)
        self.image = self.rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)

    def __call__(self):
        self.index += 1
        frame = SimpleNamespace(index=self.index, segment=0, image=self.image, tracks=None)
        return SimpleNamespace(cameras=(camera("a", frame), camera("b", frame)), segments=(),
                               clips=None, classes=("x", "y"))  # fmt: skip


def dashboard(**settings) -> WebServer:
    engine = SimpleNamespace(manifest={}, classes=["x", "y"], backend="onnxruntime")
    config = DashboardConfig(address=f"127.0.0.1:{free_port()}", **settings)
    server = WebServer(MovingCamera(), engine, config)
    server.start()
    return server


class Viewers:
    """`count` viewers of `server` for `seconds`, each on a thread; `frames`: what each got.

    with Viewers(server, 4, seconds=3) as viewers:
        ...                  # while they watch
    viewers.frames           # once all have left
    """

    def __init__(self, server: WebServer, count: int, seconds: float):
        self.frames = [[] for _ in range(count)]
        self.threads = [threading.Thread(target=viewer, args=(server, seconds, f)) for f in self.frames]  # fmt: skip

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        for thread in self.threads:
            thread.join()


def viewer(server: WebServer, seconds: float, got: list):
    """One viewer for `seconds`: its frames go to `got`."""
    with ws_connect(server.port) as ws:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                got.append(message)


def test_viewers_are_capped_and_share_each_drawing(monkeypatch):
    """--web-clients 4: a fifth viewer is turned away (close code 1013) while four watch; the
    four get the same frames, drawn once each round for all of them: the rounds, not the viewers,
    set the cost."""
    monkeypatch.setattr(web, "FULL_VIEWERS", 4)
    server = dashboard(clients=4, fps=5, cpu=1.0)  # no budget to slow the rounds down
    drawn = []
    render = type(server.hub.tiles["a"]).render
    monkeypatch.setattr(type(server.hub.tiles["a"]), "render",
                        lambda self, cam: drawn.append(cam.name) or render(self, cam))  # fmt: skip
    try:
        with Viewers(server, 4, seconds=3) as viewers:
            wait_for(lambda: server.hub.viewers == 4, 10, "four viewers")
            with ws_connect(server.port) as fifth:
                with pytest.raises(Exception) as closed:  # noqa: PT011 (ConnectionClosed)
                    while True:
                        fifth.recv(timeout=5)
            assert fifth.close_code == 1013, closed.value
        frames = viewers.frames
    finally:
        server.close()
    rounds = server.hub.rounds
    assert 5 <= rounds <= 5 * 4 and len(drawn) == 2 * rounds  # ≤ --web-fps, two cameras a round
    assert all(len(f) >= rounds for f in frames)  # every viewer had (nearly) every round's frames


def test_the_page_keeps_to_its_cpu_budget():
    """With a budget no drawing fits in, the rate falls to its floor within seconds; the state
    message says so. With all the CPU the process has as its budget, it stays at --web-fps."""
    tight, roomy = dashboard(cpu=1e-5, fps=5), dashboard(cpu=1.0, fps=5)
    try:
        with Viewers(tight, 1, seconds=4) as slow, Viewers(roomy, 1, seconds=4) as fast:
            pass
        page = tight.state(tight.snapshot(), 0, 0)[0]["page"]
    finally:
        tight.close()
        roomy.close()
    assert tight.hub.rate <= 0.5 and page["fps"] == round(tight.hub.rate, 2)
    assert page["cpu_budget"] == 1e-5 and roomy.hub.rate == 5
    assert len(slow.frames[0]) < len(fast.frames[0]) / 2


def closed_after(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (None: still open after `seconds`)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_a_request_has_its_headers_in_time_however_they_come(monkeypatch):
    """With a 1 s header deadline: a connection that sends nothing, a request dribbled a byte
    at a time, and a second request left half-sent on a kept-alive connection are all cut
    within about a second; headers that come in many small pieces in time are served."""
    from art_edge.serve import guard

    monkeypatch.setattr(guard, "HEADER_TIMEOUT", 1.0)
    server = dashboard()
    request = f"GET /api/engine HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    try:
        silent = socket.create_connection(("127.0.0.1", server.port))
        assert 0.5 < closed_after(silent, 5) < 2.5
        dribbled, started = socket.create_connection(("127.0.0.1", server.port)), time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for byte in request[:-2]:  # never the last blank line, one byte every 0.1 s
                dribbled.send(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - started < 2.5
        with socket.create_connection(("127.0.0.1", server.port)) as pieces:
            for i in range(0, len(request), 3):
                pieces.send(request[i : i + 3])
                time.sleep(0.02)
            assert pieces.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
            pieces.send(request[:20])  # the next request, half-sent
            assert 0.5 < closed_after(pieces, 5) < 2.5
    finally:
        server.close()


def test_many_viewers_share_out_what_four_would_get(monkeypatch):
    """Eight viewers where the frames of two at full rate are allowed: each is sent one round in
    four, in turn; the frames sent, all viewers together, stay at two viewers' worth (eight get
    four times that without the cap), and every viewer gets some."""
    monkeypatch.setattr(web, "FULL_VIEWERS", 2)
    server = dashboard(fps=5, cpu=1.0)  # no budget to slow the rounds down
    try:
        with Viewers(server, 8, seconds=4) as viewers:
            wait_for(
                lambda: server.hub.stride == 4, 10, "a stride of 4 (8 viewers, 2 at full rate)"
            )
        frames = viewers.frames
    finally:
        server.close()
    rounds, sent = server.hub.rounds, sum(map(len, frames))
    assert all(frames) and sent <= 2 * 2 * rounds + 2 * 8 * 2  # two viewers' worth, and the start
