"""art-edge's settings: one tree, its flags generated from it, checked once when it is built."""

import argparse
import dataclasses

import pytest

from art_edge.errors import UserError
from art_edge.rig.config import RigConfig, add_flags, flag_of, settings_of
from art_edge.runtime.streaming import StreamConfig


def parse(*flags) -> RigConfig:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return RigConfig.from_flags(parser.parse_args([str(f) for f in flags]))


def test_no_flag_gives_the_defaults_of_the_fields():
    assert parse() == RigConfig()
    assert RigConfig().stream == StreamConfig() and RigConfig().event.emit == "change"


def test_the_flags_and_the_python_settings_make_the_same_tree(tmp_path):
    events = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    from_flags = parse("--stride", 2, "--smoothing", 0.3, "--segments", tmp_path / "s.jsonl",
                       "--no-threads", "--raw", "--events", events[0], "--events", events[1],
                       "--web", "127.0.0.1:8080", "--realtime")  # fmt: skip
    from_python = RigConfig.from_settings(
        stride=2, smoothing=0.3, segments=str(tmp_path / "s.jsonl"), threaded=False,
        raw_clips=True, events=[str(e) for e in events], web="127.0.0.1:8080", realtime=True,
    )  # fmt: skip
    assert from_flags == from_python
    assert from_python.segment.path == str(tmp_path / "s.jsonl") and from_python.clip.raw
    assert from_python.event.sinks == tuple(str(e) for e in events)
    whole = RigConfig.from_settings(stream=StreamConfig(stride=2, smoothing=0.3))
    assert whole.stream == from_python.stream


def test_each_setting_has_one_name_and_one_flag():
    names = [name for name, _ in settings_of(RigConfig)]
    assert len(names) == len(set(names)), names
    flags = [flag_of(name, f) for name, f in settings_of(RigConfig) if f.metadata.get("help")]
    assert len(flags) == len(set(flags)) and "--no-threads" in flags and "--clips" in flags


def test_a_range_is_checked_once_by_the_config_not_by_the_parser():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    args = parser.parse_args(["--stride", "0"])  # the flag only converts the text
    with pytest.raises(UserError, match=r"--stride 0: must be an integer ≥ 1"):
        RigConfig.from_flags(args)
    with pytest.raises(UserError, match=r"--smoothing 1.5: must be a number in \[0, 1\)"):
        RigConfig.from_settings(smoothing=1.5)
    with pytest.raises(UserError, match="--emit 'every': use change or decision"):
        RigConfig.from_settings(emit="every")
    with pytest.raises(UserError, match="--headless draws nothing"):
        RigConfig.from_settings(headless=True, output="out.mp4")


def test_an_unknown_setting_is_refused_and_the_tree_is_frozen():
    with pytest.raises(TypeError, match="unknown settings"):
        RigConfig.from_settings(strides=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RigConfig().max_frames = 3
