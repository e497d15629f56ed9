"""The rig's writing outputs on their own threads: appended JSONL with a run header, rotation,
a write error that pauses, warns once and resumes (a real ENOSPC from /dev/full), a FIFO that
nobody drains (a stuck output: it drops, health says so, closing it takes its deadline and no
more), and the clip writer's pause, resume, free-space pause and retention."""

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from art_edge.rig.clips import ClipJob, ClipWriter, Retention
from art_edge.rig.outlets import Deadline, JsonlFile, Rotation, run_header

from benchlib import wait_for


def lines(path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def warnings(capsys, text: str) -> list:
    return [line for line in capsys.readouterr().err.splitlines() if text in line]


def test_jsonl_is_appended_with_a_header_per_run_and_rotated(tmp_path):
    path = tmp_path / "events.jsonl"
    for run in range(2):
        log = JsonlFile(path, header=run_header(run=run)).start()
        for i in range(3):
            log.put({"type": "decision", "frame": i})
        assert log.close(Deadline(10))
    got = lines(path)
    assert [r["type"] for r in got] == ["run", *["decision"] * 3] * 2  # nothing wiped
    assert [r["run"] for r in got if r["type"] == "run"] == [0, 1]
    log = JsonlFile(path, Rotation(max_bytes=200, keep=2), header=run_header()).start()
    for i in range(40):
        log.put({"type": "decision", "frame": i, "pad": "x" * 20})
    assert log.close(Deadline(10))
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]  # 2 old files kept
    for name in rotated:
        records = lines(tmp_path / name)
        assert records[0]["type"] == "run" and all(r for r in records)  # each file starts so
        assert (tmp_path / name).stat().st_size <= 200 + 60


def test_a_half_line_left_by_a_crash_is_cut_off(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "decision", "frame": 1}\n{"type": "deci')
    log = JsonlFile(path, header=run_header()).start()
    log.put({"frame": 2})
    assert log.close(Deadline(10))
    assert [r.get("frame") for r in lines(path)] == [1, None, 2]  # every line parses


def test_a_write_error_pauses_the_file_warns_once_and_it_resumes(tmp_path, capsys):
    """A real ENOSPC (the path points at /dev/full): the file pauses with one warning naming
    the path and the error, retries, and writes everything it held once the path is a file
    again; nothing else waits for it meanwhile."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system (it gives ENOSPC to every write)")
    path = tmp_path / "events.jsonl"
    path.symlink_to("/dev/full")
    log = JsonlFile(path, header=run_header(), stall_after=30).start()
    started = time.monotonic()
    for i in range(50):
        log.put({"frame": i})
    assert time.monotonic() - started < 0.5  # putting never waits for the disk
    wait_for(lambda: log.trouble.errors >= 3, what="three failed tries")
    assert log.health()[0] == "degraded" and "No space left" in log.health()[1]
    path.unlink()
    path.write_text("")  # the disk has room again
    wait_for(lambda: log.written == 50, what="the held lines written")
    assert log.close(Deadline(10))
    assert [r.get("frame") for r in lines(path)][1:] == list(range(50))
    said = warnings(capsys, "events.jsonl")
    assert len([w for w in said if "No space left on device" in w]) == 1, said
    assert len([w for w in said if "working again" in w]) == 1, said
    assert log.snapshot().counts["dropped"] == 0


def test_a_fifo_nobody_drains_fills_its_queue_then_drops_and_closes_in_time(tmp_path):
    """An events file on a FIFO that nobody reads (as a hung network mount): the output's own
    thread waits, its queue fills and then drops (counted), health says it is stuck, and closing
    it takes its deadline, not for ever."""
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(fifo)
    log = JsonlFile(fifo, header=run_header(), bound=100, stall_after=0.5).start()
    started = time.monotonic()
    for i in range(500):
        log.put({"frame": i})
    assert time.monotonic() - started < 0.5
    assert log.dropped >= 400
    wait_for(lambda: log.health()[0] == "failed", what="health to say stuck")
    started = time.monotonic()
    assert not log.close(Deadline(1.0))
    assert time.monotonic() - started < 2.0
    assert log.lost >= 100 and log.written == 0


def frames_in(path) -> int:
    cap, count = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        count += 1
    return count


def clip_job(path: Path, published: list, frames: int = 6) -> ClipJob:
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))
    return ClipJob(path, 10.0, [(i, jpeg.tobytes()) for i in range(frames)], [], ["a"], True,
                   record={"label": "a"}, publish=published.append)  # fmt: skip


def test_the_clip_writer_pauses_on_a_write_error_and_resumes(tmp_path, capsys):
    """The clips folder turns into a file (every write gets ENOTDIR, as a vanished mount does):
    one warning; the clip being written and those that come while paused are dropped, and their
    records say so; once it is a folder again a probe finds it and clips are written again.
    Every record that names a clip names one that exists."""
    folder, published = tmp_path / "clips", []
    writer = ClipWriter(folder).start()
    writer.put(clip_job(folder / "one.mp4", published))
    wait_for(lambda: len(published) == 1, what="the first clip")
    folder.rename(tmp_path / "away")
    folder.write_text("not a folder")
    writer.put(clip_job(folder / "two.mp4", published))
    wait_for(lambda: len(published) == 2, what="the failed clip's record")
    writer.put(clip_job(folder / "three.mp4", published))  # paused: dropped at once
    assert len(published) == 3 and writer.health()[0] == "degraded"
    folder.unlink()
    (tmp_path / "away").rename(folder)
    wait_for(lambda: not writer.paused, what="the probe to find the folder back")
    writer.put(clip_job(folder / "four.mp4", published))
    wait_for(lambda: len(published) == 4, what="the clip after the pause")
    assert writer.close(Deadline(10))
    assert [r["clip"] is not None for r in published] == [True, False, False, True]
    for record in published:
        if record["clip"]:
            assert Path(record["clip"]).is_file()
            assert frames_in(record["clip"]) == 6
        else:
            assert record["clip_dropped"]
    assert writer.clips_dropped == 2 and not list(folder.glob(".*"))  # no half file left
    said = warnings(capsys, "clips")
    assert len([w for w in said if "Not a directory" in w or "File exists" in w]) == 1, said
    assert len([w for w in said if "working again" in w]) == 1, said


def test_low_free_space_pauses_clip_writing_before_the_disk_is_full(tmp_path, capsys):
    folder, published = tmp_path / "clips", []
    writer = ClipWriter(folder, min_free=10**18).start()  # more than any disk has free
    writer.put(clip_job(folder / "one.mp4", published))
    wait_for(lambda: published, what="the record")
    assert published[0]["clip"] is None and "below --min-free" in published[0]["clip_dropped"]
    assert writer.close(Deadline(10)) and not list(folder.glob("*.mp4"))
    assert len(warnings(capsys, "below --min-free")) == 1


def test_a_stuck_clip_writer_closes_in_time_and_its_records_say_so(tmp_path, monkeypatch):
    import threading

    from art_edge.rig import clips

    release = threading.Event()
    monkeypatch.setattr(clips, "write_clip", lambda job, cancelled: release.wait(30))  # stuck
    folder, published = tmp_path / "clips", []
    writer = ClipWriter(folder).start()
    for name in ("a", "b"):
        writer.put(clip_job(folder / f"{name}.mp4", published))
    started = time.monotonic()
    assert not writer.close(Deadline(0.5))
    assert time.monotonic() - started < 1.5
    assert len(published) == 2 and all(r["clip"] is None for r in published)
    release.set()


def test_retention_deletes_the_oldest_clips_first(tmp_path):
    now = time.time()
    for age_days, name in ((10, "old"), (3, "mid"), (0, "new")):
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    assert Retention(max_age=7 * 86400).enforce(tmp_path) == 1
    assert sorted(p.stem for p in tmp_path.glob("*.mp4")) == ["mid", "new"]
    assert Retention(max_bytes=1500).enforce(tmp_path) == 1
    assert [p.stem for p in tmp_path.glob("*.mp4")] == ["new"]
