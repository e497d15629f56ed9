"""The Python API: load an engine dir, then stream the decisions and segments of its cameras.

    from art_edge.api import ARTEngine

    with ARTEngine.load("engines/diving", encoder_workers=2) as engine:
        for item in engine.stream(["pool=match.mp4", "board=rtsp://cam/stream"], events=["ev.jsonl"]):
            print(item.camera, item.kind, item.label, item.score)

    cameras = open_cameras(engine, [("cam0", "match.mp4")])
    summary = run(engine, cameras, RigConfig.from_settings(segments="s.jsonl"))  # as art-edge

This module and art_edge.cli are the two front doors: they open the cameras, build the rig
(art_edge.rig) from its configuration and hand it the outputs the configuration asks for.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

from art_edge.errors import UserError
from art_edge.rig.camera import CameraSpec, parse_source_specs
from art_edge.rig.config import RigConfig, SourceConfig
from art_edge.rig.delivery import prepare_sinks
from art_edge.rig.loop import Rig
from art_edge.rig.observers import AnnotatedVideo, RigObserver, StatusReport
from art_edge.rig.outlets import run_header
from art_edge.rig.report import RigSnapshot, rig_summary
from art_edge.rig.sinks import EventSinks, SegmentLog, open_sinks
from art_edge.runtime.engine import ARTEngine as _RuntimeEngine
from art_edge.serve.metrics import MetricsServer
from art_edge.serve.systemd import ServiceNotifier
from art_edge.serve.web import WebServer
from art_edge.video.roi import Roi
from art_edge.video.sources import open_source


class ARTEngine(_RuntimeEngine):
    """The runtime's engine (art_edge.runtime.engine: load, encode_frames, run_head, …), with
    `stream`, which runs a rig over it."""

    def stream(self, sources, roi: dict | None = None, **settings):
        """Decisions and segments of one or more cameras as they come (see `stream`)."""
        return stream(self, sources, roi, **settings)


@dataclass
class StreamItem:
    """What `stream` yields: a decision (label, score, top-k, the frame's index) or a finished
    segment (`segment`: its record), naming its camera."""

    kind: str  # "decision" or "segment"
    camera: str
    label: str
    score: float
    topk: list | None = None  # [(label, score)], best first
    frame: int | None = None
    segment: dict | None = None
    track: int | None = None  # a tracked camera's: the track it is about
    box: tuple | None = None  # … and its box (x0, y0, x1, y1) in pixels


def open_cameras(
    engine, named: list, rois: dict | None = None, source: SourceConfig | None = None
) -> list[CameraSpec]:
    """(name, URI) pairs → cameras with their sources (not yet opened) and regions of interest
    (`rois`: name → Roi or its text, x,y,w,h), read as `source` says."""
    source, rois = source or SourceConfig(), rois or {}
    names = [name for name, _ in named]
    for name, box in rois.items():
        if name not in names:
            raise UserError(
                f"--roi {f'{name}={box}'!r}: no camera named {name!r}; the cameras are "
                f"{', '.join(names)}"
            )
    return [
        CameraSpec(
            name,
            open_source(
                uri,
                realtime=source.realtime,
                reconnect_timeout=source.reconnect_timeout,
                classes=engine.classes,
                root=source.root,
                open_timeout=source.open_timeout,
                read_timeout=source.read_timeout,
            ),
            _roi(rois.get(name)),
        )
        for name, uri in named
    ]


def _roi(box) -> Roi | None:
    return box if box is None or isinstance(box, Roi) else Roi.parse(box)


class Outputs:
    """The outputs a configuration asks for, registered as observers of a rig, and what they add
    to the run's summary."""

    def __init__(self, rig: Rig, engine, config: RigConfig, status: bool = False):
        self.config, observe = config, rig.observe
        self.metrics = self.web = self.video = None
        if config.prometheus.address:  # the servers first: a port in use fails before the rest
            # the sinks' counts are read at scrape time, once the sinks exist
            counts = lambda: self.events.counts()  # noqa: E731
            self.metrics = observe(
                MetricsServer(rig.snapshot, config.prometheus.address, config.stale_after, counts)
            )
        if config.dashboard.address:
            self.web = observe(
                WebServer(
                    rig.snapshot, engine, config.dashboard, config.clip.folder, config.stale_after
                )
            )
        event = config.event
        # quiet, behind their queues at once: a network sink's Delivery warns of an outage
        sinks = open_sinks(event.sinks, event.logins(), event.tls(), quiet=True)
        prepare_sinks(sinks, config.unattended, self.header(rig), config.stale_after)
        self.events = observe(EventSinks(sinks, engine.classes, event.emit))
        self.segments = None
        if config.segment.path:
            self.segments = observe(
                SegmentLog(
                    config.segment.path,
                    config.unattended.rotation(),
                    self.header(rig),
                    config.stale_after,
                )  # fmt: skip
            )
        if config.video.output:
            self.video = observe(self._video(rig, engine))
        if status:
            observe(StatusReport(rig.snapshot))
        self.notifier = None
        if os.environ.get("NOTIFY_SOCKET"):  # run by systemd (Type=notify)
            notify = ServiceNotifier(rig.snapshot, os.environ["NOTIFY_SOCKET"], config.stale_after)
            self.notifier = observe(notify)
        for server in (self.metrics, self.web, self.notifier):
            if server is not None:
                server.start()

    @staticmethod
    def header(rig: Rig) -> dict:
        """The line each JSONL output starts the run with."""
        return run_header(cameras=[cam.name for cam in rig.cameras])

    def discard(self):
        """A run that processed nothing leaves no trace in its JSONL outputs."""
        for output in (self.events, self.segments):
            if output is not None:
                output.discard()

    def _video(self, rig: Rig, engine) -> AnnotatedVideo:
        if len(rig.cameras) > 1:
            raise UserError(
                "--output shows one camera; with several, use --clips (a video per action)"
            )
        source = rig.cameras[0].source
        return AnnotatedVideo(self.config.video.output, source, engine.classes, rig.snapshot,
                              self.config.stale_after)  # fmt: skip

    def summary(self, snap: RigSnapshot) -> dict:
        """The run's summary: the rig's (art_edge.rig.report), how it ended, and the outputs'."""
        config = self.config
        summary = rig_summary(snap, self.events.events)
        summary.update(
            output=config.video.output,
            events_paths=[e for e in config.event.sinks if "://" not in e],
            sinks=self.events.counts(),
            ended=snap.ended,
            **({"error": snap.error} if snap.error else {}),
        )
        if self.video is not None and self.video.frames is not None:
            summary["video_frames"] = self.video.frames
        return summary


def run(
    engine,
    cameras: list[CameraSpec],
    config: RigConfig,
    stop: threading.Event | None = None,
    status: bool = False,
    observers: tuple = (),
) -> dict:
    """The rig of `cameras` with the outputs `config` asks for (and `observers`, more outputs:
    art_edge.rig.observers.RigObserver) until every camera ended, `stop` is set or max frames;
    → the summary, whose `ended` says which ended it (and `error` why, when a source failed: a
    camera that did not come back). `status`: the live status line on the terminal."""
    rig = Rig(engine, cameras, config)
    try:
        outputs = Outputs(rig, engine, config, status)
        for observer in observers:
            rig.observe(observer)
    except BaseException:
        rig.close()  # the outputs made so far
        raise
    snap = rig.run(stop)
    if sum(cam.frames for cam in snap.cameras) == 0:
        outputs.discard()
    return outputs.summary(snap)


def run_edge(
    engine, source, config: RigConfig, stop: threading.Event | None = None, status: bool = False
) -> dict:
    """One source (named cam0) until it ends, `stop` is set or max frames (see `run`)."""
    return run(engine, [CameraSpec("cam0", source)], config, stop, status)


def stream(engine, sources, roi: dict | None = None, bound: int = 256, **settings):
    """Run a rig on a thread and yield its decisions and segments as they come:

        for item in stream(engine, ["0", "pool=rtsp://cam/stream"], roi={"pool": "0.2,0,0.6,1"}):
            print(item.camera, item.kind, item.label, item.score)

    `sources`: URIs as art-edge's --source takes them ([NAME=]URI); `settings`: art-edge's
    settings by name (art_edge.rig.config: segments=, min_score=, clips=, events=[…], metrics=,
    stream=StreamConfig(…), track="motion"); headless unless an output is asked for. With
    `track`, each item names its track (`item.track`, `item.box`). A consumer slower than the
    rig loses decisions (the oldest first, never segments) rather than slowing recognition;
    closing the generator stops the rig."""
    settings.setdefault("headless", not settings.get("output"))
    config = RigConfig.from_settings(**settings)
    cameras = open_cameras(
        engine, parse_source_specs([str(s) for s in sources]), roi, config.source
    )
    items = ItemQueue(engine.classes, bound)
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(engine, cameras, config, stop), kwargs={"observers": [items]}, daemon=True
    )
    thread.start()
    try:
        while thread.is_alive() or not items.empty():
            try:
                yield items.get(timeout=0.2)
            except queue.Empty:
                continue
    finally:
        stop.set()
        thread.join()


class ItemQueue(RigObserver):
    """An output of a rig: its decisions and segments as StreamItems, `bound` waiting at most;
    when it is full, the oldest waiting item is dropped for the new one."""

    def __init__(self, classes: list[str], bound: int):
        self.items: queue.Queue = queue.Queue(maxsize=bound)
        self.classes = classes

    def on_decision(self, camera: str, decision):
        labels = [(self.classes[c], p) for c, p in decision.topk]
        label = self.classes[decision.label]
        self.put(StreamItem("decision", camera, label, decision.score, labels, decision.frame,
                            track=decision.track, box=decision.box))  # fmt: skip

    def on_segment(self, camera: str, record: dict):
        self.put(
            StreamItem(
                "segment",
                camera,
                record["label"],
                record["mean_score"],
                segment=record,
                track=record.get("track"),
                box=record.get("box"),
            )  # fmt: skip
        )

    def put(self, item: StreamItem):
        while True:
            try:
                return self.items.put_nowait(item)
            except queue.Full:
                try:
                    self.items.get_nowait()
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> StreamItem:
        return self.items.get(timeout=timeout)

    def empty(self) -> bool:
        return self.items.empty()
