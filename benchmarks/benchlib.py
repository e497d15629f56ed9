"""What every benchmark here shares: the side-by-side timer, the memory sampler, the JSON writer.

The machines these run on are shared and noisy, so nothing is timed alone: every comparison runs
its contenders in alternating blocks (A, B, A, B, ...) in one process, and reports medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

from art_edge.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


MACHINE = f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}"


def alternating(
    contenders: dict, repeats: int, blocks: int = 2, warmup: bool = True
) -> dict[str, list[float]]:
    """Call each of `contenders` (name → no-argument callable) `repeats` times per block, the
    contenders taking turns block by block; → name → every call's seconds. A warm-up call opens
    each block (caches, thread pools, allocator), untimed."""
    times = {name: [] for name in contenders}
    for _ in range(blocks):
        for name, fn in contenders.items():
            if warmup:
                fn()
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def medians(times: dict[str, list[float]], scale: float = 1.0) -> dict[str, float]:
    return {name: scale * statistics.median(v) for name, v in times.items()}


def rss_mb() -> float:
    """This process's resident memory (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class RssSampler:
    """Resident memory every `interval` seconds while the block runs, in a thread.

    with RssSampler() as mem:
        run()
    mem.first_quarter_max, mem.last_quarter_max
    """

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples = interval, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.wait(self.interval):
            self.samples.append(rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def quarter_max(self, which: str) -> float:
        quarter = max(1, len(self.samples) // 4)
        part = self.samples[:quarter] if which == "first" else self.samples[-quarter:]
        return max(part) if part else float("nan")


def write_result(path, doc: dict):
    """The benchmark's JSON, written atomically; the path is printed for the reader."""
    atomic_write_text(path, json.dumps(doc, indent=2))
    print(f"wrote {path}")


def free_port() -> int:
    """A localhost port nothing listens on now (benchmarks and tests start servers there)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """→ (status, headers, body) of a GET, errors included; (0, {}, b"") when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError):  # nothing listening (yet), or no answer in time
        return 0, {}, b""


def wait_for(check, timeout: float = 60.0, what: str = "the condition", every: float = 0.02):
    """Poll `check()` until it returns something true; → that (tests and benchmarks wait on
    conditions, never on a fixed sleep alone; the timeout is generous, for a loaded machine).
    AssertionError naming `what` on time."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def headless_chromium(width: int = 1400, height: int = 1000, nice: int = 0, cpus=None):
    """A Selenium WebDriver on Debian's chromium + chromium-driver, headless (the browser test and
    the dashboard benchmark). Run by root, the driver and the browser run as `nobody`, as a
    person's browser runs: Chromium started as root raises its own threads' priority (nice −8)
    above every other program's. `nice` > 0: at that lower CPU priority, which an unprivileged
    browser cannot undo. `cpus`: the cores it runs on (default: all of the machine's, whatever
    the caller's own affinity)."""
    import atexit
    import pwd
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(arg)
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    home = tempfile.mkdtemp(prefix="art-chromium-")  # the browser's profile and caches
    atexit.register(shutil.rmtree, home, ignore_errors=True)

    def demote():
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        if nice:
            os.nice(nice)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus or range(os.cpu_count()))

    if user is not None:
        os.chown(home, user.pw_uid, user.pw_gid)
    env = dict(os.environ, HOME=home, TMPDIR=home)
    service = Service(shutil.which("chromedriver"), env=env, popen_kw={"preexec_fn": demote})
    return webdriver.Chrome(service=service, options=options)
