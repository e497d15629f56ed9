"""art-train: train ART (or the Baseline) on LIST files of video clips.

    art-train --config art-tiny --train train.csv --val val.csv --classes classes.txt --out runs/tiny

Runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel: gloo on CPU, NCCL
on GPU). The run dir gets the best-by-val checkpoint (model.safetensors + model.json),
metrics.jsonl, curves.png, confusion.png, and last.pt for --resume.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from art_edge.errors import UserError, cli_entry
from art_edge.files import atomic_write_text
from art_train.checkpoint import load_resume_state, read_meta, save_checkpoint, save_resume_state
from art_train.configs import ARTConfig, TrainConfig, resolve_config  # noqa: F401 (re-exported)
from art_train.evaluate import check_classes, classification_metrics, make_loader, predict
from art_train.losses import art_loss
from art_train.model import build_model, preprocessing_for

# ----------------------------------------------------------------------------- pieces of the loop


def lr_factor(step: int, steps_per_epoch: int, tcfg: TrainConfig) -> float:
    epoch = step / max(1, steps_per_epoch)
    if epoch < tcfg.warmup_epochs:
        return (step + 1) / max(1.0, tcfg.warmup_epochs * steps_per_epoch)
    if tcfg.schedule == "step":
        return tcfg.lr_gamma ** int(epoch // tcfg.lr_step)
    progress = (epoch - tcfg.warmup_epochs) / max(1e-9, tcfg.epochs - tcfg.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model, tcfg: TrainConfig):
    decay = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and p.ndim >= 2 and "agent" not in n
    ]
    other = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and not (p.ndim >= 2 and "agent" not in n)
    ]
    groups = [
        {"params": decay, "weight_decay": tcfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    if tcfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tcfg.lr, momentum=tcfg.momentum)
    if tcfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tcfg.lr)
    raise UserError(f"unknown optimizer {tcfg.optimizer!r}; use 'adamw' or 'sgd'")


class Distributed:
    """Rank, world size and device, from torchrun's environment (a single process without it)."""

    def __init__(self, device: str | None):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and device != "cpu"
        self.device = (
            torch.device(f"cuda:{local}" if cuda else "cpu")
            if device in (None, "auto", "cpu", "cuda")
            else torch.device(device)
        )
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def close(self):
        if self.world > 1:
            torch.distributed.destroy_process_group()


def train_one_epoch(model, raw, loader, optimizer, scheduler, dist, tcfg, epoch, progress) -> dict:
    from tqdm import tqdm

    model.train()
    sums, correct, seen = {}, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tcfg.epochs}", disable=not progress, leave=False)
    for clips, labels in bar:
        clips, labels = clips.to(dist.device, non_blocking=True), labels.to(dist.device)
        with torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=tcfg.amp and dist.device.type == "cuda"
        ):
            out = model(clips)
            loss, terms = art_loss(out, labels, raw, raw.cfg)
        if not torch.isfinite(loss):
            raise UserError(
                f"loss became {float(loss)} at epoch {epoch + 1}: lower the learning rate (--lr)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        optimizer.step()
        scheduler.step()
        if hasattr(raw, "semantics"):
            raw.semantics.ema_update()  # the bank follows its agent copy
        n = len(labels)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v * n
        correct += int((out["logits"].argmax(-1) == labels).sum())
        seen += n
        bar.set_postfix(loss=f"{terms['loss']:.3f}")
    return {**{k: v / seen for k, v in sums.items()}, "train_top1": correct / seen}


# ----------------------------------------------------------------------------- the loop


def restart_seeds(tcfg: TrainConfig) -> list[int]:
    """Seeds of the restarts: far apart, so runs with neighbouring --seed share no candidate."""
    return [tcfg.seed + 1000 * i for i in range(max(1, tcfg.restarts))]


def train_with_restarts(
    model_cfg: ARTConfig,
    tcfg: TrainConfig,
    train_list,
    val_list,
    classes_file,
    out,
    root=None,
    clip_weights=None,
    resume=False,
    device=None,
    progress=None,
    log=print,
) -> dict:
    """`train`, after choosing the initialisation: each of `restarts` seeds trains `probe_epochs`
    epochs of the full schedule in out/probes/; the one with the best val top-1 (lowest loss on
    a tie) continues to the end, exactly as a run resumed from its last epoch."""
    if tcfg.restarts <= 1 or resume:
        return train(
            model_cfg,
            tcfg,
            train_list,
            val_list,
            classes_file,
            out,
            root,
            clip_weights,
            resume,
            device,
            progress,
            log,
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("restarts run in one process: pass --set restarts=1 under torchrun")
    out = Path(out)
    probes, scores = out / "probes", []
    for seed in restart_seeds(tcfg):
        cand = probes / f"seed{seed}"
        shutil.rmtree(cand, ignore_errors=True)
        log(f"restart seed {seed}: {tcfg.probe_epochs} probe epochs")
        train(
            model_cfg,
            replace(tcfg, seed=seed),
            train_list,
            val_list,
            classes_file,
            cand,
            root,
            clip_weights,
            device=device,
            progress=progress,
            log=log,
            stop_after=tcfg.probe_epochs,
        )
        last = json.loads((cand / "metrics.jsonl").read_text().splitlines()[-1])
        scores.append({"seed": seed, "val_top1": last["val_top1"], "loss": last["loss"]})
    winner = max(scores, key=lambda r: (r["val_top1"], -r["loss"]))
    log(
        f"restarts: seed {winner['seed']} continues (val top-1 after {tcfg.probe_epochs} epochs: "
        + ", ".join(f"seed {r['seed']} {r['val_top1']:.3f}" for r in scores)
        + ")"
    )
    out.mkdir(parents=True, exist_ok=True)
    for f in (probes / f"seed{winner['seed']}").iterdir():
        shutil.copy2(f, out / f.name)
    (out / "restarts.json").write_text(
        json.dumps(
            {"probe_epochs": tcfg.probe_epochs, "candidates": scores, "chosen": winner["seed"]},
            indent=2,
        )
    )
    best = train(
        model_cfg,
        replace(tcfg, seed=winner["seed"]),
        train_list,
        val_list,
        classes_file,
        out,
        root,
        clip_weights,
        resume=True,
        device=device,
        progress=progress,
        log=log,
    )
    shutil.rmtree(probes, ignore_errors=True)
    return best


def train(
    model_cfg: ARTConfig,
    tcfg: TrainConfig,
    train_list,
    val_list,
    classes_file,
    out,
    root=None,
    clip_weights=None,
    resume=False,
    device=None,
    progress=None,
    log=print,
    stop_after=None,
) -> dict:
    """Train and write the run dir. Returns the best validation metrics. `stop_after` stops after
    that many epochs of the full schedule (a probe that may be resumed)."""
    from torch.utils.data import DataLoader, DistributedSampler

    from art_edge.cliplist import probe_records, read_classes, read_list
    from art_train.data import ClipDataset
    from art_train.plots import plot_confusion, plot_curves

    dist = Distributed(device)
    progress = (sys.stderr.isatty() if progress is None else progress) and dist.main
    out = Path(out)
    classes = read_classes(classes_file)
    model_cfg = replace(model_cfg, num_classes=len(classes))
    train_records = probe_records(
        read_list(train_list, classes, root), tcfg.max_bad_fraction, "training clips"
    )
    val_records = probe_records(
        read_list(val_list, classes, root), tcfg.max_bad_fraction, "val clips"
    )
    if resume:
        check_classes(classes, read_meta(out)["classes"], f"the run in {out}")

    torch.manual_seed(tcfg.seed)
    raw = build_model(model_cfg, class_names=classes, clip_weights=clip_weights).to(dist.device)
    prep = preprocessing_for(raw)
    train_ds = ClipDataset(train_records, prep, train=True, seed=tcfg.seed, flip=tcfg.flip)
    if (
        not resume and model_cfg.query_init == "tokens" and hasattr(raw, "init_queries_from_tokens")
    ):  # not the Baseline
        # Before DDP wraps the model; every rank sees the same clips, so the same init.
        clips = np.stack([train_ds[i][0] for i in range(min(16, len(train_ds)))])
        raw.init_queries_from_tokens(torch.from_numpy(clips).to(dist.device))
    model = torch.nn.parallel.DistributedDataParallel(raw) if dist.world > 1 else raw
    sampler = DistributedSampler(
        train_ds, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=tcfg.seed
    )
    loader = DataLoader(
        train_ds,
        batch_size=tcfg.batch_size,
        sampler=sampler,
        num_workers=tcfg.workers,
        drop_last=len(train_ds) // dist.world > tcfg.batch_size,
    )
    optimizer = make_optimizer(raw, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, len(loader), tcfg)
    )

    start_epoch, best, history = 0, {"val_top1": -1.0}, []
    if resume:
        state = load_resume_state(out)
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, history = (
            state["epoch"] + 1,
            json.loads(state["best"]),
            json.loads(state["history"]),
        )
        log(f"resuming {out} at epoch {start_epoch + 1}")
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        log(
            f"training {model_cfg.name} ({model_cfg.variant}) on {len(train_records)} clips, "
            f"{len(classes)} classes, {tcfg.epochs} epochs, {dist.world} process(es) on {dist.device}"
        )
    val_loader = make_loader(val_records, prep, tcfg.batch_size, tcfg.workers)

    end_epoch = min(tcfg.epochs, stop_after) if stop_after else tcfg.epochs
    for epoch in range(start_epoch, end_epoch):
        t0 = time.time()
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        torch.manual_seed(tcfg.seed * 100003 + epoch)  # dropout: the same stream on resume
        row = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * len(loader),
            "lr": scheduler.get_last_lr()[0],
        }
        row.update(
            train_one_epoch(model, raw, loader, optimizer, scheduler, dist, tcfg, epoch, progress)
        )
        if dist.main:
            preds, labels = predict(raw, val_loader, dist.device)
            m = classification_metrics(preds, labels, len(classes))
            row.update(
                val_top1=m["top1"], val_mean_class_acc=m["mean_class_acc"], seconds=time.time() - t0
            )
            history.append(row)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if m["top1"] > best["val_top1"]:
                best = {
                    "val_top1": m["top1"],
                    "val_mean_class_acc": m["mean_class_acc"],
                    "epoch": epoch + 1,
                }
                save_checkpoint(out, raw, classes, prep, {"train": asdict(tcfg), "best": best})
                plot_confusion(
                    m["confusion"],
                    classes,
                    out / "confusion.png",
                    f"val confusion, epoch {epoch + 1} (top-1 {m['top1']:.3f})",
                )
            save_resume_state(
                out,
                {
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "best": json.dumps(best),
                    "history": json.dumps(history),
                },
            )
            plot_curves(history, out / "curves.png")
            log(
                f"epoch {epoch + 1}/{tcfg.epochs}  loss {row['loss']:.4f}  train top-1 {row['train_top1']:.3f}  "
                f"val top-1 {m['top1']:.3f}  ({row['seconds']:.1f} s)"
            )
        dist.barrier()
    dist.close()
    if dist.main:
        atomic_write_text(out / "summary.json", json.dumps(best, indent=2))
    return best


@cli_entry
def main(argv=None):
    ap = argparse.ArgumentParser(description="Train ART on LIST files of video clips.")
    ap.add_argument(
        "--config",
        default="art-tiny",
        help="registered config name (art-tiny, art-edge-s, art-b16) "
        "or a JSON file {base, model, train}",
    )
    ap.add_argument("--train", required=True, help="training LIST CSV")
    ap.add_argument("--val", required=True, help="validation LIST CSV")
    ap.add_argument("--classes", required=True, help="classes file, one name a line")
    ap.add_argument("--root", help="folder for relative LIST paths (default: each LIST's folder)")
    ap.add_argument("--out", required=True, help="run dir to write")
    ap.add_argument(
        "--clip-weights", help="local open_clip/OpenAI checkpoint for the backbone and text encoder"
    )
    ap.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--workers", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument(
        "--variant", choices=["art", "baseline"], help="train the paper's Baseline instead of ART"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any model or training config field, e.g. --set dim=64 --set schedule=step",
    )
    a = ap.parse_args(argv)
    sets = list(a.set) + [
        f"{k}={v}"
        for k, v in (
            ("epochs", a.epochs),
            ("batch_size", a.batch_size),
            ("lr", a.lr),
            ("workers", a.workers),
            ("seed", a.seed),
            ("variant", a.variant),
        )
        if v is not None
    ]
    model_cfg, tcfg = resolve_config(a.config, sets)
    out = Path(a.out)
    if not a.resume and (out / "model.json").exists():
        raise UserError(
            f"{out} already holds a run: pass --resume to continue it or choose another --out"
        )
    best = train_with_restarts(
        model_cfg, tcfg, a.train, a.val, a.classes, out, a.root, a.clip_weights, a.resume, a.device
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best val top-1 {best['val_top1']:.4f} at epoch {best.get('epoch')}; checkpoint in {out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
