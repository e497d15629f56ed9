"""A rig that runs unattended, tried with real parts and a schedule of faults.

    python benchmarks/unattended.py [--cycles 24] [--fault-seconds 7] [--out benchmarks/results/unattended.json]

`art-edge --config rig.toml` (the file `--print-config` wrote from a three-camera command line),
run as a service runs it, with art-tiny (random weights) on ONNX Runtime:
- cameras: `ring`, a real RTSP camera (GStreamer's server, run by the system Python); `late`,
  another, absent when the rig starts and started later; `board`, the synthetic camera;
- events: a JSONL file (the reference), a JSONL file on a FIFO whose reader stops draining,
  a real Mosquitto broker (QoS 1, a subscriber with a persistent session) and a webhook, both
  spooled on disk (--spool);
- clips on a 2 MB tmpfs (--retain 1.2MB, --min-free 256KB), where the mount is allowed.
Then, cycle after cycle, one fault at a time for `--fault-seconds`, then its repair, until
/healthz is ok again: the RTSP server killed and restarted; the broker stopped and restarted;
the webhook hanging (it answers nothing) and answering again; the FIFO's reader stopping and
draining again; the tmpfs filled to the last byte and freed; the tmpfs remounted read-only and
writable. Meanwhile /healthz, the rig's RSS and open file descriptors are sampled, and each
segment's clip is opened as soon as its record is published. Last, SIGTERM.

Figures (top level of the JSON): `events_lost` (events of the reference JSONL that the broker's
subscriber or the webhook never got; 0 expected), `clips_unreadable` (records that name a clip
that did not open and play to its last frame; 0), `rss_growth_fraction` (the rig's RSS at the
repaired point of the last cycles over the first cycles after warm-up, minus 1; ≤ 0.05),
`fd_growth` (open descriptors, same points; 0) and `fault_cycles` (≥ 20).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import RESULTS, free_port, write_result
from edge import random_engine
from unattended_parts import (
    Broker,
    ClipChecker,
    ClipsDisk,
    FifoReader,
    Probe,
    RtspCamera,
    Subscriber,
    Webhook,
    canonical,
    proc_fds,
    proc_rss_mb,
)

ROOT = Path(__file__).resolve().parents[1]


def rig_command(tmp: Path, engine: Path, parts: dict, metrics_port: int) -> list:
    """The multi-camera command line that --print-config turns into rig.toml."""
    p = parts
    return [
        "--engine", str(engine), "--source", f"ring={p['ring'].uri}", "--source",
        f"late={p['late'].uri}", "--source", "board=synthetic://?frames=24&size=96&fps=15",
        "--headless", "--threads", "2", "--stride", "4", "--emit", "decision",
        "--events", str(tmp / "events.jsonl"), "--events", str(p["fifo"].path),
        "--events", p["broker"].uri, "--events", p["webhook"].url,
        "--spool", str(tmp / "spool"), "--spool-size", "10MB",
        "--segments", str(tmp / "segments.jsonl"), "--min-score", "0.0", "--min-duration", "0.3",
        "--smoothing", "0", "--hysteresis", "0",  # random weights: labels that change, segments
        "--clips", str(p["disk"].path), "--pre", "0.5", "--post", "0.5", "--clip-history", "8",
        "--retain", "1.2MB", "--min-free", "256KB", "--metrics", f"127.0.0.1:{metrics_port}",
        "--stale-after", "3", "--stop-timeout", "10", "--open-timeout", "3", "--read-timeout", "3",
    ]  # fmt: skip


def start_rig(tmp: Path, command: list) -> tuple[subprocess.Popen, Path]:
    """rig.toml from --print-config, then `art-edge --config rig.toml` as a service runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "art_edge.cli"]
    printed = subprocess.run([*cli, *command, "--print-config"], capture_output=True, text=True,
                             env=env, check=True)  # fmt: skip
    config = tmp / "rig.toml"
    config.write_text(printed.stdout)
    log = open(tmp / "art-edge.log", "w")  # noqa: SIM115 (closed when the run ends)
    proc = subprocess.Popen([*cli, "--config", str(config), "--summary", str(tmp / "summary.json")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    return proc, config


# each fault: (name, the component of /healthz that must show it, inject, repair)
def faults(parts: dict) -> list:
    p = parts
    return [
        ("camera killed", ("cameras", "ring"), p["ring"].kill, p["ring"].start),
        ("broker stopped", ("outputs", p["broker"].uri), p["broker"].stop, p["broker"].start),
        ("webhook hangs", ("outputs", p["webhook"].url), p["webhook"].hang, p["webhook"].answer),
        ("events FIFO not drained", ("outputs", str(p["fifo"].path)), p["fifo"].stall,
         p["fifo"].drain),
        ("clips disk full", ("outputs", f"clips {p['disk'].path}"), p["disk"].fill,
         p["disk"].free),
        ("clips disk read-only", ("outputs", f"clips {p['disk'].path}"), p["disk"].read_only,
         p["disk"].writable),
    ]  # fmt: skip


def run_cycles(parts: dict, probe: Probe, proc, cycles: int, fault_seconds: float) -> list:
    """One fault a cycle, in turn; each: injected, held, repaired, then /healthz ok again.
    → what each cycle saw, and the RSS and descriptors at its repaired point."""
    kinds, done = [f for f in faults(parts) if parts["disk"].mounted or "disk" not in f[0]], []
    for cycle in range(cycles):
        name, (kind, component), inject, repair = kinds[cycle % len(kinds)]
        started = time.monotonic()
        inject()
        shows = lambda r, k=kind, c=component: r[k].get(c, {}).get("status") != "ok"  # noqa: E731
        probe.wait(shows, fault_seconds + 5)
        time.sleep(max(0.0, fault_seconds - (time.monotonic() - started)))
        seen = probe.statuses(kind, component, since=started)
        repaired = time.monotonic()
        repair()
        ok = probe.wait(lambda r: r["status"] == "ok", 60)
        time.sleep(1.0)  # settled: the same point of every cycle
        done.append({
            "cycle": cycle, "fault": name, "component": component,
            "statuses_during": sorted(seen), "degraded_seen": bool(seen - {"ok"}),
            "ok_again": ok, "seconds_to_ok": round(time.monotonic() - 1.0 - repaired, 1),
            "rss_mb": proc_rss_mb(proc.pid), "fds": proc_fds(proc.pid),
        })  # fmt: skip
        print(f"cycle {cycle:2d} {name:<26} seen {sorted(seen)} ok again: {ok} "
              f"({done[-1]['seconds_to_ok']} s) RSS {done[-1]['rss_mb']:.1f} MB "
              f"fds {done[-1]['fds']}", flush=True)  # fmt: skip
    return done


def late_camera(parts: dict, probe: Probe, wait_s: float = 8.0) -> dict:
    """The camera absent when the rig started: failed in /healthz meanwhile (the rig degraded,
    never down), then started, and decided."""
    probe.wait(lambda r: r["cameras"].get("late", {}).get("status") == "failed", 60)
    time.sleep(wait_s)
    before = probe.last()
    parts["late"].start()
    ok = probe.wait(lambda r: r["cameras"].get("late", {}).get("status") == "ok", 60)
    return {"rig_while_absent": before.get("status"),
            "late_while_absent": before["cameras"]["late"]["status"], "late_ok_after_start": ok}  # fmt: skip


def events_lost(tmp: Path, parts: dict) -> dict:
    """The reference JSONL's events against what the broker's subscriber and the webhook got."""
    reference = [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()]
    reference = {canonical(e) for e in reference if e.get("type") != "run"}
    broker, hook = parts["subscriber"].received, parts["webhook"].bodies
    got = {"broker": [canonical(e) for e in broker], "webhook": [canonical(e) for e in hook]}
    missing = {k: len(reference - set(v)) for k, v in got.items()}
    return {"events_total": len(reference), "missing_at": missing,
            "duplicates_at": {k: len(v) - len(set(v)) for k, v in got.items()},
            "unexpected_at": {k: len(set(v) - reference) for k, v in got.items()},
            "events_lost": sum(missing.values())}  # fmt: skip


def growth(cycles: list, warmup: int = 6) -> dict:
    """RSS and descriptors at the repaired point: the first cycles after warm-up against the
    last ones (medians of a whole round of the fault kinds each)."""
    steady = cycles[min(warmup, len(cycles) // 3) :]
    n = max(1, min(6, len(steady) // 2))
    first, last = steady[:n], steady[-n:]
    rss = [statistics.median(c["rss_mb"] for c in part) for part in (first, last)]
    fds = [statistics.median(c["fds"] for c in part) for part in (first, last)]
    return {"rss_first_mb": round(rss[0], 1), "rss_last_mb": round(rss[1], 1),
            "rss_growth_fraction": round(rss[1] / rss[0] - 1, 4), "fds_first": fds[0],
            "fds_last": fds[1], "fd_growth": int(fds[1] - fds[0])}  # fmt: skip


def stop_rig(proc, parts: dict, probe: Probe, bound: float) -> dict:
    """Everything repaired and the backlogs delivered, then SIGTERM: how long it took."""

    def drained(report):
        outs = report["outputs"]
        return all(outs.get(n, {}).get("pending", 1) == 0 for n in
                   (parts["broker"].uri, parts["webhook"].url))  # fmt: skip

    probe.wait(drained, 60)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=bound + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed"
    return {"shutdown_seconds": round(time.monotonic() - sent, 2), "shutdown_bound_s": bound,
            "exit_code": code}  # fmt: skip


def start_parts(tmp: Path) -> dict:
    parts = {"ring": RtspCamera(), "late": RtspCamera(), "broker": Broker(tmp / "broker"),
             "webhook": Webhook(), "fifo": FifoReader(tmp / "fifo.jsonl"),
             "disk": ClipsDisk(tmp / "clips")}  # fmt: skip
    parts["ring"].start()
    parts["broker"].start()
    parts["subscriber"] = Subscriber(parts["broker"])
    return parts


def stop_parts(parts: dict):
    for name in ("ring", "late"):
        parts[name].kill()
    parts["subscriber"].close()
    parts["broker"].stop()
    parts["webhook"].close()
    parts["fifo"].close()
    parts["disk"].close()


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULTS / "unattended.json"))
    ap.add_argument("--cycles", type=int, default=24, help="fault cycles (one fault each)")
    ap.add_argument("--fault-seconds", type=float, default=7.0, help="how long each fault lasts")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="art-unattended-") as tmp:
        doc = run_all(a, Path(tmp))
    write_result(a.out, doc)
    figures = (
        "events_lost",
        "clips_unreadable",
        "rss_growth_fraction",
        "fd_growth",
        "fault_cycles",
        "events_left_in_spools",
    )
    print({k: doc[k] for k in figures})


def run_all(a, tmp: Path) -> dict:
    """The engine, the parts, the rig among them; the parts stopped whatever happened."""
    engine, parts = random_engine(tmp), start_parts(tmp)
    try:
        return run_with_parts(a, tmp, engine, parts, free_port())
    finally:
        stop_parts(parts)


def run_with_parts(a, tmp: Path, engine: Path, parts: dict, port: int) -> dict:
    command = rig_command(tmp, engine, parts, port)
    proc, config = start_rig(tmp, command)
    probe, checker = Probe(port), ClipChecker(tmp / "segments.jsonl")
    try:
        assert probe.wait(lambda r: r["cameras"]["board"]["status"] == "ok", 180), "no start"
        late = late_camera(parts, probe)
        cycles = run_cycles(parts, probe, proc, a.cycles, a.fault_seconds)
        stopped = stop_rig(proc, parts, probe, bound=10.0 + 5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.close()
    time.sleep(2.0)  # the subscriber's last acknowledgements
    checker.close()
    summary = json.loads((tmp / "summary.json").read_text())
    return report(a, tmp, parts, cycles, late, stopped, checker, summary, command, config)


def warnings(log: Path) -> dict:
    """What the rig said: its warnings, each kind counted (an outage: one, and one when over)."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("warning:")]
    kinds = collections.Counter(re.sub(r"\d+", "N", line.split(";")[0])[:140] for line in lines)
    return {"count": len(lines), "kinds": dict(kinds.most_common(40))}


def report(a, tmp, parts, cycles, late, stopped, checker, summary, command, config) -> dict:
    lost, grown = events_lost(tmp, parts), growth(cycles)
    kinds = sorted({c["fault"] for c in cycles})
    per_kind = {k: {"cycles": sum(c["fault"] == k for c in cycles),
                    "degraded_seen": sum(c["fault"] == k and c["degraded_seen"] for c in cycles),
                    "ok_again": sum(c["fault"] == k and c["ok_again"] for c in cycles)}
                for k in kinds}  # fmt: skip
    return {
        "benchmark": "unattended",
        "events_lost": lost["events_lost"],
        "clips_unreadable": checker.unreadable,
        "rss_growth_fraction": grown["rss_growth_fraction"],
        "fd_growth": grown["fd_growth"],
        "fault_cycles": sum(c["ok_again"] for c in cycles),
        # every endpoint was back and drained before SIGTERM: nothing may wait for the next run
        "events_left_in_spools": sum(o.get("spooled", 0) for o in summary["outputs"].values()),
        "targets": {"events_lost": 0, "clips_unreadable": 0, "rss_growth_fraction": 0.05,
                    "fd_growth": 0, "fault_cycles": 20, "events_left_in_spools": 0},  # fmt: skip
        "events": lost, "memory_and_descriptors": grown, "faults": per_kind,
        "camera_absent_at_start": late, "shutdown": stopped,
        "clips": {"records_checked": checker.checked, "records_dropped": checker.dropped,
                  "dropped_reasons": checker.reasons, "gone_before_checked": checker.gone,
                  "clips_fs": parts["disk"].kind},  # fmt: skip
        "summary": {k: summary.get(k) for k in ("frames", "decisions", "events", "segments",
                                                "clips_dropped", "outputs", "ended")},
        "warnings": warnings(tmp / "art-edge.log"),
        "cycles": cycles, "cpus": os.cpu_count(), "fault_seconds": a.fault_seconds,
        "command": ["art-edge", *command, "--print-config"],
        "run": ["art-edge", "--config", "rig.toml"], "rig_toml": Path(config).read_text(),
    }  # fmt: skip


if __name__ == "__main__":
    main()
