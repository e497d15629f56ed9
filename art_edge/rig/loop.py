"""Several cameras in one process: one engine, one encoder batch for all of them.

    rig = Rig(engine, [CameraSpec("pool", source), CameraSpec("board", source2, roi)], config)
    rig.observe(output)              # its outputs (art_edge.rig.observers), as a front door does
    snap = rig.run(stop)             # until every camera ended, `stop` is set, or max frames

Each camera keeps its own capture thread (newest-frame policy, reconnect), frame ring, decision
smoothing, segments and clip history. The encoder, on the caller's thread, takes whatever frames
arrived from all cameras since its last run (a stride's worth per camera at most) and encodes
them as one batch, as DeepStream batches streams; the clip heads of the cameras due for a
decision run as one batch too, on one head thread (art_edge.rig.pipeline.HeadThread). A camera
that stalls, reconnects or ends contributes nothing to a batch and holds nobody back.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import replace

import numpy as np

from art_edge.errors import UserError, warn
from art_edge.rig.camera import Camera, CameraSpec
from art_edge.rig.clips import ClipWriter
from art_edge.rig.config import RigConfig
from art_edge.rig.observers import Observers, RigObserver
from art_edge.rig.outlets import Deadline
from art_edge.rig.pipeline import HeadThread
from art_edge.rig.report import History, RigSnapshot

CLIPS_SHARE = 0.6  # of the shutdown's time left, what the clip writer gets (the rest: events)


def tracked(specs: list[CameraSpec], config: RigConfig) -> list[CameraSpec]:
    """The cameras, each with the detector --track gives it (if any); a camera --track names
    must exist, and a tracked camera has no --roi (its tracks' crops are its regions)."""
    names = [spec.name for spec in specs]
    for name, detector in config.tracking.per_camera():
        if name is not None and name not in names:
            raise UserError(f"--track {name}={detector}: no camera named {name!r}; the cameras "
                            f"are {', '.join(names)}")  # fmt: skip
    out = []
    for spec in specs:
        track = spec.track or config.tracking.detector_for(spec.name)
        if track and spec.roi is not None:
            raise UserError(
                f"--track and --roi on camera {spec.name}: a tracked camera crops each track "
                f"itself; drop --roi {spec.name}=… or track only the other cameras "
                "(--track NAME=DETECTOR)"
            )
        out.append(replace(spec, track=track))
    return out


class Rig:
    """The cameras, their shared encoder batch and head thread, the clip writer they share, and
    the observers the front doors registered (art_edge.rig.observers): the outputs."""

    def __init__(self, engine, specs: list[CameraSpec], config: RigConfig):
        window = config.stream.window
        if window and window < engine.num_frames:
            raise UserError(
                f"--window {window} is smaller than the T = {engine.num_frames} frames a decision "
                f"samples; use --window ≥ {engine.num_frames} (or 0: 4·T)"
            )
        self.engine, self.config, self.classes = engine, config, engine.classes
        self.observers = Observers()
        self.ready = threading.Event()  # set by any reader that queued a frame
        # the clip heads of all cameras on one thread, the jobs due together in one batch
        self.heads = HeadThread() if config.threaded else None
        self.clip_writer = None
        self.segment_records = History()  # the finished segments' records (the last 1000)
        self.started = self.stopped = None  # the run's start and end (time.monotonic())
        self.loop_ended = None  # when its processing ended (the shutdown follows)
        self.loop_at = time.monotonic()  # when the loop last went round
        self.running = False  # opened, and the loop is on
        self._watched = 0.0
        self.outcome: tuple | None = None  # (how the run ended, why when a source failed)
        self.batches = self.max_batch = 0  # encoder runs (frames / batches: the mean batch)
        # encoder batches not handed on yet: [(camera, frame) pairs, PendingEncode]
        self.in_flight: deque = deque()
        self.cameras = [Camera(spec, self) for spec in tracked(specs, config)]
        self._finished: set = set()

    def observe(self, observer: RigObserver) -> RigObserver:
        """Register an output; → it. The rig closes it when the run ends."""
        return self.observers.add(observer)

    def open(self):
        clip = self.config.clip
        if clip.folder:
            self.clip_writer = ClipWriter(clip.folder, retain=clip.retention(),
                                          min_free=clip.min_free_bytes(),
                                          stall_after=self.config.stale_after).start()  # fmt: skip
        if self.heads is not None:
            self.heads.start()
        for cam in self.cameras:
            cam.open()
        self.loop_at, self.running = time.monotonic(), True

    def step(self, stop: threading.Event) -> tuple[str, str | None] | None:
        """Encode the frames that are ready on every camera as one batch; → how the run ended
        (and the error, when a camera's source failed), or None to go on."""
        self.loop_at = now = time.monotonic()
        if now - self._watched > 0.5 or stop.is_set():  # the last look: a camera back is said
            self._watched = now
            for cam in self.cameras:
                cam.watch(now)
        if stop.is_set():
            return "interrupted", None
        active = [c for c in self.cameras if c.ended is None]
        if not active:
            return self._outcome()
        self.ready.clear()
        batch, ends = self._take(active)
        if batch:
            self.in_flight.append(self._submit(batch))
        # Hand on the earlier batches while this one encodes on the encoder workers (they go
        # straight on to it, no pause between batches); all of them before a camera ends.
        pending = self.in_flight[-1][1] if batch else None
        keep = 1 if pending is not None and not ends and pending.asynchronous else 0
        while len(self.in_flight) > keep:
            if not self._hand_on(*self.in_flight.popleft()):
                return "closed by user", None
        for cam, end in ends:
            cam.ended, cam.ended_at = end, time.monotonic()
            self._finish(cam)
            if end[1] and len(self.cameras) > 1:  # one camera: its error ends the run, said once
                warn(f"camera {cam.name}: {end[1]}")
        if not batch and not ends and self.config.threaded:
            self.ready.wait(0.5)
        return None

    def _submit(self, batch: list) -> tuple[list, object]:
        """Start encoding the images of `batch` ((camera, frame, image) each; a tracked
        camera's image: its tracks' crops [k, 3, S, S]) as one run; → the in-flight entry."""
        images = [image if image.ndim == 4 else image[None] for _, _, image in batch]
        stacked = np.concatenate(images)
        self.batches += 1
        self.max_batch = max(self.max_batch, len(stacked))
        pending = self.engine.submit_encode(stacked) if len(stacked) else None
        return [(cam, frame, len(im)) for (cam, frame, _), im in zip(batch, images)], pending

    def _hand_on(self, frames: list, pending) -> bool:
        """An encoded batch to its cameras; → False when the user closed the display."""
        patches, tokens = pending.result() if pending is not None else ((), ())
        # each image's share of the batch
        encode_ms = 1000 * pending.seconds / len(patches) if pending is not None else 0.0
        at = 0
        for cam, frame, n in frames:
            encoded = list(zip(patches[at : at + n], tokens[at : at + n]))
            at += n
            if not cam.on_frame(frame, encoded if cam.lanes is not None else encoded[0], encode_ms):
                return False
        return True

    def _take(self, active: list) -> tuple[list, list]:
        """The ready frames of each active camera (a stride's worth at most) and the cameras that
        ended; a camera past --max-frames ends here."""
        config, batch, ends = self.config, [], []
        stride = config.stream.stride
        # one thread (--no-threads): each camera's read waits a little, in turn
        timeout = 0.0 if config.threaded else 0.5 / len(active)
        for cam in active:
            left = config.max_frames - cam.taken if config.max_frames else stride
            if left <= 0:
                ends.append((cam, ("max frames", None)))
                continue
            items, end = cam.reader.take(min(left, stride), timeout=timeout)
            cam.taken += len(items)
            batch += [(cam, frame, image) for frame, image in items]
            if end is not None:
                ends.append((cam, (end.ended, end.error)))
        return batch, ends

    def _outcome(self) -> tuple[str, str | None]:
        if len(self.cameras) == 1:
            return self.cameras[0].ended
        failed = [f"camera {c.name}: {c.ended[1]}" for c in self.cameras if c.ended[1]]
        return ("sources ended", "; ".join(failed) or None)

    def _finish(self, cam: Camera, timeout: float = 60.0):
        if cam.name not in self._finished:
            self._finished.add(cam.name)
            cam.finish(timeout)

    def finish(self, deadline: Deadline | None = None):
        """The frames encoded before the stop still count; each camera's decision in flight,
        open segment and clip (within the deadline)."""
        self.loop_ended = self.loop_ended or time.monotonic()
        while self.in_flight:
            self._hand_on(*self.in_flight.popleft())
        for cam in self.cameras:
            self._finish(cam, deadline.left() if deadline else 60.0)

    def processing_end(self) -> float | None:
        return self.loop_ended

    def close(self, deadline: Deadline | None = None):
        """Stop the threads, then close everything within the deadline, even when one close
        fails; a failure here never hides the error that ended the run (it is reported as
        itself when nothing else went wrong)."""
        deadline = deadline or Deadline(self.config.unattended.stop_timeout)
        failures: list = []
        for cam in self.cameras:
            cam.close(failures)
        try:
            if self.heads is not None:
                self.heads.close(deadline.left(10.0))
            if self.clip_writer is not None:  # before the observers: it publishes records,
                # with a share of the time, so that they still reach the events' outputs
                self.clip_writer.close(Deadline(deadline.left() * CLIPS_SHARE))
        except Exception as e:  # noqa: BLE001 (each part is closed whatever the others did)
            failures.append(e)
        self.observers.close(failures, deadline)
        if failures and sys.exc_info()[1] is None:
            raise failures[0]

    def run(self, stop: threading.Event | None = None) -> RigSnapshot:
        """Run until every camera ended, `stop` is set or max frames, then close the cameras and
        the observers, within --stop-timeout of the stop; → the last snapshot, which says how
        the run ended. An unexpected error in the loop ends the run as "failed", reported with
        its traceback, and the shutdown and the summary happen all the same."""
        stop = stop or threading.Event()
        self.started, outcome = time.monotonic(), None
        try:
            self.open()
            outcome = self._loop(stop)
        except KeyboardInterrupt:
            outcome = ("interrupted", None)
        finally:
            self.loop_ended = self.loop_ended or time.monotonic()
            deadline, ending = Deadline(self.config.unattended.stop_timeout), sys.exc_info()[1]
            try:
                self.finish(deadline)
            except Exception:
                if ending is None:  # never hides the error that ended the run
                    raise
            finally:
                self.outcome = outcome or ("interrupted", None)
                self.close(deadline)
        self.stopped = time.monotonic()  # the seconds of the run include closing its outputs
        return self.snapshot()

    def _loop(self, stop: threading.Event) -> tuple:
        outcome = None
        try:
            while outcome is None:
                outcome = self.step(stop)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 (reported, and the run ends cleanly)
            warn(f"the rig's loop failed:\n{traceback.format_exc().rstrip()}")
            outcome = ("failed", f"the rig's loop failed ({type(e).__name__}: {e})")
        self.loop_ended = time.monotonic()
        return outcome

    def snapshot(self) -> RigSnapshot:
        """The rig now, for its readers (art_edge.rig.report)."""
        heads, writer, (ended, error) = self.heads, self.clip_writer, self.outcome or (None, None)
        now = self.stopped or time.monotonic()
        started = self.started if self.started is not None else now
        outputs = self.observers.outputs()
        if writer is not None:
            outputs = [writer.snapshot(), *outputs]
        return RigSnapshot(
            cameras=tuple(cam.snapshot() for cam in self.cameras),
            classes=tuple(self.classes),
            seconds=now - started,
            segments=self.segment_records.view(),
            clips=writer.clips.view() if writer is not None else None,
            clips_dropped=writer.clips_dropped if writer is not None else 0,
            batches=self.batches,
            max_batch=self.max_batch,
            encoder_workers=self.engine.encoder_workers,
            head_batches=heads.batches if heads is not None else None,
            head_jobs=heads.jobs if heads is not None else 0,
            max_head_batch=heads.max_jobs if heads is not None else 0,
            ended=ended,
            error=error,
            outputs=tuple(outputs),
            processing_seconds=(self.loop_ended or now) - started,
            loop_idle_s=0.0 if self.loop_ended else time.monotonic() - self.loop_at,
            running=self.running and not self.loop_ended,
        )
