"""Who did what: art-edge --track's per-track accuracy, identity switches and speed.

    python benchmarks/tracks.py --engine demo/engine       # → benchmarks/results/tracks.json

1. Accuracy: art-synth's multi-actor scenes (3 actors a scene, each a different class) through
   the rig with `--track motion` and the engine: each track is scored against the actor its boxes
   overlap most (summed IoU over the frames), by its final label (its last decision); identity
   switches: an actor's best-overlapping track (IoU ≥ 0.5) changing from one frame to the next.
2. Speed: scenes of 1, 2 and 4 actors, one camera each; 4 cameras of one actor each (4
   detectors, the crops of all of them in one encoder batch); 4 actors with the detector on every
   4th frame. Each set's runs alternate with the others'; medians.
3. A real video with several people (Debian's opencv-doc ships OpenCV's vtest.avi, pedestrians):
   the tracks and the FPS with `hog` (every --hog-every frames) and with `motion` (every frame);
   no ground truth: tracks, not accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from art_edge.api import open_cameras, run
from art_edge.errors import UserError
from art_edge.rig.config import RigConfig
from art_edge.rig.observers import RigObserver
from art_edge.runtime.engine import ARTEngine
from art_edge.synthetic import make_scenes
from art_edge.video.tracks import box_iou

from benchlib import MACHINE, RESULTS, write_result

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


class TrackLog(RigObserver):
    """Each camera's tracks in every frame and each track's decisions."""

    def __init__(self):
        self.frames = defaultdict(dict)  # camera → frame index → [(track id, box)]
        self.decisions = defaultdict(lambda: defaultdict(list))  # camera → track → [(frame, label)]

    def on_frame(self, camera, frame):
        self.frames[camera][frame.index] = [(t.id, t.box) for t in frame.tracks or ()]

    def on_decision(self, camera, decision):
        self.decisions[camera][decision.track].append((decision.frame, decision.label))


def run_rig(engine, uris: list, detector: str, every: int = 1) -> tuple[TrackLog, dict]:
    """One rig over `uris` (a camera each), tracked by `detector`; → (its log, its summary)."""
    config = RigConfig.from_settings(track=detector, detect_every=every, headless=True)
    cameras = open_cameras(engine, [(f"cam{i}", str(u)) for i, u in enumerate(uris)])
    log = TrackLog()
    summary = run(engine, cameras, config, observers=[log])
    return log, summary


def score_scene(truth: dict, frames: dict, decisions: dict) -> dict:
    """A scene's tracks against its actors (see the module docstring)."""
    actors = truth["actors"]
    overlap = defaultdict(lambda: np.zeros(len(actors)))
    for index, tracks in frames.items():
        for tid, box in tracks:
            for k, actor in enumerate(actors):
                if actor["boxes"][index]:
                    overlap[tid][k] += box_iou(box, actor["boxes"][index])
    correct = scored = 0
    tracked = set()
    for tid, sums in overlap.items():
        if sums.max() <= 0 or not decisions.get(tid):
            continue
        k = int(sums.argmax())
        tracked.add(k)
        scored += 1
        correct += decisions[tid][-1][1] == actors[k]["label"]
    switches, matched, visible = identity_switches(actors, frames)
    return {"tracks": len(overlap), "scored": scored, "correct": correct, "switches": switches,
            "actors": len(actors), "actors_tracked": len(tracked), "frames": len(frames),
            "actor_frames_matched": matched, "actor_frames": visible}  # fmt: skip


def identity_switches(actors: list, frames: dict) -> tuple[int, int, int]:
    """→ (switches, actor-frames with a track at IoU ≥ 0.5, actor-frames visible)."""
    switches = matched = visible = 0
    last = [None] * len(actors)
    for index in sorted(frames):
        for k, actor in enumerate(actors):
            box = actor["boxes"][index]
            if not box:
                continue
            visible += 1
            best = max(frames[index], key=lambda t: box_iou(t[1], box), default=None)
            if best is None or box_iou(best[1], box) < 0.5:
                continue
            matched += 1
            switches += last[k] is not None and last[k] != best[0]
            last[k] = best[0]
    return switches, matched, visible


def accuracy(engine, folder: Path, scenes: int, seed: int) -> dict:
    import json

    make_scenes(folder, scenes, (3, 3), seed=seed)
    totals, fps = defaultdict(int), []
    for video in sorted(folder.glob("scene_*.mp4")):
        truth = json.loads(video.with_suffix(".json").read_text())
        log, summary = run_rig(engine, [video], "motion")
        for k, v in score_scene(truth, log.frames["cam0"], log.decisions["cam0"]).items():
            totals[k] += v
        fps.append(summary["fps"])
    return {
        "scenes": scenes,
        "actors_per_scene": 3,
        "per_track_top1": round(totals["correct"] / max(1, totals["scored"]), 4),
        "id_switches_per_100_frames": round(100 * totals["switches"] / totals["frames"], 3),
        "actors_tracked": round(totals["actors_tracked"] / totals["actors"], 4),
        "actor_frames_matched": round(totals["actor_frames_matched"] / totals["actor_frames"], 4),
        "fps_median": round(float(np.median(fps)), 1),
        **{k: totals[k] for k in ("tracks", "scored", "correct", "switches", "frames", "actors")},
    }


def speed(engine, folder: Path, seed: int, repeats: int) -> dict:
    """FPS (camera frames a second) and track-frames a second: 1, 2, 4 actors in one camera, and
    4 cameras of one actor each, in alternating order, medians."""
    sets = {n: make_scenes(folder / f"a{n}", 1, (n, n), seed=seed + n) / "scene_0000.mp4"
            for n in (1, 2, 4)}  # fmt: skip
    ones = [make_scenes(folder / f"one{i}", 1, (1, 1), seed=seed + 10 + i) / "scene_0000.mp4"
            for i in range(4)]  # fmt: skip
    runs = {"1 actor": ([sets[1]], 1), "2 actors": ([sets[2]], 1), "4 actors": ([sets[4]], 1),
            "4 cameras": (ones, 1), "4 actors, --detect-every 4": ([sets[4]], 4)}  # fmt: skip
    tracks = {name: 4 for name in runs} | {"1 actor": 1, "2 actors": 2}
    fps = defaultdict(list)
    for _ in range(repeats):
        for name, (uris, every) in runs.items():
            _, summary = run_rig(engine, uris, "motion", every)
            fps[name].append(summary["fps"] / len(uris))  # frames a second of each camera
    out = {}
    for name, values in fps.items():
        median = float(np.median(values))
        out[name] = {"fps": round(median, 1), "tracks": tracks[name],
                     "track_frames_per_s": round(median * tracks[name], 1), "runs": values}  # fmt: skip
    return out


def real_video(engine, path: Path, hog_every: int) -> dict:
    """Each detector on the video: hog (about half a second a 768×576 frame on 2 cores) every
    `hog_every` frames, motion on every frame."""
    out = {}
    for detector, every in (("hog", hog_every), ("motion", 1)):
        t0 = time.perf_counter()
        try:
            log, summary = run_rig(engine, [path], detector, every)
        except UserError as e:
            out[detector] = f"not run: {e}"
            continue
        frames = log.frames["cam0"]
        live = [len(v) for v in frames.values()]
        lengths = defaultdict(int)  # frames each track was served
        for tracks in frames.values():
            for tid, _ in tracks:
                lengths[tid] += 1
        out[detector] = {
            "detect_every": every,
            "frames": summary["frames"],
            "fps": round(summary["fps"], 1),
            "seconds": round(time.perf_counter() - t0, 1),
            "tracks": len(lengths),
            # long enough for a window of 32 frames (the engine's decisions need 8 at least)
            "tracks_32_frames_or_more": sum(n >= 32 for n in lengths.values()),
            "track_frames_median": float(np.median(list(lengths.values()))) if lengths else 0.0,
            "live_tracks_mean": round(float(np.mean(live)), 2) if live else 0.0,
            "live_tracks_max": max(live, default=0),
            "decisions": summary["decisions"],
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default="demo/engine", help="engine dir (make demo's)")
    ap.add_argument("--scenes", type=int, default=12, help="3-actor scenes scored")
    ap.add_argument("--repeats", type=int, default=3, help="speed runs of each set")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--video", default=str(VTEST), help="a real video with several people")
    ap.add_argument("--hog-every", type=int, default=8, help="--detect-every of hog on the video")
    ap.add_argument("--out", default=str(RESULTS / "tracks.json"))
    a = ap.parse_args(argv)
    with ARTEngine.load(a.engine, threads=2) as engine, tempfile.TemporaryDirectory() as tmp:
        doc = {"benchmark": "tracks", "command": "python benchmarks/tracks.py " + " ".join(
            sys.argv[1:] if argv is None else argv), "machine": MACHINE, "cpus": os.cpu_count(),
            "engine": {"model": engine.manifest["model"]["name"],
                       "precision": engine.manifest["precision"]}}  # fmt: skip
        doc.update(accuracy(engine, Path(tmp) / "acc", a.scenes, a.seed))
        print(f"per-track top-1 {doc['per_track_top1']:.3f} ({doc['correct']}/{doc['scored']} "
              f"tracks), identity switches {doc['id_switches_per_100_frames']:.2f} per 100 frames, "
              f"actors tracked {doc['actors_tracked']:.3f}")  # fmt: skip
        doc["speed"] = speed(engine, Path(tmp) / "speed", a.seed + 100, a.repeats)
        for name, s in doc["speed"].items():
            print(f"{name}: {s['fps']} FPS a camera, {s['track_frames_per_s']} track-frames/s")
        if Path(a.video).is_file():
            doc["real_video"] = {"video": a.video, **real_video(engine, Path(a.video), a.hog_every)}
            for det in ("hog", "motion"):
                r = doc["real_video"][det]
                if isinstance(r, str):
                    print(f"{Path(a.video).name} with {det}: {r}")
                    continue
                print(f"{Path(a.video).name} with {det}: {r['tracks']} tracks "
                      f"(≤ {r['live_tracks_max']} at once), {r['fps']} FPS")  # fmt: skip
        else:
            doc["real_video"] = f"not run: {a.video} not found (apt-get install opencv-doc)"
    write_result(a.out, doc)


if __name__ == "__main__":
    main()
