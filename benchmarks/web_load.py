"""What the network can cost the rig: recognition's frame rate before and during a flood of
half-sent requests, and with 50 viewers on the dashboard against one.

    python benchmarks/web_load.py [--config art-edge-s] [--blocks 3] [--seconds 10]

art-edge-s INT8 (random weights), two synthetic cameras rendered as fast as the pipeline takes
them, one rig in this process with `--web` (localhost mode) and `--metrics`, the process held to
1,024 descriptors (systemd's default for a service). The load comes from a process of its own at
the lowest CPU priority (nice 19): on a venue's network an attacker's or a viewer's CPU is not the
rig's. In alternating blocks (the order reversed every other block):

- `slowloris`: `before` (no load) against `during`: 1,100 connections (900 on the dashboard's
  port, 200 on /metrics'), each a request line and one header, never finished; a header more on
  each every 5 s, and those the server cut are opened again every second. /healthz is asked
  twice a second during each run (an answer within 2 s counts as ok);
- `viewers`: one WebSocket viewer against 50, each reading every message (--web-clients 64).

Writes benchmarks/results/web_load.json with `fps_during_slowloris_over_before` (target ≥ 0.8),
`healthz_ok_during_slowloris` (every /healthz answered 200) and `fps_with_50_clients_over_1`
(target ≥ 0.9) at its top level (medians of the runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dashboard import RigRun, rig_flags, run_facts

from benchlib import fetch, free_port, write_result
from edge import build_engines

DESCRIPTORS = 1024
FLOOD = {"web": 900, "metrics": 200}
VIEWERS = 50


def attack(web: int, metrics: int):
    """The flood (its own process): half-sent requests that stay half-sent."""
    ports = [web] * FLOOD["web"] + [metrics] * FLOOD["metrics"]
    held, chosen = {}, selectors.DefaultSelector()

    def open_one(i: int):
        try:
            sock = socket.create_connection(("127.0.0.1", ports[i]), timeout=2)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sock.setblocking(False)
            chosen.register(sock, selectors.EVENT_READ, i)
            held[i] = sock
        except OSError:
            held.pop(i, None)

    for i in range(len(ports)):
        open_one(i)
    print(f"attacker: {len(held)} connections open", flush=True)
    last_header = last_reopen = time.monotonic()
    while True:
        for key, _ in chosen.select(timeout=0.2):  # a cut connection reads as closed
            chosen.unregister(key.fileobj)
            key.fileobj.close()
            held.pop(key.data, None)
        now = time.monotonic()
        if now - last_reopen >= 1.0:
            for i in set(range(len(ports))) - set(held):
                open_one(i)
            last_reopen = now
        if now - last_header >= 5.0:
            for sock in list(held.values()):
                try:
                    sock.send(b"X-a: b\r\n")
                except OSError:
                    pass
            last_header = now


def watch(web: int, count: int):
    """`count` viewers (its own process), each reading every message the dashboard sends."""
    import asyncio

    from websockets.asyncio.client import connect

    async def viewer():
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{web}/ws", max_size=None, proxy=None) as ws:
                    async for _ in ws:
                        pass
            except Exception:  # noqa: BLE001 (turned away or cut: try again, as the page does)
                await asyncio.sleep(0.5)

    async def main():
        await asyncio.gather(*(viewer() for _ in range(count)))

    asyncio.run(main())


def load(role: str, *args) -> subprocess.Popen:
    """This file in `role` (attack, watch), in a process at nice 19 with room for its sockets."""

    def lowest_priority():
        os.nice(19)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))

    cmd = [sys.executable, __file__, "--role", role, *map(str, args)]
    return subprocess.Popen(cmd, preexec_fn=lowest_priority, stdout=subprocess.DEVNULL)


def poll_healthz(port: int, stop: threading.Event, answers: list):
    while not stop.is_set():
        started = time.monotonic()
        status = fetch(f"http://127.0.0.1:{port}/healthz", timeout=2)[0]
        answers.append((status, round(1000 * (time.monotonic() - started), 1)))
        stop.wait(max(0.0, 0.5 - (time.monotonic() - started)))


def slowloris_run(engine, flooded: bool, a) -> dict:
    web, metrics = free_port(), free_port()
    with RigRun(engine, web=f"127.0.0.1:{web}", metrics=f"127.0.0.1:{metrics}") as rig:
        attacker = load("attack", web, metrics) if flooded else None
        answers, stop = [], threading.Event()
        poller = threading.Thread(target=poll_healthz, args=(metrics, stop, answers))
        try:
            time.sleep(a.warmup)
            fps = rig.fps(a.seconds, during=poller.start)
        finally:
            stop.set()
            poller.join()
            if attacker is not None:
                attacker.send_signal(signal.SIGKILL)
                attacker.wait()
    ok = sum(status == 200 for status, _ in answers)
    slowest = max((ms for _, ms in answers), default=None)
    return {"fps": fps, "healthz_asked": len(answers), "healthz_ok": ok, "healthz_max_ms": slowest}


def viewers_run(engine, count: int, a) -> dict:
    web = free_port()
    with RigRun(engine, web=f"127.0.0.1:{web}", web_clients=64) as rig:
        viewers = load("watch", web, count)
        try:
            time.sleep(a.warmup)
            fps = rig.fps(a.seconds)
            page = json_state(web).get("page", {})
        finally:
            viewers.send_signal(signal.SIGKILL)
            viewers.wait()
    keys = ("viewers", "fps", "stride", "cpu")  # the page's: rounds a second, one in `stride`
    return {"fps": fps, **{f"page_{k}": page.get(k) for k in keys}}


def json_state(port: int) -> dict:
    import json

    status, _, body = fetch(f"http://127.0.0.1:{port}/api/state", timeout=5)
    return json.loads(body) if status == 200 else {}


def run_blocks(engine, a) -> dict:
    """Each run once per block, the order reversed every other block (no run always first)."""
    order = (("before", lambda: slowloris_run(engine, False, a)),
             ("during", lambda: slowloris_run(engine, True, a)),
             ("1", lambda: viewers_run(engine, 1, a)),
             (str(VIEWERS), lambda: viewers_run(engine, VIEWERS, a)))  # fmt: skip
    runs = {name: [] for name, _ in order}
    for block in range(a.blocks):
        for name, run in order if block % 2 == 0 else order[::-1]:
            runs[name].append(run())
            print(f"block {block + 1} {name}: {runs[name][-1]}", flush=True)
    return runs


def main(argv=None):
    ap = rig_flags(__doc__, blocks=3, seconds=10.0, out="web_load.json")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args(argv)
    if a.role == "attack":
        return attack(*map(int, rest))
    if a.role == "watch":
        return watch(*map(int, rest))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))
    from art_edge.runtime.engine import HEAD_THREADS_THREADED, ARTEngine

    with tempfile.TemporaryDirectory() as tmp:
        engines, _ = build_engines(Path(tmp), a.config, a.threads)
        head = HEAD_THREADS_THREADED
        with ARTEngine.load(engines["int8"], threads=a.threads, head_threads=head) as engine:
            runs = run_blocks(engine, a)
    write_result(a.out, summarise(runs, a))


def summarise(runs: dict, a) -> dict:
    fps = {name: statistics.median(r["fps"] for r in rs) for name, rs in runs.items()}
    during = runs["during"]
    result = {
        **run_facts("web_load", a),
        "descriptor_limit": DESCRIPTORS,
        "flood_connections": FLOOD,
        "runs": runs,
        "fps": fps,
        "fps_during_slowloris_over_before": round(fps["during"] / fps["before"], 4),
        "healthz_ok_during_slowloris": all(
            r["healthz_ok"] == r["healthz_asked"] > 0 for r in during
        ),
        "fps_with_50_clients_over_1": round(fps[str(VIEWERS)] / fps["1"], 4),
        "targets": {"fps_during_slowloris_over_before": 0.8, "fps_with_50_clients_over_1": 0.9},
    }
    print(
        f"{a.config} INT8, 2 cameras, {os.cpu_count()} cores: {fps['before']:.1f} FPS before the "
        f"flood, {fps['during']:.1f} during it ({result['fps_during_slowloris_over_before']:.3f}; "
        f"/healthz always ok: {result['healthz_ok_during_slowloris']}); {fps['1']:.1f} FPS with "
        f"one viewer, {fps[str(VIEWERS)]:.1f} with {VIEWERS} "
        f"({result['fps_with_50_clients_over_1']:.3f})"
    )
    return result


if __name__ == "__main__":
    main()
