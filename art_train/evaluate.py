"""art-eval: score a checkpoint (needs torch) or an engine dir (no torch) on a LIST of clips.

art-eval --ckpt RUN_DIR --val LIST --classes FILE [--root DIR] [--json]
art-eval --engine ENGINE_DIR --val LIST --classes FILE [--threads N] [--json]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from art_edge.errors import ArgumentParser, UserError, cli_entry, non_negative_int, positive_int


def classification_metrics(preds, labels, num_classes: int) -> dict:
    """top1, mean per-class accuracy (over classes present in `labels`), confusion matrix, n."""
    preds, labels = np.asarray(preds, np.int64), np.asarray(labels, np.int64)
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels, preds), 1)
    support = cm.sum(1)
    present = support > 0
    per_class = np.diag(cm)[present] / support[present]
    return {
        "top1": float((preds == labels).mean()) if len(labels) else 0.0,
        "mean_class_acc": float(per_class.mean()) if present.any() else 0.0,
        "n": int(len(labels)),
        "confusion": cm,
    }


def predict_probs(model, loader, device="cpu", progress: bool = False, fp16: bool = False,
                  clock: dict | None = None):  # fmt: skip
    """→ (class probabilities [N, C], true labels) over a DataLoader of (clips, labels).
    `fp16`: under float16 autocast where `device` is a GPU (how a model runs on one). `clock`:
    gets "clips" and "seconds" from the end of the first batch on (the first builds and times the
    fused ops, and warms the GPU: it would say little of the speed)."""
    import torch
    from tqdm import tqdm

    device = torch.device(device)
    model.eval()
    probs, labels = [], []
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=fp16 and device.type == "cuda")
    with torch.no_grad(), autocast:
        for clips, y in tqdm(loader, desc="eval", disable=not progress, leave=False):
            probs.append(model(clips.to(device))["logits"].float().softmax(-1).cpu())
            labels.append(y)
            if clock is not None:
                clock.setdefault("start", time.perf_counter())  # after the first batch
                clock["clips"] = clock.get("clips", -len(y)) + len(y)
    if clock is not None:
        clock["seconds"] = time.perf_counter() - clock["start"]
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def eval_device(device: str = "auto"):
    """auto: the first CUDA GPU where there is one, else the CPU; or as named (cpu, cuda, cuda:N)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        named = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from None
    count = torch.cuda.device_count() if named.type == "cuda" else 0
    if named.type == "cuda" and (named.index or 0) >= count:
        raise UserError(
            f"--device {device}: no such CUDA GPU here ({count} visible); use --device auto or cpu"
        )
    return named


def predict(model, loader, device="cpu", progress: bool = False):
    """→ (predicted class ids, true labels) over a DataLoader of (clips, labels)."""
    probs, labels = predict_probs(model, loader, device, progress)
    return probs.argmax(-1), labels


def make_loader(records, prep, batch_size: int, workers: int = 0, view: tuple = (0, 1)):
    from torch.utils.data import DataLoader

    from art_train.data import ClipDataset

    return DataLoader(
        ClipDataset(records, prep, train=False, view=view),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
    )


def check_classes(classes: list[str], trained: list[str], source: str):
    if classes != trained:
        raise UserError(
            f"the classes file does not match {source} ({len(classes)} classes given, "
            f"{len(trained)} trained; first difference: "
            f"{next((a, b) for a, b in zip(classes + [None] * 99, trained + [None] * 99) if a != b)}); "
            "pass the classes file the model was trained with"
        )


def evaluate_checkpoint(
    run_dir,
    val_list,
    classes_file,
    root=None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = False,
    views: int = 1,
    device: str = "auto",
    fp16: bool = True,
) -> dict:
    """Top-1 and mean class accuracy of a run dir; `views` temporal clips per video (each the
    i-th of `views` frames spread over every segment, centre crop), probabilities averaged. On a
    GPU in float16 autocast unless `fp16` is off; `clips_per_s`: clips scored per second (the
    loading and decoding of the clips included)."""
    from art_edge.cliplist import probe_records, read_classes, read_list
    from art_edge.preprocess import Preprocessing
    from art_train.checkpoint import load_checkpoint

    device = eval_device(device)
    model, meta = load_checkpoint(run_dir, device)
    classes = read_classes(classes_file)
    check_classes(classes, meta["classes"], f"the checkpoint in {run_dir}")
    records = probe_records(read_list(val_list, classes, root), what="val clips")
    prep = Preprocessing.from_dict(meta["preprocessing"])
    probs, labels, clocks = 0.0, None, []
    for i in range(views):
        loader = make_loader(records, prep, batch_size, workers, (i, views))
        clocks.append({})
        p, labels = predict_probs(model, loader, device, progress, fp16, clocks[-1])
        probs = probs + p / views
    metrics = classification_metrics(probs.argmax(-1), labels, len(classes))
    fp16_used = fp16 and device.type == "cuda"
    return metrics | {"clips_per_s": clips_per_second(clocks), "device": str(device),
                      "precision": "fp16 autocast" if fp16_used else "fp32"}  # fmt: skip


def clips_per_second(clocks: list[dict]) -> float | None:
    """Clips scored per second after each pass's first batch; None with one batch a pass."""
    clips, seconds = sum(c["clips"] for c in clocks), sum(c["seconds"] for c in clocks)
    return clips / seconds if clips > 0 and seconds > 0 else None


def evaluate_engine(
    engine_dir,
    val_list,
    classes_file,
    root=None,
    batch_size: int = 8,
    threads: int | None = None,
    progress: bool = False,
    views: int = 1,
) -> dict:
    """Score an engine dir through the same runners art-edge uses (no torch in the loop); `views`
    as evaluate_checkpoint."""
    from tqdm import tqdm

    from art_edge.cliplist import probe_records, read_classes, read_list
    from art_edge.preprocess import load_clip
    from art_edge.runtime.engine import ARTEngine, softmax

    engine = ARTEngine.load(engine_dir, threads=threads)
    classes = read_classes(classes_file)
    check_classes(classes, engine.classes, f"the engine in {engine_dir}")
    records = probe_records(read_list(val_list, classes, root), what="val clips")
    preds = []
    with engine:
        for i in tqdm(
            range(0, len(records), batch_size), desc="eval", disable=not progress, leave=False
        ):
            probs = 0.0
            for v in range(views):
                clips = np.stack(
                    [
                        load_clip(
                            r.path,
                            engine.preprocessing,
                            start_frame=r.start_frame,
                            end_frame=r.end_frame,
                            view=(v, views),
                        )
                        for r in records[i : i + batch_size]
                    ]
                )
                logits = engine.classify_clips(clips)["logits"].astype(np.float64)
                probs = probs + np.stack([softmax(row) for row in logits]) / views
            preds.extend(probs.argmax(-1).tolist())
    return classification_metrics(preds, [r.label for r in records], len(classes))


def build_parser():
    ap = ArgumentParser(
        prog="art-eval", description="Score an ART checkpoint (or engine dir) on a LIST of clips."
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="run dir written by art-train")
    src.add_argument("--engine", help="engine dir written by art-build-engine")
    ap.add_argument("--val", required=True, help="LIST CSV (path,label[,start_frame,end_frame])")
    ap.add_argument("--classes", required=True, help="classes file, one name a line")
    ap.add_argument(
        "--root", help="folder that relative LIST paths are taken from (default: the LIST's folder)"
    )
    ap.add_argument("--batch-size", type=positive_int, default=8)
    ap.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader worker processes (--ckpt)"
    )
    ap.add_argument(
        "--threads", type=positive_int, help="inference threads (default: the runtime's)"
    )
    ap.add_argument(
        "--views",
        type=positive_int,
        default=1,
        help="temporal clips per video, probabilities averaged (video models report 1, 2 or 4)",
    )
    ap.add_argument(
        "--device", default="auto", help="--ckpt: auto (a CUDA GPU where there is one), cpu, cuda:N"
    )
    ap.add_argument(
        "--fp32",
        action="store_true",
        help="--ckpt on a GPU: run in float32 (default: float16 autocast, how GPUs run a model)",
    )
    ap.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: top1, mean_class_acc, n, confusion",
    )
    return ap


def print_metrics(m: dict, classes: list[str]):
    speed = (
        f"   {m['clips_per_s']:.1f} clips/s ({m['device']}, {m['precision']})"
        if "device" in m
        else ""
    )
    print(f"top-1 {m['top1']:.4f}   mean class acc {m['mean_class_acc']:.4f}   n = {m['n']}{speed}")
    width = max(len(c) for c in classes)
    for i, c in enumerate(classes):
        row = m["confusion"][i]
        print(f"  {c:<{width}}  {row[i]}/{row.sum()}  " + " ".join(f"{v:3d}" for v in row))


@cli_entry
def main(argv=None):
    from art_edge.cliplist import read_classes

    a = build_parser().parse_args(argv)
    progress = sys.stderr.isatty()
    if a.engine:
        m = evaluate_engine(
            a.engine, a.val, a.classes, a.root, a.batch_size, a.threads, progress, a.views
        )
    else:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        m = evaluate_checkpoint(
            a.ckpt,
            a.val,
            a.classes,
            a.root,
            a.batch_size,
            a.workers,
            progress,
            a.views,
            device=a.device,
            fp16=not a.fp32,
        )
    if a.json:
        print(json.dumps({**m, "confusion": m["confusion"].tolist()}))
    else:
        print_metrics(m, read_classes(a.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
