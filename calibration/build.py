"""INT8 for an engine dir: calibrate, quantize, gate — called by `art-build-engine --precision int8`.

1. the frame encoder is calibrated on frames of the calibration clips;
2. the three stages of the clip head (clip_topk, frame_head, clip_readout) are calibrated in
   turn, each on what the *quantized* graphs before it produce for the same clips, so each sees
   the error it will see live;
3. the gate runs FP32 and INT8 side by side on held-out clips; a top-1 drop beyond `max_drop`
   (or an agreement below `min_agreement`) fails the build with the report, unless the user
   keeps it, and `auto_exclude` rounds first put the most sensitive nodes back in float.

Writes into `work_dir` (the engine dir being built): `*.int8.onnx` (the Q/DQ graphs ONNX Runtime
runs and TensorRT builds), `calibration_cache.json` and the report (JSON + PNG).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from art_edge.errors import UserError
from art_edge.files import sha256_file
from art_edge.preprocess import Preprocessing
from art_edge.runtime.engine import ARTEngine
from art_edge.runtime.engine_dir import GRAPHS
from calibration.calib_set import (
    DEFAULT_CALIB_CLIPS,
    MIN_CALIB_CLIPS,
    MIN_GATE_CLIPS,
    decode_clips,
    pick_records,
    read_records,
    require,
    split_records,
)
from calibration.gate import Pipeline, compare_predictions, measure_speed, node_errors
from calibration.quantize import (
    CalibrationCache,
    QuantSettings,
    data_identity,
    quantize_graph,
    quantized_nodes,
    settings_dict,
)
from calibration.report import REPORT_JSON, REPORT_PNG, write_report

CACHE_NAME = "calibration_cache.json"


@dataclass
class Int8Options:
    calib: str  # LIST of calibration clips
    root: str | None = None  # folder for relative paths in the LISTs
    # LIST for the gate; default: the calib LIST's clips not used to calibrate
    holdout: str | None = None
    calib_size: int = DEFAULT_CALIB_CLIPS  # clips used to calibrate
    gate_size: int | None = None  # held-out clips scored by the gate (None: all)
    settings: QuantSettings = field(default_factory=QuantSettings)
    max_drop: float = 1.0  # top-1 points INT8 may lose against FP32 on the held-out clips
    min_agreement: float | None = None  # optional floor on FP32/INT8 top-1 agreement (0..1)
    keep_failed: bool = False  # keep an INT8 build that fails the gate (the report says so)
    auto_exclude: int = 0  # rounds that each put the 2 most sensitive nodes back in float
    cache: str | None = None  # calibration cache to reuse (default: the one in the old engine dir)
    seed: int = 0
    threads: int | None = None
    # time FP32 against INT8 on ONNX Runtime here (off for TensorRT builds)
    measure_speed: bool = True


def _paths(work_dir: Path, name: str) -> dict:
    return {"fp32": work_dir / f"{name}.onnx", "int8": work_dir / f"{name}.int8.onnx"}


def _pipeline(work_dir: Path, precision: str, threads) -> Pipeline:
    return Pipeline({g: str(_paths(work_dir, g)[precision]) for g in GRAPHS}, threads)


def build_int8(
    work_dir, meta: dict, opts: Int8Options, log=print, failed_report_prefix=None
) -> dict:
    """Quantize the FP32 graphs in work_dir; → the manifest entries for the INT8 engine."""
    work_dir = Path(work_dir)
    classes, prep = meta["classes"], Preprocessing.from_dict(meta["preprocessing"])
    progress = sys.stderr.isatty()
    calib_recs, gate_recs = _select(opts, classes)
    log(
        f"INT8: calibrating on {len(calib_recs)} clips, gating on {len(gate_recs)} held-out clips "
        f"({opts.settings.method})"
    )

    @lru_cache(maxsize=1)
    def calib_clips():
        return decode_clips(calib_recs, prep, "calibration clips", progress=progress)

    gate = decode_clips(gate_recs, prep, "held-out clips", progress=progress)
    require(
        len(gate),
        MIN_GATE_CLIPS,
        "the held-out set (after skipping undecodable clips)",
        "Pass --holdout LIST with more clips.",
    )
    cache = CalibrationCache(Path(opts.cache) if opts.cache else None, log)
    data_key = data_identity(opts.calib, opts.root, len(calib_recs), opts.seed)
    fp32 = _pipeline(work_dir, "fp32", opts.threads)
    quantize = lambda settings: quantize_engine_graphs(
        work_dir, settings, cache, data_key, calib_clips, opts.threads
    )
    result, settings, excluded, node_rank = _gate_rounds(
        work_dir, opts, gate, classes, fp32, quantize, log
    )
    cache.save(work_dir / CACHE_NAME)
    speed = (
        _speed(fp32, _pipeline(work_dir, "int8", opts.threads), gate.clips[0], log)
        if opts.measure_speed
        else None
    )
    report = {
        "settings": settings_dict(settings),
        "calibration_clips": len(calib_recs),
        "gate": result,
        "max_drop_points": opts.max_drop,
        "min_agreement": opts.min_agreement,
        "passed": _passes(result, opts),
        "kept_in_float_to_pass": excluded,
        "node_errors": node_rank,
        "speed_onnxruntime_cpu": speed,
    }
    write_report(report, work_dir)
    if not report["passed"]:
        _fail(report, work_dir, opts, failed_report_prefix, log)
    return _manifest_entries(work_dir, report, settings, speed)


def _gate_rounds(work_dir, opts: Int8Options, gate, classes, fp32: Pipeline, quantize, log):
    """Quantize and gate; on a failure put the 2 most sensitive nodes back in float, up to
    `auto_exclude` times. → (gate result, settings used, nodes kept in float, node ranking)."""
    logits32 = fp32.logits(gate.clips)
    settings, excluded, node_rank = opts.settings, [], None
    for round_ in range(opts.auto_exclude + 1):
        quantize(settings)
        int8 = _pipeline(work_dir, "int8", opts.threads)
        result = compare_predictions(
            logits32, int8.logits(gate.clips), gate.labels, classes, gate.paths
        )
        if node_rank is None:
            node_rank = _rank_nodes(work_dir, gate.clips[:4], opts.threads)
        passed = _passes(result, opts)
        log(
            f"INT8 gate: agreement {100 * result['top1_agreement']:.1f} %, "
            f"top-1 FP32 {100 * result['top1_fp32']:.1f} % → INT8 {100 * result['top1_int8']:.1f} % "
            f"(drop {result['top1_drop_points']:+.2f} pt, max {opts.max_drop}){'' if passed else '  FAILED'}"
        )
        if passed or round_ == opts.auto_exclude:
            break
        more = [n["node"] for n in node_rank if n["node"] not in excluded][:2]
        excluded += more
        settings = QuantSettings(
            **{**settings_dict(settings), "op_types": settings.op_types, "exclude": list(excluded)}
        )
        log(f"INT8: keeping {more} in float and quantizing again")
    return result, settings, excluded, node_rank


def _manifest_entries(work_dir: Path, report: dict, settings: QuantSettings, speed) -> dict:
    result = report["gate"]
    return {
        "graphs": {g: _paths(work_dir, g)["int8"].name for g in GRAPHS},
        "int8": {
            "fp32_graphs": {g: _paths(work_dir, g)["fp32"].name for g in GRAPHS},
            "report": REPORT_JSON,
            "plot": REPORT_PNG,
            "cache": CACHE_NAME,
            "passed": report["passed"],
            "top1_agreement": result["top1_agreement"],
            "top1_drop_points": result["top1_drop_points"],
            "kept_in_float": report["kept_in_float_to_pass"],
            "method": settings.method,
            "speedup_onnxruntime_cpu": {g: v["speedup"] for g, v in speed.items()}
            if speed
            else None,
        },
    }


def _speed(fp32: Pipeline, int8: Pipeline, clip, log) -> dict:
    speed = measure_speed(fp32, int8, clip)
    fe, head = speed["frame_encoder"], speed["clip_head"]
    log(
        f"INT8 speed here (ONNX Runtime, CPU): frame encoder {fe['fp32_ms']:.1f} → {fe['int8_ms']:.1f} ms "
        f"({fe['speedup']:.2f}×), clip head {head['fp32_ms']:.1f} → {head['int8_ms']:.1f} ms ({head['speedup']:.2f}×)"
    )
    if fe["speedup"] < 1 and head["speedup"] < 1:
        log(
            "note: INT8 is slower than FP32 on this CPU (its integer kernels do not pay at this model's sizes); "
            "for ONNX Runtime here, --precision fp32 is faster"
        )
    return speed


def _select(opts: Int8Options, classes):
    records = read_records(opts.calib, classes, opts.root)
    if opts.holdout:
        calib = pick_records(records, opts.calib_size, opts.seed)
        gate = pick_records(
            read_records(opts.holdout, classes, opts.root), opts.gate_size, opts.seed
        )
    else:
        calib, gate = split_records(records, opts.calib_size, opts.seed)
        gate = gate[: opts.gate_size or len(gate)]
    require(
        len(calib),
        MIN_CALIB_CLIPS,
        f"the calibration list {opts.calib}",
        "Give --calib a LIST with more clips (the training LIST works well).",
    )
    require(
        len(gate),
        MIN_GATE_CLIPS,
        "the held-out set"
        + (
            ""
            if opts.holdout
            else f" (what --calib {opts.calib} has left after {len(calib)} calibration clips)"
        ),
        "Pass --holdout LIST (the validation LIST), or a smaller --calib-size.",
    )
    return calib, gate


def stage_feeds(graph: str, upstream: dict, clips, threads):
    """The feeds of `graph`, clip by clip, as the graphs before it (`upstream`: name → ONNX file)
    produce them: each graph is calibrated on the error the quantized ones before it make."""
    with ARTEngine.from_graphs(upstream, threads) as engine:
        for clip in clips:
            if graph == "frame_encoder":
                yield {"images": clip}
                continue
            patches, tokens = engine.encode_frames(np.ascontiguousarray(clip))
            if graph == "clip_topk":
                yield {"frame_tokens": tokens[None]}
                continue
            top = engine.head_topk(tokens[None])
            s_topk = np.ascontiguousarray(np.repeat(top["s_topk"], len(tokens), axis=0))
            if graph == "frame_head":
                yield {"patches": patches, "s_topk": s_topk}
                continue
            responses = engine.head_frames(patches, s_topk)["responses"][None]
            yield {"x_cls": top["x_cls"], "responses": responses, "s_topk": top["s_topk"]}


def quantize_engine_graphs(work_dir, settings, cache, data_key, calib_clips, threads):
    """Each graph in turn, on what the graphs quantized before it produce; the cache key of each
    holds the hashes of those graphs."""
    key = dict(data_key)
    for i, graph in enumerate(GRAPHS):
        paths = _paths(work_dir, graph)
        upstream = {g: str(_paths(work_dir, g)["int8"]) for g in GRAPHS[:i]}
        quantize_graph(
            paths["fp32"],
            paths["int8"],
            lambda graph=graph, upstream=upstream: stage_feeds(
                graph, upstream, calib_clips().clips, threads
            ),
            settings,
            cache,
            graph,
            dict(key),
        )
        key[f"{graph}_int8_sha256"] = sha256_file(paths["int8"])


def _rank_nodes(work_dir, clips, threads) -> list[dict]:
    """Every quantized node's added error, each graph fed by the FP32 graphs before it."""
    rows = []
    for i, graph in enumerate(GRAPHS):
        paths = _paths(work_dir, graph)
        feeds = list(
            stage_feeds(
                graph, {g: str(_paths(work_dir, g)["fp32"]) for g in GRAPHS[:i]}, clips, threads
            )
        )
        rows += node_errors(
            paths["fp32"], paths["int8"], quantized_nodes(paths["int8"]), feeds, graph, threads
        )
    return sorted(rows, key=lambda r: -r["added_rel_error"])


def _passes(result: dict, opts: Int8Options) -> bool:
    ok = result["top1_drop_points"] <= opts.max_drop
    return ok and (opts.min_agreement is None or result["top1_agreement"] >= opts.min_agreement)


def _fail(report, work_dir: Path, opts: Int8Options, failed_report_prefix, log):
    """The build stops, and the engine dir is not written, but the report is kept beside it."""
    g = report["gate"]
    where = ""
    if failed_report_prefix is not None and not opts.keep_failed:
        for name in (REPORT_JSON, REPORT_PNG):
            shutil.copy(work_dir / name, f"{failed_report_prefix}.{name}")
        where = f"; report: {failed_report_prefix}.{REPORT_JSON}"
    worst = ", ".join(n["node"] for n in report["node_errors"][:3])
    message = (
        f"INT8 gate failed: top-1 drop {g['top1_drop_points']:.2f} points (max {opts.max_drop}), agreement "
        f"{100 * g['top1_agreement']:.1f} % on {g['n']} held-out clips; most sensitive nodes: {worst}{where}"
    )
    if opts.keep_failed:
        log(f"warning: {message}; kept because --keep-failed-int8 was given")
        return
    raise UserError(
        message
        + ". Try --auto-exclude 3, --calib-method entropy or percentile, more --calib-size, "
        "or --precision fp32; --keep-failed-int8 keeps it anyway"
    )
