"""`art-edge --web HOST:PORT`: a live dashboard, served by the rig's own process.

    GET /                 the page (art_edge/serve/static: no CDN, works on a rig with no internet)
    GET /api/engine       the engine's facts: model, classes, precision, backend, the INT8 gate
    GET /api/state        the cameras and the recent segments, as the page gets them
    GET /clips/NAME       a highlight clip (H.264 MP4, which browsers play), when --clips is on
    WS  /ws               pushes the state (twice a second) and each camera's annotated frame
                          (--web-fps at most)

The page's frames are drawn and JPEG-encoded on the server's thread, only while a browser is
connected, from the newest frame the encoder saw, and only as fast as the browser takes them: a
slow browser misses frames, recognition never waits for it. Bound to localhost unless told
otherwise; beyond localhost `--web-token` is required and every request carries it (`?token=` on
the first visit sets a cookie; scripts may send `Authorization: Bearer TOKEN`). Read-only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import cv2

from art_edge.errors import UserError
from art_edge.files import parse_host_port
from art_edge.rig.config import DashboardConfig
from art_edge.rig.observers import RigObserver
from art_edge.rig.report import CameraSnapshot, RigSnapshot
from art_edge.video.overlay import annotate

STATIC = Path(__file__).parent / "static"
COOKIE = "art_edge_token"
RECENT_SEGMENTS = 200  # what a newly connected page gets of the segments before it came
JPEG_QUALITY = 75
STATE_INTERVAL = 0.5  # seconds between the state messages a page gets (frames: --web-fps)
TILE_MAX_SIDE = 640  # a camera's frame is scaled down to this before it is drawn for the page
CLIP_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.mp4$")


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
    """One camera's annotated JPEG for the page, drawn once per new frame or decision however many
    browsers are connected."""

    def __init__(self, camera: str, classes):
        self.camera, self.classes = camera, classes
        self.lock = threading.Lock()
        self.key, self.jpeg = None, None

    def render(self, cam: CameraSnapshot) -> tuple[int, bytes] | None:
        """→ (frame index, JPEG) of the camera's newest frame, or None before the first."""
        frame, decision = cam.last_frame, cam.decision
        if frame is None:
            return None
        with self.lock:
            if self.key != (frame.index, frame.segment, id(decision)):
                h, w = frame.image.shape[:2]
                roi_box = cam.roi.box(h, w) if cam.roi is not None else None
                p50 = cam.decision_latency_ms[0]
                bgr = annotate(
                    frame.image, decision, self.classes, cam.fps, p50, roi_box, TILE_MAX_SIDE
                )
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self.key, self.jpeg = (frame.index, frame.segment, id(decision)), jpeg.tobytes()
            return (frame.index, self.jpeg) if self.jpeg is not None else None


def frame_message(camera: str, index: int, jpeg: bytes) -> bytes:
    """A binary WebSocket message: 2-byte header length, a JSON header, the JPEG."""
    header = json.dumps({"camera": camera, "frame": index}).encode()
    return len(header).to_bytes(2, "big") + header + jpeg


class TokenGate:
    """ASGI middleware: with a token, every HTTP request and WebSocket carries it (query, cookie
    or bearer header); a query token that matches is remembered in a cookie for the page's own
    requests (scripts, frames, clips)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    def presented(self, scope) -> tuple[str | None, bool]:
        """→ (the token the request carries, whether it came in the query)."""
        query = parse_qs(scope.get("query_string", b"").decode())
        if "token" in query:
            return query["token"][0], True
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
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
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            from starlette.responses import PlainTextResponse

            response = PlainTextResponse(
                "wrong or missing token: open the page as /?token=TOKEN (the --web-token of this "
                "art-edge)\n",
                status_code=401,
            )
            return await response(scope, receive, send)
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
    on a uvicorn server in a thread of its own."""

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
        address = config.address
        self.snapshot, self.fps, self.token = snapshot, config.fps, config.token
        self.clips, self.stale_after = clips, stale_after
        self.host, self.port = parse_host_port(address, "--web")
        self.facts = engine_facts(engine)
        self.tiles = {cam.name: Tile(cam.name, engine.classes) for cam in snapshot().cameras}
        self.closing = False
        self.sock = self._bind(address)
        self.app = TokenGate(self._routes(), self.token)
        self.server = self.thread = None

    def _bind(self, address: str) -> socket.socket:
        """Bound now, so a port in use fails before any camera opens."""
        host = self.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.port))
        except OSError as e:
            sock.close()
            raise UserError(
                f"--web {address}: cannot listen there ({e.strerror}); pick a free port"
            ) from None
        return sock

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
            name, folder = request.path_params["name"], self.clips
            path = Path(folder) / name if folder and CLIP_NAME.match(name) else None
            if path is None or not path.is_file():
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
        message = {
            "type": "state",
            "now": time.time(),
            "cameras": [camera_state(c, snap.classes, self.stale_after) for c in snap.cameras],
            "segments": [segment_item(r) for r in records],
            "clips": [Path(p).name for p in written],
        }
        return message, segments_seen + len(records), clips_seen + len(written)

    async def feed(self, ws):
        """One browser: the engine's facts, then the state (twice a second) and the frames that
        are new (--web-fps at most), each send awaited: a slow browser gets fewer frames."""
        from starlette.websockets import WebSocketDisconnect

        await ws.accept()
        snap, sent = self.snapshot(), {}
        seen_segments = max(0, len(snap.segments) - RECENT_SEGMENTS)
        seen_clips = max(0, len(snap.clips or ()) - RECENT_SEGMENTS)
        try:
            await ws.send_json({"type": "engine", **self.facts})
            state_due = 0.0
            while not self.closing:
                started, snap = time.monotonic(), self.snapshot()
                if started >= state_due:  # text changes slower than pictures: 2 a second
                    message, seen_segments, seen_clips = self.state(snap, seen_segments, seen_clips)
                    await ws.send_json(message)
                    state_due = started + STATE_INTERVAL
                for cam in snap.cameras:
                    got = await asyncio.to_thread(self.tiles[cam.name].render, cam)
                    if got is not None and sent.get(cam.name) != got[0]:
                        await ws.send_bytes(frame_message(cam.name, *got))
                        sent[cam.name] = got[0]
                await asyncio.sleep(max(0.0, 1.0 / self.fps - (time.monotonic() - started)))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the browser went away; it reconnects on its own
        except Exception as e:  # noqa: BLE001 (a closed socket raises its library's own error)
            if type(e).__name__ not in (
                "ConnectionClosed",
                "ConnectionClosedOK",
                "ClientDisconnected",
            ):
                raise

    def start(self):
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name="art-edge:web",
            daemon=True,
        )
        self.thread.start()

    def close(self):
        self.closing = True
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=5)
        self.sock.close()
