"""`art-edge --web HOST:PORT`: a live dashboard, served by the rig's own process.

    GET /                 the page (art_edge/serve/static: no CDN, works on a rig with no internet)
    GET /api/engine       the engine's facts: model, classes, precision, backend, the INT8 gate
    GET /api/state        the cameras and the recent segments, as the page gets them
    GET /clips/NAME       a highlight clip (H.264 MP4, which browsers play), when --clips is on
    WS  /ws               pushes the state (twice a second) and each camera's annotated frame

The page's frames are drawn once for all its viewers (FrameHub), on a thread of the server's,
only while a viewer is connected, from the newest frame the encoder saw: at most --web-fps a
camera, fewer when the page's CPU would pass --web-cpu of the CPU available to the rig (and
beyond four viewers' worth, the frames are shared out among them); each send is awaited, so a
slow viewer misses frames and recognition never waits for it. Bound to localhost unless told
otherwise; beyond localhost `--web-token` is required and every request carries it (`?token=` on
the first visit sets a cookie; scripts may send `Authorization: Bearer TOKEN`). In every mode the
Host and Origin are checked, and the server holds the network to the limits of
art_edge.serve.guard. Read-only.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import math
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs

import cv2

from art_edge.rig.config import DashboardConfig
from art_edge.rig.observers import RigObserver
from art_edge.rig.report import CameraSnapshot, RigSnapshot
from art_edge.serve.guard import GuardedServer, Hosts, RequestCheck, respond
from art_edge.video.overlay import annotate

STATIC = Path(__file__).parent / "static"
COOKIE = "art_edge_token"
RECENT_SEGMENTS = 200  # what a newly connected page gets of the segments before it came
JPEG_QUALITY = 75
STATE_INTERVAL = 0.5  # seconds between the state messages a page gets (frames: --web-fps)
TILE_MAX_SIDE = 640  # a camera's frame is scaled down to this before it is drawn for the page
CLIP_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.mp4$")
HTTP_CONNECTIONS = 64  # connections beside the viewers' WebSockets (the page, its files, scripts)
SEND_TIMEOUT = 10.0  # seconds a viewer may take to take a message before it is let go
MIN_PAGE_FPS = 0.2  # the page's frames per camera a second never fall below this, budget or not
FULL_VIEWERS = 4  # frames sent, all viewers together, at most what this many get at full rate


def engine_facts(engine) -> dict:
    """What the page's engine panel shows, from the manifest."""
    manifest = engine.manifest
    model = manifest.get("model", {})
    keys = ("name", "variant", "backbone", "image_size", "num_frames", "num_classes", "dim")
    int8 = manifest.get("int8") or {}
    gate_keys = ("passed", "top1_agreement", "top1_drop_points", "method", "kept_in_float")
    return {
        "model": {k: model[k] for k in keys if k in model},
        "classes": list(engine.classes),
        "precision": manifest.get("precision"),
        "backend": getattr(engine, "backend", None),
        "created": manifest.get("created"),
        "toolkit_version": manifest.get("toolkit_version"),
        "int8_gate": {k: int8[k] for k in gate_keys if k in int8} or None,
    }


def camera_state(cam: CameraSnapshot, classes, stale_after: float) -> dict:
    """One tile's text: status, counters, the decided label and top-3, the open segment."""
    d, current = cam.decision, cam.open_segment
    state = {
        "name": cam.name,
        "status": cam.status,
        "reconnecting": cam.status.startswith("reconnecting"),
        "stale": cam.silent(stale_after),
        "ended": cam.ended,
        **cam.counters(),
        "label": classes[d.label] if d is not None else None,
        "score": round(float(d.score), 4) if d is not None else None,
        "topk": [[classes[c], round(float(p), 4)] for c, p in d.topk[:3]] if d else [],
        "current": None,
    }
    if cam.tracks is not None:  # a tracked camera: its live tracks, each with its label
        state["tracks"] = [
            {"id": tid, "box": [round(float(v), 1) for v in box],
             "label": classes[label] if label is not None else None,
             "score": round(float(score), 4) if score is not None else None}
            for tid, box, label, score in cam.tracks
        ]  # fmt: skip
        state["label"] = f"{len(cam.tracks)} tracks" + (
            f" ({cam.tracks_left_out} over --max-tracks)" if cam.tracks_left_out else ""
        )
        state["score"] = None
        state["topk"] = [[f"#{t['id']} {t['label']}", t["score"]] for t in state["tracks"]
                         if t["label"] is not None]  # fmt: skip
    if current is not None:
        state["current"] = {
            "label": current["label"],
            "start_ts": current["start_ts"],
            "end_ts": current["end_ts"],
            "score": round(float(current["peak_score"]), 4),
        }
    return state


def segment_item(record: dict) -> dict:
    """A segment record for the page: its clip by name (the page fetches /clips/NAME)."""
    item = {k: v for k, v in record.items() if k != "clip"}
    if record.get("clip"):
        item["clip"] = Path(record["clip"]).name
    return item


class Tile:
    """One camera's annotated JPEG for the page, drawn again only when its frame or its decision
    changed."""

    def __init__(self, classes):
        self.classes = classes
        self.key, self.jpeg = None, None

    def render(self, cam: CameraSnapshot) -> tuple[int, bytes] | None:
        """→ (frame index, JPEG) of the camera's newest frame, or None before the first."""
        frame, decision = cam.last_frame, cam.decision
        if frame is None:
            return None
        if self.key != (frame.index, frame.segment, id(decision)):
            h, w = frame.image.shape[:2]
            roi_box = cam.roi.box(h, w) if cam.roi is not None else None
            p50 = cam.decision_latency_ms[0]
            bgr = annotate(frame.image, decision, self.classes, cam.fps, p50, roi_box,
                           TILE_MAX_SIDE, cam.tracks_in(frame))  # fmt: skip
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self.key, self.jpeg = (frame.index, frame.segment, id(decision)), jpeg.tobytes()
        return (frame.index, self.jpeg) if self.jpeg is not None else None


def frame_message(camera: str, index: int, jpeg: bytes) -> bytes:
    """A binary WebSocket message: 2-byte header length, a JSON header, the JPEG."""
    header = json.dumps({"camera": camera, "frame": index}).encode()
    return len(header).to_bytes(2, "big") + header + jpeg


class CpuClock:
    """CPU seconds available to this process so far: those it used (all its threads) and those
    the cores it may run on left idle (Linux's /proc/stat; elsewhere, wall time × cores). A share
    of it is a share of what the rig could have had: where the pipeline takes all it can, the
    share of its frames a page costs; it grows on a slower CPU and when other programs take
    part of the cores, and shrinks when CPU lies idle."""

    def __init__(self):
        affinity = getattr(os, "sched_getaffinity", None)
        self.cpus = sorted(affinity(0)) if affinity else list(range(os.cpu_count() or 1))
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def idle(self) -> float | None:
        """Seconds the allowed cores were idle since boot (None where /proc/stat is missing)."""
        names = {f"cpu{n}" for n in self.cpus}
        try:
            with open("/proc/stat") as f:
                rows = [line.split() for line in f if line.startswith("cpu")]
        except OSError:
            return None
        return sum(int(r[4]) + int(r[5]) for r in rows if r[0] in names) / self.tick

    def now(self) -> float:
        idle = self.idle()
        if idle is None:
            return time.monotonic() * len(self.cpus)
        return time.process_time() + idle


class FrameHub:
    """The page's frames, drawn once for every viewer. While a viewer is connected, rounds run on
    the server's loop: each draws every camera's newest frame (on a thread of its own) and wakes
    the viewers' senders. The rounds come at most `fps` a second, and fewer when the page's CPU
    time (the drawing, and the server thread's work: sending, the state, requests) over the last
    second would pass `budget` of the CPU available to the rig (CpuClock): a slower or busier CPU
    gets fewer frames, never a larger share of it. The frames sent, all viewers together, are
    capped at what FULL_VIEWERS viewers get at the full rate: beyond that many, each viewer is
    sent one round in `stride`, in turn, so 50 viewers cost what four do."""

    def __init__(self, snapshot, classes, fps: float, budget: float):
        self.snapshot, self.fps, self.budget = snapshot, fps, budget
        self.clock = CpuClock()
        self.tiles = {cam.name: Tile(classes) for cam in snapshot().cameras}
        self.frames: dict[str, tuple[int, bytes]] = {}  # replaced whole each round, never edited
        self.rate, self.cpu_share = fps, 0.0  # rounds a second now; the page's share last second
        self.rounds = self.viewers = 0
        self.stride, self.seats = 1, itertools.count()  # a viewer's rounds; its turn among them
        self.draw_cpu = 0.0  # CPU seconds of the drawing thread, all rounds
        self.new_round: asyncio.Event | None = None
        self.task = self.mark = None
        self.closing = False

    def join(self) -> int:
        """A viewer came (called on the server's loop): the first starts the rounds; → its seat
        (which of the rounds are its turn, see `due`)."""
        self.viewers += 1
        if self.task is None or self.task.done():
            self.new_round = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self.run())
        return next(self.seats)

    def due(self, seat: int) -> bool:
        """Whether the newest round's frames go to the viewer in `seat`."""
        return (self.rounds + seat) % self.stride == 0

    def leave(self):
        self.viewers -= 1

    async def next_round(self, seen: int, timeout: float):
        """Until a round after round `seen` is drawn, or `timeout` seconds."""
        if self.rounds == seen:
            try:
                await asyncio.wait_for(self.new_round.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def run(self):
        loop, self.mark = asyncio.get_running_loop(), None
        with ThreadPoolExecutor(1, thread_name_prefix="art-edge:web-draw") as drawing:
            while self.viewers > 0 and not self.closing:
                started = time.monotonic()
                frames, cpu = await loop.run_in_executor(drawing, self.draw, self.snapshot())
                self.frames, self.draw_cpu = {**self.frames, **frames}, self.draw_cpu + cpu
                self.rounds += 1
                done, self.new_round = self.new_round, asyncio.Event()
                done.set()
                self.adapt()
                self.stride = max(
                    1, math.ceil(self.viewers * self.rate / (FULL_VIEWERS * self.fps))
                )
                await asyncio.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))

    def draw(self, snap: RigSnapshot) -> tuple[dict, float]:
        """On the drawing thread: each camera's newest frame, drawn and encoded; → the frames by
        camera and the CPU seconds they took."""
        cpu, frames = time.thread_time(), {}
        for cam in snap.cameras:
            got = self.tiles[cam.name].render(cam)
            if got is not None:
                frames[cam.name] = got
        return frames, time.thread_time() - cpu

    def adapt(self):
        """Once a second: the rate of rounds at which the page's CPU would be its budget, from
        what a round cost over the last second; taken at once when lower, halfway when higher
        (down at once, up smoothly)."""
        cpu = time.thread_time() + self.draw_cpu  # called on the server's loop: its thread's
        now, available = time.monotonic(), self.clock.now()
        if self.mark is None:
            self.mark = (now, available, cpu, self.rounds)
            return
        then, available_then, cpu_then, rounds_then = self.mark
        if now - then < 1.0:
            return
        used, offered = cpu - cpu_then, max(available - available_then, 1e-3)
        self.cpu_share = used / offered
        per_round = max(used / max(1, self.rounds - rounds_then), 1e-6)
        target = self.budget * offered / (now - then) / per_round  # rounds a second
        rate = target if target < self.rate else (self.rate + target) / 2
        self.rate = min(self.fps, max(MIN_PAGE_FPS, rate))
        self.mark = (now, available, cpu, self.rounds)


def clip_path(folder: str | None, name: str) -> Path | None:
    """The clip `name` of `folder`: a regular file directly in it once links are resolved
    (None for anything else: a link out of it, a folder, a device, a name of another form)."""
    if not folder or not CLIP_NAME.match(name):
        return None
    root = Path(folder).resolve()
    path = (root / name).resolve()
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return None
    return path if regular and path.parent == root else None


class TokenGate:
    """ASGI middleware: with a token, every HTTP request and WebSocket carries it (query, cookie
    or bearer header); a query token that matches is remembered in a cookie for the page's own
    requests (scripts, frames, clips). Behind RequestCheck: the headers are printable ASCII."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    def presented(self, scope) -> tuple[str | None, bool]:
        """→ (the token the request carries, whether it came in the query)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value, False
        return None, False

    async def __call__(self, scope, receive, send):
        if self.token is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given, in_query = self.presented(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            text = (
                "wrong or missing token: open the page as /?token=TOKEN (the --web-token of this "
                "art-edge)"
            )
            return await respond(scope, send, 401, text)
        if not in_query or scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


class WebServer(RigObserver):
    """The dashboard of a rig, an output of it that only reads snapshots of it: a Starlette app
    on a uvicorn server in a thread of its own, behind the guard (art_edge.serve.guard)."""

    def __init__(
        self,
        snapshot,
        engine,
        config: DashboardConfig,
        clips: str | None = None,
        stale_after: float = 10.0,
    ):
        """`snapshot()`: the rig's (art_edge.rig.report.RigSnapshot); `config`: checked when it was
        built (art_edge.rig.config); `clips`: the folder of the clips it serves."""
        self.snapshot, self.config, self.token = snapshot, config, config.token
        self.clips, self.stale_after = clips, stale_after
        self.facts = engine_facts(engine)
        # bound now, so a port in use fails before any camera opens
        self.guard = GuardedServer("--web", config.address, config.clients + HTTP_CONNECTIONS)
        self.host, self.port = self.guard.host, self.guard.port
        self.hub = FrameHub(snapshot, engine.classes, config.fps, config.cpu)
        hosts = Hosts(self.host, self.port, config.origins, "allow the name with --web-origin")
        self.app = RequestCheck(TokenGate(self._routes(), self.token), hosts)
        self.closing = False
        self._shared = None  # (when, the snapshot the viewers' state messages are made from)
        self._cameras = (None, [])  # (a snapshot, its cameras' part of the state)

    def _routes(self):
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
        from starlette.routing import Mount, Route, WebSocketRoute
        from starlette.staticfiles import StaticFiles

        async def page(request):
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

        async def engine(request):
            return JSONResponse(self.facts)

        async def state(request):
            return JSONResponse(self.state(self.snapshot(), 0, 0)[0])

        async def clip(request):
            path = clip_path(self.clips, request.path_params["name"])
            if path is None:
                return PlainTextResponse("no such clip (yet)\n", status_code=404)
            return FileResponse(path, media_type="video/mp4")

        return Starlette(
            routes=[
                Route("/", page),
                Route("/api/engine", engine),
                Route("/api/state", state),
                Route("/clips/{name}", clip),
                WebSocketRoute("/ws", self.feed),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ]
        )

    def state(
        self, snap: RigSnapshot, segments_seen: int, clips_seen: int
    ) -> tuple[dict, int, int]:
        """The cameras of `snap`, its segments and written clips after the ones already sent;
        → (the message, segments sent so far, clips sent so far)."""
        records = snap.segments[segments_seen:]
        written = (snap.clips or ())[clips_seen:]
        hub = self.hub
        message = {
            "type": "state",
            "now": time.time(),
            "cameras": self.cameras_of(snap),
            "segments": [segment_item(r) for r in records],
            "clips": [Path(p).name for p in written],
            # the page's own frames: rounds a second now, viewers (each sent one round in
            # `stride`), the page's share of the CPU last second and its budget
            "page": {
                "fps": round(hub.rate, 2),
                "viewers": hub.viewers,
                "stride": hub.stride,
                "cpu": round(hub.cpu_share, 4),
                "cpu_budget": hub.budget,
            },
        }
        return message, segments_seen + len(records), clips_seen + len(written)

    async def feed(self, ws):
        """One viewer: the engine's facts, then the state (twice a second) and the new frames of
        each round that is its turn, each send awaited (a slow viewer gets fewer frames; one that takes nothing for
        SEND_TIMEOUT seconds is let go). Beyond --web-clients viewers, a viewer is turned away."""
        from starlette.websockets import WebSocketDisconnect

        if self.hub.viewers >= self.config.clients:
            await ws.accept()
            reason = f"too many viewers (--web-clients {self.config.clients}); try later"
            return await ws.close(code=1013, reason=reason)
        seat = self.hub.join()
        try:
            await ws.accept()
            await self.send_loop(ws, seat)
        except (WebSocketDisconnect, RuntimeError, OSError, asyncio.TimeoutError):
            pass  # the browser went away, or took nothing for too long; it reconnects on its own
        except Exception as e:  # noqa: BLE001 (a closed socket raises its library's own error)
            if type(e).__name__ not in (
                "ConnectionClosed",
                "ConnectionClosedOK",
                "ClientDisconnected",
            ):
                raise
        finally:
            self.hub.leave()

    def shared_snapshot(self) -> RigSnapshot:
        """The rig's snapshot for the viewers' state messages: one for all of them every half
        STATE_INTERVAL (a snapshot takes the rig's locks; 50 viewers need not take them 50 times)."""
        now = time.monotonic()
        if self._shared is None or now - self._shared[0] >= STATE_INTERVAL / 2:
            self._shared = (now, self.snapshot())
        return self._shared[1]

    def cameras_of(self, snap: RigSnapshot) -> list:
        """The cameras' part of the state for `snap`, made once however many viewers get it."""
        if self._cameras[0] is not snap:
            stale = self.stale_after
            self._cameras = (snap, [camera_state(c, snap.classes, stale) for c in snap.cameras])
        return self._cameras[1]

    async def send_loop(self, ws, seat: int):
        snap, sent, hub = self.shared_snapshot(), {}, self.hub
        seen_segments = max(0, len(snap.segments) - RECENT_SEGMENTS)
        seen_clips = max(0, len(snap.clips or ()) - RECENT_SEGMENTS)
        await asyncio.wait_for(ws.send_json({"type": "engine", **self.facts}), SEND_TIMEOUT)
        state_due = 0.0
        while not self.closing:
            now, seen_round = time.monotonic(), hub.rounds
            if now >= state_due:  # text changes slower than pictures: 2 a second
                message, seen_segments, seen_clips = self.state(
                    self.shared_snapshot(), seen_segments, seen_clips
                )
                await asyncio.wait_for(ws.send_json(message), SEND_TIMEOUT)
                state_due = now + STATE_INTERVAL
            for name, (index, jpeg) in hub.frames.items() if hub.due(seat) else ():
                if sent.get(name) != index:
                    message = frame_message(name, index, jpeg)
                    await asyncio.wait_for(ws.send_bytes(message), SEND_TIMEOUT)
                    sent[name] = index
            await hub.next_round(seen_round, max(0.0, state_due - time.monotonic()))

    def start(self):
        self.guard.start(self.app, "art-edge:web")

    def close(self):
        self.closing = self.hub.closing = True
        self.guard.close()
