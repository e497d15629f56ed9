"""`art-edge --web HOST:PORT`: a live dashboard, served by the rig's own process.

    GET /                 the page (art_edge/static: no CDN, works on a rig with no internet)
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

from art_edge.config import DashboardConfig
from art_edge.errors import UserError
from art_edge.files import parse_host_port

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


def camera_state(cam, classes: list, stale_after: float) -> dict:
    """One tile's text: status, counters, the decided label and top-3, the open segment."""
    d, source = cam.decision, cam.source
    current = cam.segments.current if cam.segments is not None else None
    state = {
        "name": cam.name,
        "status": source.status,
        "reconnecting": source.status.startswith("reconnecting"),
        "stale": cam.silent(stale_after),
        "ended": cam.ended[0] if cam.ended else None,
        **cam.counters(),
        "label": classes[d.label] if d is not None else None,
        "score": round(float(d.score), 4) if d is not None else None,
        "topk": [[classes[c], round(float(p), 4)] for c, p in d.topk[:3]] if d else [],
        "current": None,
    }
    if current is not None:
        state["current"] = {
            "label": current.label,
            "start_ts": current.start_ts,
            "end_ts": current.end_ts,
            "score": round(float(current.peak_score), 4),
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

    def __init__(self, cam, classes: list):
        self.cam, self.classes = cam, classes
        self.lock = threading.Lock()
        self.key, self.jpeg = None, None

    def render(self) -> tuple[int, bytes] | None:
        """→ (frame index, JPEG) of the newest frame, or None before the first."""
        import cv2

        from art_edge.overlay import annotate

        cam = self.cam
        frame, decision = cam.last_frame, cam.decision
        if frame is None:
            return None
        with self.lock:
            if self.key != (frame.index, frame.segment, id(decision)):
                h, w = frame.image.shape[:2]
                roi_box = cam.roi.box(h, w) if cam.roi is not None else None
                p50 = cam.stats.decision_latency.percentile(50)
                bgr = annotate(
                    frame.image, decision, self.classes, cam.rate.fps, p50, roi_box, TILE_MAX_SIDE
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


class WebServer:
    """The dashboard of a rig: a Starlette app on a uvicorn server in a thread of its own."""

    def __init__(self, rig, config: DashboardConfig):
        """`config`: checked when it was built (art_edge.config)."""
        address = config.address
        self.rig, self.fps, self.token = rig, config.fps, config.token
        self.host, self.port = parse_host_port(address, "--web")
        self.facts = engine_facts(rig.engine)
        self.tiles = [Tile(cam, rig.classes) for cam in rig.cameras]
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
            return JSONResponse(self.state(0, 0)[0])

        async def clip(request):
            name, folder = request.path_params["name"], self.rig.config.clip.folder
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

    def state(self, segments_seen: int, clips_seen: int) -> tuple[dict, int, int]:
        """The cameras now, the segments and written clips after the ones already sent;
        → (the message, segments sent so far, clips sent so far)."""
        rig = self.rig
        records = rig.segment_records[segments_seen:]
        written = rig.clip_writer.written[clips_seen:] if rig.clip_writer is not None else []
        message = {
            "type": "state",
            "now": time.time(),
            "cameras": [
                camera_state(c, rig.classes, rig.config.prometheus.stale_after) for c in rig.cameras
            ],
            "segments": [segment_item(r) for r in records],
            "clips": [Path(p).name for p in written],
        }
        return message, segments_seen + len(records), clips_seen + len(written)

    async def feed(self, ws):
        """One browser: the engine's facts, then the state (twice a second) and the frames that
        are new (--web-fps at most), each send awaited: a slow browser gets fewer frames."""
        from starlette.websockets import WebSocketDisconnect

        await ws.accept()
        rig, sent = self.rig, {}
        seen_segments = max(0, len(rig.segment_records) - RECENT_SEGMENTS)
        written = rig.clip_writer.written if rig.clip_writer is not None else []
        seen_clips = max(0, len(written) - RECENT_SEGMENTS)
        try:
            await ws.send_json({"type": "engine", **self.facts})
            state_due = 0.0
            while not self.closing:
                started = time.monotonic()
                if started >= state_due:  # text changes slower than pictures: 2 a second
                    message, seen_segments, seen_clips = self.state(seen_segments, seen_clips)
                    await ws.send_json(message)
                    state_due = started + STATE_INTERVAL
                for tile in self.tiles:
                    got = await asyncio.to_thread(tile.render)
                    if got is not None and sent.get(tile.cam.name) != got[0]:
                        await ws.send_bytes(frame_message(tile.cam.name, *got))
                        sent[tile.cam.name] = got[0]
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
