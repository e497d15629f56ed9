"""art-edge's pipeline threads: capture+decode+preprocess, encoding, and the clip head each run on
a thread of their own, joined by bounded hand-offs, so a decision never stalls encoding.

    reader = FrameReader(source, preprocessing, bound=4)   # thread 1: frames → preprocessed images
    heads = HeadThread()                                   # thread 3: decision jobs → decisions
    head = heads.lane(classifier, on_decision, live)       # one camera's jobs (batched with others)
    items, ended, error = reader.take(limit=4, timeout=0.5) # thread 2 (the caller): encodes them

The policy at each hand-off depends on the source. A live source (camera, stream, a file played
in real time) must never build a backlog: when the reader's queue is full its oldest frame is
dropped (counted), and a decision that falls due while another is still waiting for the head
replaces it (counted as skipped). A file played as fast as possible must lose nothing: the reader
waits for room, and the encoder waits for the head, so every frame is encoded and every decision
is made exactly as the whole-clip forward would make it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from art_edge.errors import UserError
from art_edge.preprocess import preprocess_frame
from art_edge.rig.outlets import Supervised
from art_edge.runtime.engine_dir import BATCH_PROFILE
from art_edge.runtime.streaming import decide_batch
from art_edge.video.sources import EndOfStream
from art_edge.video.tracks import crop_window


@dataclass
class _End:
    """The reader's last item: how the source ended, and why when it failed."""

    ended: str
    error: str | None = None


def read_frame(source, preprocessing, timeout: float, roi=None, tubelets=None):
    """One capture: (frame, preprocessed image), None when nothing came within `timeout`, or an
    _End when the source ended or gave up (a lost camera: the run ends, keeping what it did).
    `roi` (art_edge.video.roi.Roi): the part of the frame the model sees; the frame keeps all of
    it. `tubelets` (art_edge.video.tracks.Tubelets): a tracked camera's; the image is then each
    track's crop [k, 3, S, S] (the tracks in `frame.tracks`)."""
    try:
        frame = source.capture(timeout=timeout)
        if frame is None:
            return None
        image = frame.image if roi is None else roi.crop(frame.image)
    except EndOfStream:
        return _End("source ended")
    except UserError as e:
        return _End("source failed", str(e))
    if tubelets is not None:
        return frame, track_crops(frame, tubelets, preprocessing)
    return frame, preprocess_frame(image, preprocessing)


def track_crops(frame, tubelets, preprocessing) -> np.ndarray:
    """The tracks of a frame (into `frame.tracks`) and their crops, preprocessed: [k, 3, S, S]."""
    frame.tracks = tubelets.update(frame.image)
    crops = [preprocess_frame(crop_window(frame.image, t.window), preprocessing)
             for t in frame.tracks]  # fmt: skip
    size = preprocessing.image_size
    return np.stack(crops) if crops else np.zeros((0, 3, size, size), np.float32)


class FrameReader:
    """Capture, decode and preprocess on a thread of their own, into a bounded queue of
    (frame, preprocessed image)."""

    def __init__(self, source, preprocessing, bound: int, roi=None, ready=None, on_frame=None,
                 name: str = "camera", tubelets=None):  # fmt: skip
        """`ready`: a threading.Event set whenever an item is queued (one encoder serving several
        readers waits on it); `on_frame(frame)`: called on this thread for each frame read (the
        clip history keeps it). The thread is Supervised: an unexpected error in a frame's
        reading, preprocessing or history is reported once, and the reader goes on."""
        self.source, self.preprocessing, self.roi = source, preprocessing, roi
        self.ready, self.on_frame, self.tubelets = ready, on_frame, tubelets
        self.live = getattr(source, "live", False)
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, bound))
        self.dropped = 0  # frames a live source delivered that the pipeline had no room for
        self._stop = threading.Event()
        self.worker = Supervised(f"{name}'s reader", self._run, self._stop)

    @property
    def restarts(self) -> int:
        return self.worker.crashes

    def start(self):
        self.worker.start()

    def _run(self):
        while not self._stop.is_set():
            item = read_frame(self.source, self.preprocessing, 0.2, self.roi, self.tubelets)
            if isinstance(item, _End):
                self._put(item, last=True)
                return
            if item is not None:
                if self.on_frame is not None:
                    self.on_frame(item[0])
                self._put(item)

    def _put(self, item, last: bool = False):
        """Newest-frame policy for a live source (the end of the stream is never dropped); a file
        waits for room."""
        while not self._stop.is_set():
            if self.live and not last and self.queue.full():
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                self.queue.put(item, timeout=0.2)
                if self.ready is not None:
                    self.ready.set()
                return
            except queue.Full:
                continue

    def take(self, limit: int, timeout: float) -> tuple[list, _End | None]:
        """Up to `limit` frames: waits up to `timeout` for the first, then takes what is ready;
        → ((frame, image) pairs, the end if the source ended)."""
        items = []
        try:
            item = self.queue.get(timeout=timeout)
            while True:
                if isinstance(item, _End):
                    return items, item
                items.append(item)
                if len(items) >= limit:
                    return items, None
                item = self.queue.get_nowait()
        except queue.Empty:
            return items, None

    def close(self, timeout: float = 2.0):
        self._stop.set()
        self.worker.join(timeout)


class HeadThread:
    """The clip heads of a rig's cameras on one thread of their own. Each camera hands its jobs
    to its lane (`lane()`: one camera's head). Whenever the thread turns to the lanes, the first
    job of every lane that has one runs in one batch (art_edge.runtime.streaming.decide_batch,
    `max_batch` at most): the heads of the cameras due for a decision run together, as the
    encoder batches their frames. A lane's `on_decision(decision, end)` runs on this thread, in
    the order its jobs were handed over; `end` marks a clip's last job (its job may be None:
    nothing left to decide, the clip is scored on the decision before)."""

    def __init__(self, max_batch: int = BATCH_PROFILE["clip_topk"][2]):
        self.max_batch = max_batch  # the TensorRT profile's clips per call
        self.cond = threading.Condition()
        self.lanes: list[HeadLane] = []
        self.batches = self.jobs = self.max_jobs = 0  # head batches run, jobs in them, largest
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="art-edge:head", daemon=True)

    def lane(self, classifier, on_decision, live: bool) -> HeadLane:
        lane = HeadLane(self, classifier, on_decision, live)
        with self.cond:
            self.lanes.append(lane)
        return lane

    def remove(self, lane: HeadLane):
        """A lane that is done (a lost track's, after its last job): the thread forgets it."""
        with self.cond:
            if lane in self.lanes:
                self.lanes.remove(lane)

    def start(self):
        self._thread.start()

    def _run(self):
        while True:
            with self.cond:
                while not any(lane.pending for lane in self.lanes) and not self._closing:
                    self.cond.wait()
                due = [lane for lane in self.lanes if lane.pending][: self.max_batch]
                if not due:
                    return
                taken = [(lane, lane.pending.pop(0)) for lane in due]
                for lane, _ in taken:
                    lane.busy = True
            self._decide(taken)
            with self.cond:
                for lane, _ in taken:
                    lane.busy = False
                self.cond.notify_all()

    def _decide(self, taken: list):
        """The jobs taken, one per lane, as one batch; then each lane's callback. An error is
        raised in the thread that hands the lane its next job (or drains it)."""
        due = [(lane, job) for lane, (job, _) in taken if job is not None]
        if due:
            self.batches, self.jobs = self.batches + 1, self.jobs + len(due)
            self.max_jobs = max(self.max_jobs, len(due))
        try:
            made = decide_batch([(lane.classifier, job) for lane, job in due]) if due else []
        except BaseException as e:  # noqa: BLE001 (raised in the submitting threads)
            for lane, _ in taken:
                lane.error = e
            return
        decisions = {id(lane): d for (lane, _), d in zip(due, made)}
        for lane, (_, end) in taken:
            try:
                lane.on_decision(decisions.get(id(lane)), end)
            except BaseException as e:  # noqa: BLE001
                lane.error = e

    def close(self, timeout: float = 10.0):
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


class HeadLane:
    """One camera's jobs for the HeadThread, with one decision job waiting at most."""

    def __init__(self, head: HeadThread, classifier, on_decision, live: bool):
        self.head, self.classifier, self.on_decision = head, classifier, on_decision
        self.live = live
        self.skipped = 0  # live decisions replaced by a newer one before the head took them
        self.pending: list = []  # clip ends, and at most one decision job waiting
        self.busy, self.error = False, None

    def start(self):
        pass  # the rig starts the HeadThread

    def submit(self, job, end: bool = False):
        """Hand a decision job over (or a clip's end). A live source's job replaces one still
        waiting; otherwise the caller waits until the waiting one is taken. An end is never
        dropped and never waits."""
        with self.head.cond:
            self._raise_error()
            if not end:
                while self.pending and not self._replace_waiting():
                    self.head.cond.wait(0.2)
                    self._raise_error()
            self.pending.append((job, end))
            self.head.cond.notify_all()

    def _replace_waiting(self) -> bool:
        if not self.live or self.pending[-1][1]:  # never replace an end marker
            return False
        self.pending.pop()
        self.skipped += 1
        return True

    def drain(self, timeout: float = 60.0):
        """Wait until every job handed over is done (`timeout` seconds at most)."""
        deadline = time.monotonic() + timeout
        with self.head.cond:
            while (self.pending or self.busy) and self.error is None:
                if time.monotonic() > deadline:
                    self.pending.clear()  # the rig is closing: what is left is not decided
                    break
                self.head.cond.wait(0.2)
            self._raise_error()

    def _raise_error(self):
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self):
        pass  # the rig closes the HeadThread


class InlineReader:
    """FrameReader's interface in the caller's thread (`art-edge --no-threads`): capture and
    preprocess when the encoder asks, as before the pipeline had threads."""

    def __init__(self, source, preprocessing, roi=None, on_frame=None, tubelets=None):
        self.source, self.preprocessing, self.dropped = source, preprocessing, 0
        self.roi, self.on_frame, self.tubelets = roi, on_frame, tubelets

    def start(self):
        pass

    def take(self, limit: int, timeout: float) -> tuple[list, _End | None]:
        items = []
        while len(items) < limit:
            item = read_frame(self.source, self.preprocessing, timeout if not items else 0.0,
                              self.roi, self.tubelets)  # fmt: skip
            if isinstance(item, _End):
                return items, item
            if item is None:
                break
            if self.on_frame is not None:
                self.on_frame(item[0])
            items.append(item)
        return items, None

    def close(self):
        pass


class InlineHead:
    """HeadLane's interface in the caller's thread: each decision is made when it falls due,
    and the frames behind it wait."""

    skipped = 0

    def __init__(self, classifier, on_decision):
        self.classifier, self.on_decision = classifier, on_decision

    def start(self):
        pass

    def submit(self, job, end: bool = False):
        self.on_decision(None if job is None else self.classifier.decide(job), end)

    def drain(self, timeout: float = 60.0):
        pass

    def close(self):
        pass
