"""Bad input across the six commands, table-driven: each case exits with status 2, says what is
wrong in one line starting with "error:" (no traceback), and leaves nothing behind — neither in
its own folder nor in the shared dataset, run and engine dirs it reads."""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from art_edge import cli, synthetic
from art_train import adapters, build_engine, evaluate, train

COMMANDS = {
    "art-synth": synthetic.main,
    "art-prepare-dataset": adapters.main,
    "art-train": train.main,
    "art-eval": evaluate.main,
    "art-build-engine": build_engine.main,
    "art-edge": cli.main,
}


@dataclass
class Ctx:
    tmp: Path
    synth: Path
    trained: Path
    engine: Path
    small: list  # the flags of the very small ART the tests train

    def file(self, name: str, content) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def lists(self):
        return [
            "--train",
            self.synth / "train.csv",
            "--val",
            self.synth / "val.csv",
            "--classes",
            self.synth / "classes.txt",
        ]

    def val(self):
        return ["--val", self.synth / "val.csv", "--classes", self.synth / "classes.txt"]

    def clip(self):
        return sorted((self.synth / "videos").glob("val_*.mp4"))[0]


def rows(c: Ctx, *lines, header="path,label"):
    return c.file("list.csv", "\n".join([header, *lines]) + "\n")


def on_clip(c: Ctx, *flags) -> list:
    """art-edge on the engine and a clip, with `flags`."""
    return ["--engine", c.engine, "--video", c.clip(), *flags]


def blocked(c: Ctx, name="out"):
    """A path that cannot be created: a file stands where its folder should be."""
    return c.file("a_file", "x") / name


def annotations(c: Ctx, dataset: str, files: dict, *extra) -> list:
    """Official-looking annotation files in c.tmp/ann; → art-prepare-dataset's arguments."""
    for name, content in files.items():
        c.file(f"ann/{name}", content)
    return [dataset, *extra, "--annotations", c.tmp / "ann", "--out", c.tmp / "lists"]


def diving(c: Ctx, vocab, records):
    records = json.dumps(records)
    return annotations(
        c,
        "diving48",
        {
            "Diving48_vocab.json": json.dumps(vocab),
            "Diving48_V2_train.json": records,
            "Diving48_V2_test.json": records,
        },
    )


def kinetics(c: Ctx, body, header="label,youtube_id,time_start,time_end,split"):
    return annotations(
        c, "kinetics", {name: f"{header}\n{body}\n" for name in ("train.csv", "validate.csv")}
    )


def truncated(c: Ctx) -> Path:
    """The tower art-tiny ships, cut in half."""
    data = shipped_tower().read_bytes()
    return c.file("tower.safetensors", data[: len(data) // 2])


def shipped_tower() -> Path:
    from art_train.clip import packaged_tower

    return packaged_tower("ART-ResNet-Tiny")


def broken_engine(c: Ctx):
    copy = c.tmp / "engine"
    shutil.copytree(c.engine, copy)
    (copy / "frame_head.onnx").write_bytes(b"not a graph")
    return copy


CASES = {
    # ---- art-synth
    "synth actors not a number": (
        "art-synth",
        lambda c: ["--out", c.tmp / "s", "--actors", "three"],
        "give N or LOW-HIGH",
    ),
    "synth actors 5": (
        "art-synth",
        lambda c: ["--out", c.tmp / "s", "--actors", "2-5"],
        "--actors must be between 1 and 4",
    ),
    "synth actors too large": (
        "art-synth",
        lambda c: ["--out", c.tmp / "s", "--actors", "2", "--size", 200],
        "an actor must fit",
    ),
    "synth per-class 0": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--per-class", 0],
        "must be an integer ≥ 1",
    ),
    "synth val-per-class -1": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--val-per-class", -1],
        "≥ 1",
    ),
    "synth one class": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--classes", 1],
        "between 2 and 6",
    ),
    "synth nine classes": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--classes", 9],
        "between 2 and 6",
    ),
    "synth size 0": ("art-synth", lambda c: ["--out", c.tmp / "d", "--size", 0], "≥ 32"),
    "synth frames 0": ("art-synth", lambda c: ["--out", c.tmp / "d", "--frames", 0], "≥ 2"),
    "synth per-class text": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--per-class", "many"],
        "integer",
    ),
    "synth jitter 5": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--centre-jitter", 5],
        r"\[0, 0.3\]",
    ),
    "synth jitter on the hard scene": (
        "art-synth",
        lambda c: ["--out", c.tmp / "d", "--scene", "hard", "--centre-jitter", 0.1],
        "applies to --scene easy",
    ),
    "synth out not empty": (
        "art-synth",
        lambda c: ["--out", c.file("d/x", "x").parent],
        "not empty",
    ),
    "synth out blocked": ("art-synth", lambda c: ["--out", blocked(c)], "is a file, not a folder"),
    "synth out unwritable": (
        "art-synth",
        lambda c: ["--out", "/proc/art-synth"],
        "cannot write in",
    ),
    # ---- art-prepare-dataset
    "prepare no annotations": (
        "art-prepare-dataset",
        lambda c: ["kinetics", "--annotations", c.tmp / "none", "--out", c.tmp / "l"],
        "no such folder",
    ),
    "prepare unknown dataset": (
        "art-prepare-dataset",
        lambda c: ["ucf101", "--annotations", c.tmp, "--out", c.tmp / "l"],
        "invalid choice",
    ),
    "prepare finegym subset": (
        "art-prepare-dataset",
        lambda c: ["finegym", "--subset", "gym42", "--annotations", c.tmp, "--out", c.tmp / "l"],
        "invalid choice",
    ),
    "prepare diving48 missing vocab": (
        "art-prepare-dataset",
        lambda c: ["diving48", "--annotations", c.file("ann/x", "").parent, "--out", c.tmp / "l"],
        "not found",
    ),
    "prepare diving48 label outside vocab": (
        "art-prepare-dataset",
        lambda c: diving(c, [["a", "b", "c", "d"]], [{"vid_name": "v", "label": 7}]),
        "not in the official format",
    ),
    "prepare diving48 no vid_name": (
        "art-prepare-dataset",
        lambda c: diving(c, [["a", "b", "c", "d"]], [{"label": 0}]),
        "without the field 'vid_name'",
    ),
    "prepare diving48 bad json": (
        "art-prepare-dataset",
        lambda c: [
            "diving48",
            "--annotations",
            c.file("ann/Diving48_vocab.json", "[[").parent,
            "--out",
            c.tmp / "l",
        ],
        "not valid JSON",
    ),
    "prepare finegym three columns": (
        "art-prepare-dataset",
        lambda c: annotations(
            c,
            "finegym",
            {
                "gym99_categories.txt": "Clabel: 0; set: 1; Glabel: 1; (VT) a\n",
                "gym99_train_element_v1.1.txt": "a b c\n",
                "gym99_val_element.txt": "a b c\n",
            },
        ),
        "not in the official format",
    ),
    "prepare kinetics time not a number": (
        "art-prepare-dataset",
        lambda c: kinetics(c, "abseiling,abc,soon,10,t"),
        "not in the official format",
    ),
    "prepare kinetics header": (
        "art-prepare-dataset",
        lambda c: kinetics(c, "a,b", header="x,y"),
        "expected the header",
    ),
    "prepare ssv2 labels a list": (
        "art-prepare-dataset",
        lambda c: annotations(
            c,
            "ssv2",
            {
                "something-something-v2-labels.json": "[1, 2]",
                "something-something-v2-train.json": "[]",
                "something-something-v2-validation.json": "[]",
            },
        ),
        "not in the official format",
    ),
    "prepare out blocked": (
        "art-prepare-dataset",
        lambda c: kinetics(c, "a,b,0,1,t")[:-1] + [blocked(c)],
        "is a file, not a folder",
    ),
    # ---- art-train
    "train unknown config": (
        "art-train",
        lambda c: ["--config", "art-huge", *c.lists(), "--out", c.tmp / "r"],
        "unknown config 'art-huge'",
    ),
    "train batch-size 0": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--batch-size", 0],
        "≥ 1",
    ),
    "train lr -1": ("art-train", lambda c: [*c.lists(), "--out", c.tmp / "r", "--lr", -1], "> 0"),
    "train epochs 0": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--epochs", 0],
        "≥ 1",
    ),
    "train epochs -3": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--epochs", -3],
        "≥ 1",
    ),
    "train workers -1": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--workers", -1],
        "≥ 0",
    ),
    "train set unknown": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--set", "bogus=1"],
        "unknown field 'bogus'",
    ),
    "train set batch_size 0": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--set", "batch_size=0"],
        "batch_size = 0",
    ),
    "train set no equals": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--set", "dim"],
        "key=value",
    ),
    "train dim not divisible": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--set", "dim=30", "--set", "num_heads=4"],
        "not divisible",
    ),
    "train set bad optimizer": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--set", "optimizer=lbfgs"],
        "adamw or sgd",
    ),
    "train config json invalid": (
        "art-train",
        lambda c: ["--config", c.file("cfg.json", "{"), *c.lists(), "--out", c.tmp / "r"],
        "not valid JSON",
    ),
    "train list missing": (
        "art-train",
        lambda c: ["--train", c.tmp / "no.csv", *c.lists()[2:], "--out", c.tmp / "r"],
        "LIST file not found",
    ),
    "train list binary": (
        "art-train",
        lambda c: [
            "--train",
            c.file("b.csv", b"\x00\x01\x02path"),
            *c.lists()[2:],
            "--out",
            c.tmp / "r",
        ],
        "binary file",
    ),
    "train list not utf-8": (
        "art-train",
        lambda c: [
            "--train",
            c.file("l.csv", "path,label\nvidéo.mp4,a\n".encode("latin-1")),
            *c.lists()[2:],
            "--out",
            c.tmp / "r",
        ],
        "not a UTF-8 text file",
    ),
    "train list extra values": (
        "art-train",
        lambda c: ["--train", rows(c, f"{c.clip()},0,0,8"), *c.lists()[2:], "--out", c.tmp / "r"],
        "header names 2 columns",
    ),
    "train list range past end": (
        "art-train",
        lambda c: [
            "--train",
            rows(c, f"{c.clip()},0,0,999", header="path,label,start_frame,end_frame"),
            *c.lists()[2:],
            "--out",
            c.tmp / "r",
        ],
        "past the end",
    ),
    "train list empty range": (
        "art-train",
        lambda c: [
            "--train",
            rows(c, f"{c.clip()},0,8,4", header="path,label,start_frame,end_frame"),
            *c.lists()[2:],
            "--out",
            c.tmp / "r",
        ],
        "empty or negative",
    ),
    "train list unknown label": (
        "art-train",
        lambda c: ["--train", rows(c, f"{c.clip()},jumping"), *c.lists()[2:], "--out", c.tmp / "r"],
        "unknown label 'jumping'",
    ),
    "train classes binary": (
        "art-train",
        lambda c: [*c.lists()[:4], "--classes", c.file("c.txt", b"\x00\xff"), "--out", c.tmp / "r"],
        "not a UTF-8|binary",
    ),
    "train classes duplicate": (
        "art-train",
        lambda c: [*c.lists()[:4], "--classes", c.file("c.txt", "a\na\n"), "--out", c.tmp / "r"],
        "twice",
    ),
    "train out blocked": (
        "art-train",
        lambda c: [*c.lists(), "--out", blocked(c), *c.small, "--epochs", 1],
        "is a file, not a folder",
    ),
    "train existing run": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.trained],
        "already holds a run",
    ),
    "train resume no run": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "none", "--resume"],
        "checkpoint dir not found",
    ),
    "train resume other set": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.trained, "--resume", "--set", "dim=64"],
        r"where dim = 32; drop --set dim=64",
    ),
    "train no validation": (
        "art-train",
        lambda c: [
            "--train",
            c.synth / "train.csv",
            "--classes",
            c.synth / "classes.txt",
            "--out",
            c.tmp / "r",
        ],
        "give --val LIST",
    ),
    "train val-fraction 2": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--val-fraction", 2],
        r"\[0, 1\]",
    ),
    "train clip-weights missing": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", "--clip-weights", c.tmp / "ViT-B-16.pt"],
        "--clip-weights: no such file",
    ),
    "train clip-weights truncated": (
        "art-train",
        lambda c: [*c.lists(), "--out", c.tmp / "r", *c.small, "--clip-weights", truncated(c)],
        "cannot be read .*incomplete",
    ),
    "train clip-weights another architecture": (
        "art-train",
        lambda c: [
            *c.lists(),
            "--out",
            c.tmp / "r",
            *c.small,
            "--set",
            "backbone=ART-ViT-Tiny",
            "--set",
            "feature_stage=-1",
            "--clip-weights",
            shipped_tower(),
        ],  # fmt: skip
        "fills 0 of .* vision tower of ART-ViT-Tiny .*timm tower: pass --set backbone=",
    ),
    "train clip-weights empty folder": (
        "art-train",
        lambda c: [
            *c.lists(),
            "--out",
            c.tmp / "r",
            "--clip-weights",
            c.file("hub/x.txt", "").parent,
        ],
        "folder without a weights file",
    ),
    # ---- art-eval
    "eval no source": (
        "art-eval",
        lambda c: c.val(),
        "one of the arguments --ckpt --engine is required",
    ),
    "eval ckpt missing": (
        "art-eval",
        lambda c: ["--ckpt", c.tmp / "none", *c.val()],
        "checkpoint dir not found",
    ),
    "eval engine missing": (
        "art-eval",
        lambda c: ["--engine", c.tmp / "none", *c.val()],
        "engine dir not found",
    ),
    "eval cuda without a gpu": (
        "art-eval",
        lambda c: ["--ckpt", c.trained, *c.val(), "--device", "cuda:99"],
        "no such CUDA GPU here",
    ),
    "eval batch 0": (
        "art-eval",
        lambda c: ["--engine", c.engine, *c.val(), "--batch-size", 0],
        "≥ 1",
    ),
    "eval threads -2": (
        "art-eval",
        lambda c: ["--engine", c.engine, *c.val(), "--threads", -2],
        "≥ 1",
    ),
    "eval classes mismatch": (
        "art-eval",
        lambda c: [
            "--engine",
            c.engine,
            "--val",
            c.synth / "val.csv",
            "--classes",
            c.file("c.txt", "a\nb\nc\nd\n"),
        ],
        "does not match the engine",
    ),
    "eval wrong root": (
        "art-eval",
        lambda c: ["--engine", c.engine, *c.val(), "--root", c.tmp],
        "missing or do not decode",
    ),
    "eval damaged engine": (
        "art-eval",
        lambda c: ["--engine", broken_engine(c), *c.val()],
        "sha256",
    ),
    "eval range past end": (
        "art-eval",
        lambda c: [
            "--engine",
            c.engine,
            "--val",
            rows(c, f"{c.clip()},0,0,999", header="path,label,start_frame,end_frame"),
            "--classes",
            c.synth / "classes.txt",
        ],
        "past the end",
    ),
    # ---- art-build-engine
    "build ckpt missing": (
        "art-build-engine",
        lambda c: ["--ckpt", c.tmp / "none", "--out", c.tmp / "e"],
        "checkpoint dir not found",
    ),
    "build from missing": (
        "art-build-engine",
        lambda c: ["--from", c.tmp / "none", "--out", c.tmp / "e"],
        "engine dir not found",
    ),
    "build both sources": (
        "art-build-engine",
        lambda c: ["--ckpt", c.trained, "--from", c.engine, "--out", c.tmp / "e"],
        "not allowed with",
    ),
    "build int8 no calib": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--precision", "int8"],
        "needs --calib",
    ),
    "build fp16 on onnxruntime": (
        "art-build-engine",
        lambda c: [
            "--from",
            c.engine,
            "--out",
            c.tmp / "e",
            "--precision",
            "fp16",
            "--backend",
            "onnxruntime",
        ],
        "needs --backend tensorrt",
    ),
    "build tensorrt missing": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--backend", "tensorrt"],
        "TensorRT is not installed",
    ),
    "build precision int4": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--precision", "int4"],
        "invalid choice",
    ),
    "build calib-size 0": (
        "art-build-engine",
        lambda c: [
            "--from",
            c.engine,
            "--out",
            c.tmp / "e",
            "--precision",
            "int8",
            "--calib",
            c.synth / "train.csv",
            "--calib-size",
            0,
        ],
        "≥ 1",
    ),
    "build min-agreement 2": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--min-agreement", 2],
        r"\[0, 1\]",
    ),
    "build percentile 0": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--percentile", 0],
        r"\(0, 100\]",
    ),
    "build threads -2": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.tmp / "e", "--threads", -2],
        "≥ 1",
    ),
    "build calib list missing": (
        "art-build-engine",
        lambda c: [
            "--from",
            c.engine,
            "--out",
            c.tmp / "e",
            "--precision",
            "int8",
            "--calib",
            c.tmp / "no.csv",
        ],
        "LIST file not found",
    ),
    "build out not empty": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.file("e/x", "x").parent],
        "pass --force",
    ),
    "build out blocked": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", blocked(c)],
        "is a file, not a folder",
    ),
    "build from equals out": (
        "art-build-engine",
        lambda c: ["--from", c.engine, "--out", c.engine, "--force"],
        "the same folder",
    ),
    "build damaged engine": (
        "art-build-engine",
        lambda c: ["--from", broken_engine(c), "--out", c.tmp / "e"],
        "sha256",
    ),
    # ---- art-edge
    "edge engine missing": (
        "art-edge",
        lambda c: ["--engine", c.tmp / "none", "--video", c.clip()],
        "engine dir not found",
    ),
    "edge video missing": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.tmp / "no.mp4"],
        "not found",
    ),
    "edge output extension": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--output", c.tmp / "o.gif"],
        "give a .mp4 or .avi",
    ),
    "edge output blocked": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--output", blocked(c, "o.mp4")],
        "is a file, not a folder",
    ),
    "edge events blocked": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--events", blocked(c, "e.jsonl")],
        "is a file, not a folder",
    ),
    "edge summary unwritable": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--summary", "/proc/art/s.json"],
        "cannot write in",
    ),
    "edge headless output": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--headless",
            "--output",
            c.tmp / "o.mp4",
        ],
        "--headless draws nothing",
    ),
    "edge window below T": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--window", 2],
        "smaller than the T = 4",
    ),
    "edge track unknown detector": (
        "art-edge",
        lambda c: on_clip(c, "--track", "yolo"),
        "unknown detector; use motion",
    ),
    "edge track onnx not a detector": (
        "art-edge",
        lambda c: on_clip(c, "--track", f"onnx:{c.engine / 'frame_encoder.onnx'}"),
        r"not a detector of the supported layout; expected one input \[1, 3, H, W\] and one output",
    ),
    "edge track onnx missing": (
        "art-edge",
        lambda c: on_clip(c, "--track", f"onnx:{c.tmp / 'none.onnx'}"),
        "no such file",
    ),
    "edge detect-every 0": (
        "art-edge",
        lambda c: on_clip(c, "--track", "--detect-every", 0),
        "--detect-every 0: must be an integer ≥ 1",
    ),
    "edge max-tracks 0": (
        "art-edge",
        lambda c: on_clip(c, "--track", "motion", "--max-tracks", 0),
        "--max-tracks 0: must be an integer ≥ 1",
    ),
    "edge track with roi": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--source",
            f"a={c.clip()}",
            "--track",
            "--roi",
            "a=0,0,0.5,0.5",
        ],  # fmt: skip
        "--track and --roi on camera a",
    ),
    "edge track unknown camera": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", f"a={c.clip()}", "--track", "b=motion"],
        "no camera named 'b'",
    ),
    "edge stride 0": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--stride", 0],
        "≥ 1",
    ),
    "edge threads -2": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--threads", -2],
        "≥ 1",
    ),
    "edge head-threads 0": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--head-threads", 0],
        "≥ 1",
    ),
    "edge encoder-workers 0": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--encoder-workers", 0],
        "≥ 1",
    ),
    "edge encoder-workers on tensorrt": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--backend",
            "tensorrt",
            "--encoder-workers",
            2,
        ],  # fmt: skip
        "--encoder-workers 2 is for the onnxruntime backend",
    ),
    "edge max-frames -1": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--max-frames", -1],
        "≥ 0",
    ),
    "edge smoothing 1.5": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--smoothing", 1.5],
        r"\[0, 1\)|≤ 0.999",
    ),
    "edge synthetic frames 0": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", "synthetic://?frames=0&clips=1"],
        "frames must be ≥ 2",
    ),
    "edge synthetic unknown": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", "synthetic://?fames=8"],
        "unknown synthetic",
    ),
    "edge list all missing": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--source",
            c.synth / "val.csv",
            "--root",
            c.tmp,
            "--headless",
            "--events",
            c.tmp / "ev.jsonl",
        ],
        "no frames were processed",
    ),
    "edge duplicate camera names": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", f"a={c.clip()}", "--source", f"a={c.clip()}"],
        "given twice",
    ),
    "edge roi for an unknown camera": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", f"a={c.clip()}", "--roi", "b=0,0,10,10"],
        "no camera named 'b'",
    ),
    "edge roi outside the frame": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--source",
            f"a={c.clip()}",
            "--roi",
            "a=0,0,5000,10",
            "--events",
            c.tmp / "ev.jsonl",
            "--segments",
            c.tmp / "seg.jsonl",
        ],
        "outside the .*frame",
    ),
    "edge roi malformed": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--source", f"a={c.clip()}", "--roi", "a=0,0,ten,10"],
        "x,y,w,h",
    ),
    "edge pre negative": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--clips",
            c.tmp / "clips",
            "--pre",
            -1,
        ],
        "must be ≥ 0",
    ),
    "edge pre and post beyond the history": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--clips",
            c.tmp / "clips",
            "--pre",
            20,
            "--post",
            15,
        ],
        "--clip-history",
    ),
    "edge clips folder unwritable": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--clips", blocked(c, "clips")],
        "--clips",
    ),
    "edge mqtt uri without topic": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--events", "mqtt://localhost:1883"],
        "mqtt://HOST",
    ),
    "edge mqtt uri bad port": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--events", "mqtt://localhost:x/t"],
        "mqtt://HOST",
    ),
    "edge webhook uri without host": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--events", "http:///hook"],
        "webhook is http",
    ),
    "edge metrics malformed": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--metrics", "localhost"],
        "HOST:PORT",
    ),
    "edge metrics port in use": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--metrics",
            f"127.0.0.1:{busy_port()}",
            "--events",
            c.tmp / "ev.jsonl",
        ],
        "cannot listen",
    ),
    "edge web beyond localhost without a token": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--web", "0.0.0.0:8080"],
        "needs --web-token",
    ),
    "edge web token without web": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--web-token", "secret"],
        "needs --web HOST:PORT",
    ),
    "edge web malformed": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--web", "localhost"],
        "--web.*HOST:PORT",
    ),
    "edge web port in use": (
        "art-edge",
        lambda c: [
            "--engine",
            c.engine,
            "--video",
            c.clip(),
            "--web",
            f"127.0.0.1:{busy_port()}",
            "--events",
            c.tmp / "ev.jsonl",
        ],
        "--web .*cannot listen",
    ),
    "edge web origin malformed": (
        "art-edge",
        lambda c: [*edge(c), "--web", "127.0.0.1:8080", "--web-origin", "rig.example.org"],
        "--web-origin 'rig.example.org': give an origin, scheme://HOST",
    ),
    "edge web origin without web": (
        "art-edge",
        lambda c: [*edge(c), "--web-origin", "https://rig.example.org"],
        "--web-origin needs --web HOST:PORT",
    ),
    "edge web clients zero": (
        "art-edge",
        lambda c: [*edge(c), "--web", "127.0.0.1:8080", "--web-clients", 0],
        "--web-clients 0: must be an integer in",
    ),
    "edge web cpu over one": (
        "art-edge",
        lambda c: [*edge(c), "--web", "127.0.0.1:8080", "--web-cpu", 2],
        r"--web-cpu 2.0: must be a fraction in \(0, 1\]",
    ),
    "edge web token from an unset variable": (
        "art-edge",
        lambda c: [*edge(c), "--web", "127.0.0.1:8080", "--web-token", "${ART_UNSET_TOKEN}"],
        r"--web-token .*\$\{ART_UNSET_TOKEN\} is not set in the environment",
    ),
    "edge events password from an unset variable": (
        "art-edge",
        lambda c: [*edge(c), "--events", "mqtt://rig:${ART_UNSET_PW}@localhost/rig/events"],
        r"mqtt://rig:\*\*\*@localhost/rig/events: \$\{ART_UNSET_PW\} is not set",
    ),
    "edge mqtt uri error masks its password": (
        "art-edge",
        lambda c: [*edge(c), "--events", "mqtt://rig:Hunter2Hunter2@localhost:x/t"],
        r"^(?!.*Hunter2).*--events mqtt://rig:\*\*\*@localhost:x/t: an MQTT sink is",
    ),
    "edge webhook uri error masks its key": (
        "art-edge",
        lambda c: [*edge(c), "--events", "https://:99999/hook?apikey=Hunter2Hunter2"],
        r"^(?!.*Hunter2).*apikey=\*\*\*: a webhook is",
    ),
    "edge events credentials missing": (
        "art-edge",
        lambda c: [*edge(c), "--events-credentials", c.tmp / "none.netrc"],
        "--events-credentials .*none.netrc: no such file",
    ),
    "edge events credentials readable by others": (
        "art-edge",
        lambda c: [*edge(c), "--events-credentials", logins(c, 0o644)],
        r"other users can read it \(mode 0644\); chmod 600",
    ),
    "edge events credentials not netrc": (
        "art-edge",
        lambda c: [*edge(c), "--events-credentials", logins(c, 0o600, "machine\n")],
        "not a netrc file",
    ),
    "edge events ca without a tls sink": (
        "art-edge",
        lambda c: [
            *edge(c),
            "--events",
            "mqtt://localhost/t",
            "--events-ca",
            c.file("ca.pem", "x"),
        ],
        "--events-ca: no mqtts:// or https:// sink uses it",
    ),
    "edge events ca not pem": (
        "art-edge",
        lambda c: [
            *edge(c),
            "--events",
            "mqtts://localhost/t",
            "--events-ca",
            c.file("ca.pem", "x"),
        ],
        "--events-ca .*ca.pem: cannot read CA certificates",
    ),
    "edge events cert not pem": (
        "art-edge",
        lambda c: [
            *edge(c),
            "--events",
            "https://localhost/h",
            "--events-cert",
            c.file("c.pem", "x"),
        ],
        "--events-cert .*c.pem: cannot load the client certificate",
    ),
    "edge events key without cert": (
        "art-edge",
        lambda c: [
            *edge(c),
            "--events",
            "https://localhost/h",
            "--events-key",
            c.file("k.pem", "x"),
        ],
        "--events-key needs --events-cert",
    ),
    "edge config unknown key": (
        "art-edge",
        lambda c: ["--config", c.file("rig.toml", f'engine = "{c.engine}"\nstrid = 2\n')],
        "unknown key 'strid' \\(did you mean stride\\?\\)",
    ),
    "edge config bad value": (
        "art-edge",
        lambda c: ["--config", c.file("rig.toml", 'stride = "two"\n'), "--video", c.clip()],
        "rig.toml: stride = 'two'",
    ),
    "edge config out of range": (
        "art-edge",
        lambda c: ["--config", c.file("rig.toml", "stride = 0\n"), "--video", c.clip()],
        "rig.toml: stride 0: must be an integer ≥ 1",
    ),
    "edge config masked secret": (
        "art-edge",
        lambda c: ["--config", c.file("rig.toml", 'web_token = "<masked>"\n')],
        "web_token holds a masked secret",
    ),
    "edge config not toml": (
        "art-edge",
        lambda c: ["--config", c.file("rig.toml", "stride = = 2\n")],
        "not valid TOML",
    ),
    "edge config missing": (
        "art-edge",
        lambda c: ["--config", c.tmp / "none.toml"],
        "no such file",
    ),
    "edge without an engine": ("art-edge", lambda c: ["--video", c.clip()], "give --engine"),
    "edge unit without a config": (
        "art-edge",
        lambda c: on_clip(c, "--print-systemd-unit"),
        "--print-systemd-unit runs the rig of a --config file",
    ),
    "edge retain malformed": (
        "art-edge",
        lambda c: on_clip(c, "--clips", c.tmp / "k", "--retain", "7x"),
        "--retain '7x'",
    ),
    "edge rotate malformed": (
        "art-edge",
        lambda c: on_clip(c, "--rotate", "weekly"),
        "--rotate 'weekly'",
    ),
    "edge spool is a file": (
        "art-edge",
        lambda c: on_clip(c, "--spool", c.file("f", "x")),
        "--spool .*a file, not a folder",
    ),
    "edge tensorrt missing": (
        "art-edge",
        lambda c: ["--engine", c.engine, "--video", c.clip(), "--backend", "tensorrt"],
        "no TensorRT engines|TensorRT",
    ),
}


def edge(c: Ctx) -> list:
    """art-edge's engine and a video: what every edge case below starts from."""
    return ["--engine", c.engine, "--video", c.clip()]


def logins(c: Ctx, mode: int, text: str = "machine broker login rig password pw\n") -> Path:
    """A netrc file of the sinks' logins, with permissions `mode`."""
    path = c.file("logins.netrc", text)
    path.chmod(mode)
    return path


_LISTENING = []  # sockets held open for the whole test session


def busy_port() -> int:
    """A localhost port something listens on."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    _LISTENING.append(s)
    return s.getsockname()[1]


def listing(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, synth, trained, engine_dir, small_args, tmp_path, capsys):
    command, make_args, message = CASES[name]
    ctx = Ctx(tmp_path / "work", synth, trained, engine_dir, small_args)
    ctx.tmp.mkdir()
    args = [str(a) for a in make_args(ctx)]
    before = {p: listing(p) for p in (ctx.tmp, synth, trained, engine_dir)}
    try:
        code = COMMANDS[command](args)
    except SystemExit as e:  # argparse's own exit, through our one-line error()
        code = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, f"{name}: exit {code}; stderr: {err[-1500:]}"
    assert "Traceback" not in err and len(errors) == 1, err[-1500:]
    assert re.search(message, errors[0]), f"{name}: {errors[0]!r} does not say {message!r}"
    after = {p: listing(p) for p in before}
    assert after == before, (
        f"{name} left files behind: {[sorted(after[p] - before[p]) for p in before]}"
    )
