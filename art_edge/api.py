"""The Python API: load an engine dir, then stream the decisions and segments of its cameras.

    from art_edge.api import ARTEngine

    with ARTEngine.load("engines/diving", encoder_workers=2) as engine:
        for item in engine.stream(["pool=match.mp4", "board=rtsp://cam/stream"], events=["ev.jsonl"]):
            print(item.camera, item.kind, item.label, item.score)

    summary = run(engine, open_cameras(engine, [("cam0", "match.mp4")]), RigConfig())  # art-edge's run

This module and art_edge.cli are the two front doors: they open the cameras, build the rig
(art_edge.rig) from its configuration and hand it the outputs the configuration asks for.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from art_edge.config import RigConfig, SourceConfig
from art_edge.engine import ARTEngine as _RuntimeEngine
from art_edge.errors import UserError
from art_edge.rig import CameraSpec, Rig, parse_source_specs
from art_edge.roi import Roi
from art_edge.sources import open_source


class ARTEngine(_RuntimeEngine):
    """The engine of art_edge.engine (ARTEngine.load, encode_frames, run_head, ...), and `stream`."""

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
            ),
            _roi(rois.get(name)),
        )
        for name, uri in named
    ]


def _roi(box) -> Roi | None:
    return box if box is None or isinstance(box, Roi) else Roi.parse(box)


def run(
    engine,
    cameras: list[CameraSpec],
    config: RigConfig,
    stop: threading.Event | None = None,
    status: bool = False,
    listener=None,
) -> dict:
    """The rig of `cameras` until every camera ended, `stop` is set or max frames; → the summary,
    whose `ended` says which ended it (and `error` why, when a source failed: a camera that did
    not come back). `status`: the live status line on the terminal."""
    return Rig(engine, cameras, config, listener, status=status).run(stop)


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
    settings by name (art_edge.config: segments=, min_score=, clips=, events=[…], metrics=,
    stream=StreamConfig(…)); headless unless an output is asked for. A consumer slower than the
    rig loses decisions (the oldest first, never segments) rather than slowing recognition;
    closing the generator stops the rig."""
    settings.setdefault("headless", not settings.get("output"))
    config = RigConfig.from_settings(**settings)
    cameras = open_cameras(
        engine, parse_source_specs([str(s) for s in sources]), roi, config.source
    )
    items = ItemQueue(engine.classes, bound)
    stop, done = threading.Event(), []
    thread = threading.Thread(
        target=lambda: done.append(run(engine, cameras, config, stop, listener=items.put)),
        daemon=True,
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


class ItemQueue:
    """The decisions and segments of a rig as StreamItems, `bound` waiting at most: when it is
    full, the oldest waiting item is dropped for the new one."""

    def __init__(self, classes: list[str], bound: int):
        self.items: queue.Queue = queue.Queue(maxsize=bound)
        self.classes = classes

    def put(self, kind: str, camera: str, payload):
        if kind == "segment":
            item = StreamItem(
                kind, camera, payload["label"], payload["mean_score"], segment=payload
            )
        else:
            labels = [(self.classes[c], p) for c, p in payload.topk]
            item = StreamItem(
                kind, camera, self.classes[payload.label], payload.score, labels, payload.frame
            )
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
