"""What stands between the rig's servers (the dashboard, /metrics) and the network they listen on.

    server = GuardedServer("--web", "127.0.0.1:8080", connections=128)   # bound now
    server.start(app)      # uvicorn on a thread of its own, behind the guard
    server.close()

Each server holds the network to these limits, so that whoever opens connections pays for them,
never the rig (its descriptors, its threads, its recognition, its shutdown):

- a request's headers are complete within HEADER_TIMEOUT seconds of its first byte (of the
  connection, for its first request), or the connection is cut: a half-sent request is never
  waited for;
- a kept-alive connection with no request for IDLE_TIMEOUT seconds is closed;
- at most `connections` connections at once: at the cap, a new connection takes the place of the
  oldest one still waiting for its headers, or is closed at once when none is waiting;
- a request whose headers or query hold bytes other than printable ASCII gets a 400;
- with `Hosts`, the Host header must name this server (DNS rebinding) and a browser's Origin must
  be the page's own or one given with --web-origin: 403 (a WebSocket is refused) otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import threading
import time
from urllib.parse import urlsplit

from art_edge.errors import UserError, warn
from art_edge.files import is_loopback, parse_host_port, parse_origin

HEADER_TIMEOUT = 10.0  # seconds from a request's first byte to its last header
IDLE_TIMEOUT = 5  # seconds a kept-alive connection may wait for its next request
MAX_HEADER_BYTES = 16 * 1024  # a request's line and headers together (h11's bound): 400 beyond
BACKLOG = 128  # connections the kernel holds for a server (no descriptor of ours)
SHUTDOWN_GRACE = 2  # seconds the responses in flight get when the server stops
_TOO_LARGE = f"request line and headers over {MAX_HEADER_BYTES} bytes\n".encode()
TOO_LARGE = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n"
    + f"content-length: {len(_TOO_LARGE)}\r\n\r\n".encode()
    + _TOO_LARGE
)
NOT_PRINTABLE = re.compile(rb"[^\t\x20-\x7e]")
RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def listen(address: str, flag: str) -> tuple[socket.socket, str, int]:
    """A socket bound to `address` (HOST:PORT) and listening now, so that a port in use fails
    before any camera opens; → (socket, host, port)."""
    host, port = parse_host_port(address, flag)
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
        sock.listen(BACKLOG)  # connections wait in the kernel until the server starts
    except OSError as e:
        sock.close()
        raise UserError(
            f"{flag} {address}: cannot listen there ({e.strerror}); pick a free port"
        ) from None
    return sock, host, port


def guarded_protocol(connections: int, header_timeout: float):
    """uvicorn's HTTP/1.1 protocol (h11) with a deadline on each request's headers and a cap on
    the connections of its server (WebSockets included: uvicorn counts them in the same set)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    limits = {"cap": connections, "timeout": header_timeout, "waiting": {}}
    return type("GuardedH11Protocol", (HeaderGuard, H11Protocol), limits)


def headers_end(seen: bytes) -> int:
    """Where the last blank line of `seen` ends (a request's headers end there), or 0."""
    crlf, lf = seen.rfind(b"\r\n\r\n"), seen.rfind(b"\n\n")
    return max(crlf + 4 if crlf >= 0 else 0, lf + 2 if lf >= 0 else 0)


class HeaderGuard:
    """The guard's part of a server's protocol (before uvicorn's in its bases): `cap`
    connections at most, each request's headers within `timeout` seconds and MAX_HEADER_BYTES;
    `waiting`, shared by the server's connections: those waiting for headers, oldest first."""

    cap: int
    timeout: float
    waiting: dict
    _deadline = None
    _tail = b""  # the last bytes seen, in case a blank line is split between two reads
    _size = 0  # bytes of the headers of the request in progress

    def connection_made(self, transport):
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            oldest = next(iter(self.waiting), None)
            if oldest is None:  # every connection is busy: this one goes
                transport.abort()
                return
            oldest.cut()
        self.wait_for_headers()

    def wait_for_headers(self):
        self._size = 0
        self.waiting[self] = None
        self._deadline = self.loop.call_later(self.timeout, self.cut)

    def headers_done(self):
        self.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def cut(self):
        self.headers_done()
        self.transport.abort()

    def data_received(self, data: bytes):
        seen = self._tail + data
        end = headers_end(seen)
        if self._deadline is not None:  # headers so far, this request's
            self._size += (end - len(self._tail)) if end else len(data)
            if self._size > MAX_HEADER_BYTES:
                return self.refuse()
        if end:  # the request in progress has all its headers
            self.headers_done()
        rest = seen[end:]
        if rest and self._deadline is None:  # the next request on this connection began
            self.wait_for_headers()
            self._size = len(rest)
        self._tail = rest[-3:]
        super().data_received(data)

    def refuse(self):
        """Headers over MAX_HEADER_BYTES: a 400, and the connection closed."""
        self.headers_done()
        self.transport.write(TOO_LARGE)
        self.transport.close()

    def connection_lost(self, exc):
        self.headers_done()
        super().connection_lost(exc)

    def shutdown(self):
        if self._deadline is not None:  # a request that never came: nothing to finish
            self.cut()
        else:
            super().shutdown()


def bad_bytes(scope) -> str | None:
    """What is wrong with the bytes of a request's headers or query (None: nothing): HTTP
    carries printable ASCII there; anything else is refused before any code reads it."""
    for name, value in scope.get("headers", ()):
        if not _printable(value):
            return f"header {name.decode('latin-1')!r} holds bytes that are not printable ASCII"
    if not _printable(scope.get("query_string", b"")):
        return "the query holds bytes that are not printable ASCII"
    return None


def _printable(value: bytes) -> bool:
    return NOT_PRINTABLE.search(value) is None


def _host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """'name:port', '[v6]:port' or 'name' → (lowercase name without brackets, port)."""
    try:
        parts = urlsplit("//" + text)
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Hosts:
    """The names a server answers to (the Host header) and the pages that may use it (the Origin
    header): localhost, this machine's names and the address it is bound to (on a wildcard
    address: any IP address), on its port; and the name of each origin given, on any port (a
    reverse proxy may or may not pass its port on)."""

    def __init__(
        self, host: str, port: int, origins=(), allow_hint: str = "allow the name with --web-origin"
    ):
        """`allow_hint`: how a refused name is allowed (said in the refusal)."""
        self.allow_hint = allow_hint
        bound = host.strip("[]").lower()
        self.port, self.any_ip = port, bound in ("0.0.0.0", "::", "")
        name = socket.gethostname().lower()
        names = {"localhost", "127.0.0.1", "::1", bound, name, f"{name}.local"}
        self.hosts = {(n, port) for n in names | {socket.getfqdn().lower()} if n}
        self.origins = {parse_origin(origin) for origin in origins}
        self.origin_names = {name for _, name, _ in self.origins}

    def refusal(self, scope) -> str | None:
        """Why a request may not be served (None: it may)."""
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("ascii")
        named = _host_port(host, 443 if scope.get("scheme") in ("https", "wss") else 80)
        if host and not self.host_ok(named):
            return (
                f"Host {host[:100]!r} is not this server's: open it by its address (e.g. "
                f"http://127.0.0.1:{self.port}/), or {self.allow_hint}"
            )
        origin = headers.get(b"origin", b"").decode("ascii")
        if origin and not self.origin_ok(origin, named):
            return (
                f"a page from {origin[:100]!r} may not use this server: allow it with "
                "--web-origin (only pages you trust)"
            )
        return None

    def host_ok(self, named) -> bool:
        if named is None:
            return False
        name, port = named
        if (name, port) in self.hosts or name in self.origin_names:
            return True
        return self.any_ip and port == self.port and _is_ip(name)

    def origin_ok(self, origin: str, named) -> bool:
        try:
            scheme, name, port = parse_origin(origin)
        except UserError:  # "null" (a sandboxed page, a file) or anything else that is no origin
            return False
        return (name, port) == named or (scheme, name, port) in self.origins


async def respond(scope, send, status: int, text: str, content_type: str = "text/plain"):
    """An HTTP response of `text`, or a refused WebSocket (uvicorn answers it with 403)."""
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})
    body = text.encode() + b"\n"
    headers = [(b"content-type", f"{content_type}; charset=utf-8".encode()),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestCheck:
    """ASGI middleware in front of everything a server serves: the bytes of the headers and the
    query (400), then the Host and the Origin when `hosts` is given (403)."""

    def __init__(self, app, hosts: Hosts | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = bad_bytes(scope)
        if problem is not None:
            return await respond(scope, send, 400, problem)
        problem = self.hosts.refusal(scope) if self.hosts is not None else None
        if problem is not None:
            return await respond(scope, send, 403, problem)
        return await self.app(scope, receive, send)


class GuardedServer:
    """A uvicorn server on a socket bound at once, behind the limits of this module, on a thread
    (and an event loop) of its own."""

    def __init__(self, flag: str, address: str, connections: int):
        self.flag, self.connections = flag, connections
        self.sock, self.host, self.port = listen(address, flag)
        self.server = self.thread = self.loop = None
        self._warned_at = -1e9

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def start(self, app, name: str):
        import uvicorn

        config = uvicorn.Config(
            app,
            http=guarded_protocol(self.connections, HEADER_TIMEOUT),
            # a malformed request is the sender's news, not the rig's; no logging setup of
            # uvicorn's own (each server's would reset the other's levels, racing its thread)
            log_config=None,
            log_level="error",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_keep_alive=IDLE_TIMEOUT,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            ws_max_size=64 * 1024,  # the page sends nothing but control frames
            ws_per_message_deflate=False,  # JPEGs do not compress; deflate per viewer costs CPU
            backlog=BACKLOG,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:  # what the app left running (the page's rounds) ends with the server
            left = asyncio.all_tasks(self.loop)
            for task in left:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self.loop.close()

    def _loop_error(self, loop, context: dict):
        """Out of descriptors or memory when accepting: one line a minute, not a traceback per
        connection (asyncio pauses accepting for a second by itself)."""
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in RESOURCE_ERRORS:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                warn(f"{self.flag}: cannot accept connections ({error.strerror}); retrying")
            return
        loop.default_exception_handler(context)

    def close(self):
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=SHUTDOWN_GRACE + 3)
        self.sock.close()
