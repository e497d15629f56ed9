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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from art_edge.errors import (
    ArgumentParser,
    UserError,
    cli_entry,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from art_edge.files import atomic_write_text, check_writable
from art_train.checkpoint import load_resume_state, read_meta, save_checkpoint, save_resume_state
from art_train.clip import resolve_clip_weights
from art_train.configs import (  # noqa: F401 (re-exported)
    ARTConfig,
    TrainConfig,
    backbone_named,
    resolve_config,
    resume_config,
)
from art_train.evaluate import check_classes, classification_metrics, make_loader, predict_probs
from art_train.losses import loss_parts, part_grad_norms, shared_parameters, total_loss
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


# Embedding-like parameters that weight decay would pull towards zero for no reason: the learned
# queries, position embeddings, class/clip tokens, and the semantics bank's agent copy.
NO_DECAY = (
    "queries",
    "patch_pos",
    "pos_embed",
    "cls_token",
    "positional_embedding",
    "class_embedding",
    "agent",
)


def param_groups(model, tcfg: TrainConfig) -> list[dict]:
    """The pretrained vision tower at `tower_lr_scale` × the learning rate of the new modules (as
    CLIP video fine-tuning does); weight decay on weight matrices only (not on biases, norms, or
    the NO_DECAY embeddings and tokens)."""
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            tower = name.startswith("frame_encoder.visual.")
            decay = p.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY
            groups.setdefault((tower, decay), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": tcfg.weight_decay if decay else 0.0,
            "lr": tcfg.lr * (tcfg.tower_lr_scale if tower else 1.0),
        }
        for (tower, decay), params in groups.items()
    ]


def make_optimizer(model, tcfg: TrainConfig):
    groups = param_groups(model, tcfg)
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


def train_step(model, raw, clips, labels, tcfg, dist, measure: bool, epoch: int = 0):
    """Forward, loss, backward; returns (outputs, unweighted terms as floats, the pre-clip gradient
    norm, each loss part's gradient norm into the shared parameters when `measure`)."""
    with torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=tcfg.amp and dist.device.type == "cuda"
    ):
        out = model(clips)
        parts, terms = loss_parts(out, labels, raw, raw.cfg)
        loss, terms = total_loss(parts, terms)
    if not torch.isfinite(loss):
        raise UserError(
            f"loss became {float(loss)} at epoch {epoch + 1}: lower the learning rate (--lr)"
        )
    part_norms = (
        part_grad_norms(parts, shared_parameters(raw)) if measure and len(parts) > 1 else {}
    )
    loss.backward()
    # The norm before clipping is logged: clipping is a safety net, and a run that clips most
    # steps is not running at the learning rate it was given.
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip or float("inf")))
    return out, terms, norm, part_norms


def epoch_row(sums: dict, seen: int, correct: int, norms: list, part_norms: list, tcfg) -> dict:
    """The epoch's means: loss terms, train top-1, gradient norms (and each part's, where measured)."""
    clipped = sum(n > tcfg.grad_clip for n in norms) / len(norms) if tcfg.grad_clip else 0.0
    row = {
        **{k: v / seen for k, v in sums.items()},
        "train_top1": correct / seen,
        "grad_norm_mean": sum(norms) / len(norms),
        "grad_norm_max": max(norms),
        "clipped_fraction": clipped,
    }
    for name in part_norms[0] if part_norms else ():
        row[f"grad_{name}"] = sum(p[name] for p in part_norms) / len(part_norms)
    return row


def train_one_epoch(model, raw, loader, optimizer, scheduler, dist, tcfg, epoch, progress) -> dict:
    from tqdm import tqdm

    model.train()
    sums, correct, seen, norms, part_norms = {}, 0, 0, [], []
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tcfg.epochs}", disable=not progress, leave=False)
    for step, (clips, labels) in enumerate(bar):
        clips, labels = clips.to(dist.device, non_blocking=True), labels.to(dist.device)
        # each loss part's gradient into the tower: a backward pass per part, so only now and then
        measure = tcfg.part_grad_every > 0 and step % tcfg.part_grad_every == 0
        optimizer.zero_grad(set_to_none=True)
        out, terms, norm, parts = train_step(model, raw, clips, labels, tcfg, dist, measure, epoch)
        norms.append(norm)
        if parts:
            part_norms.append(parts)
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
    return epoch_row(sums, seen, correct, norms, part_norms, tcfg)


# ----------------------------------------------------------------------------- the loop


@dataclass
class RunSpec:
    """What a training run reads and where it writes (everything but the two configs)."""

    train_list: str  # training LIST CSV
    val_list: str  # validation LIST CSV
    classes_file: str  # one class name a line
    out: Path  # the run dir
    root: str | None = None  # folder for relative LIST paths (default: each LIST's folder)
    clip_weights: str | None = None  # local open_clip/OpenAI checkpoint for the towers
    device: str | None = None  # auto, cpu, cuda, cuda:N
    # without val_list: this share of each class of the training list validates
    val_fraction: float = 0.0
    progress: bool | None = None  # progress bars (default: when stderr is a terminal)
    log: Callable = print
    backbone_given: bool = False  # the user named the backbone (settles an unsaid activation)

    def __post_init__(self):
        self.out = Path(self.out)


def carve_validation(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) records: `fraction` of each class, at least one clip, chosen by
    `seed` (the same split on resume); a class with a single clip stays in training."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for r in records:
        by_class.setdefault(r.label, []).append(r)
    train, val = [], []
    for label in sorted(by_class):
        clips = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        n = min(len(clips) - 1, max(1, round(fraction * len(clips))))
        val += clips[:n]
        train += clips[n:]
    if not val:
        raise UserError(
            "--val-fraction left no clip to validate on: the training list needs 2 clips of a class"
        )
    return train, val


def restart_seeds(tcfg: TrainConfig) -> list[int]:
    """Seeds of the restarts: far apart, so runs with neighbouring --seed share no candidate."""
    return [tcfg.seed + 1000 * i for i in range(max(1, tcfg.restarts))]


def train_with_restarts(
    model_cfg: ARTConfig, tcfg: TrainConfig, spec: RunSpec, resume=False
) -> dict:
    """`train`, after choosing the initialisation: each of `restarts` seeds trains `probe_epochs`
    epochs of the full schedule in out/probes/; the one with the best val top-1 (lowest loss on
    a tie) continues to the end, exactly as a run resumed from its last epoch."""
    if tcfg.restarts <= 1 or resume:
        return train(model_cfg, tcfg, spec, resume)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("restarts run in one process: pass --set restarts=1 under torchrun")
    out, log = spec.out, spec.log
    probes, scores = out / "probes", []
    for seed in restart_seeds(tcfg):
        cand = probes / f"seed{seed}"
        shutil.rmtree(cand, ignore_errors=True)
        log(f"restart seed {seed}: {tcfg.probe_epochs} probe epochs")
        train(
            model_cfg,
            replace(tcfg, seed=seed),
            replace(spec, out=cand),
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
    chosen = {"probe_epochs": tcfg.probe_epochs, "candidates": scores, "chosen": winner["seed"]}
    atomic_write_text(out / "restarts.json", json.dumps(chosen, indent=2))
    best = train(model_cfg, replace(tcfg, seed=winner["seed"]), spec, resume=True)
    shutil.rmtree(probes, ignore_errors=True)
    return best


class Trainer:
    """The pieces of one run: data, model, optimizer, and what the run dir holds so far."""

    def __init__(self, model_cfg: ARTConfig, tcfg: TrainConfig, spec: RunSpec, resume: bool):
        from torch.utils.data import DataLoader, DistributedSampler

        from art_edge.cliplist import read_classes, read_mirror_pairs
        from art_train.data import ClipDataset

        self.tcfg, self.spec, self.dist = tcfg, spec, Distributed(spec.device)
        self.progress = (
            sys.stderr.isatty() if spec.progress is None else spec.progress
        ) and self.dist.main
        self.classes = read_classes(spec.classes_file)
        self.model_cfg = replace(model_cfg, num_classes=len(self.classes))
        train_records, val_records = self._records(spec, tcfg)
        if resume:
            check_classes(self.classes, read_meta(spec.out)["classes"], f"the run in {spec.out}")
        torch.manual_seed(tcfg.seed)
        self.raw = build_model(
            self.model_cfg,
            class_names=self.classes,
            clip_weights=spec.clip_weights,
            backbone_given=spec.backbone_given or resume,
        )
        self.raw = self.raw.to(self.dist.device)
        self.prep = preprocessing_for(self.raw)
        mirror = read_mirror_pairs(spec.classes_file, self.classes) if tcfg.flip else {}
        self.train_ds = ClipDataset(
            train_records, self.prep, train=True, seed=tcfg.seed, flip=tcfg.flip, mirror=mirror
        )
        if not resume:
            self._init_queries()
        world = self.dist.world
        self.model = torch.nn.parallel.DistributedDataParallel(self.raw) if world > 1 else self.raw
        self.sampler = DistributedSampler(
            self.train_ds, num_replicas=world, rank=self.dist.rank, shuffle=True, seed=tcfg.seed
        )
        self.loader = DataLoader(
            self.train_ds,
            batch_size=tcfg.batch_size,
            sampler=self.sampler,
            num_workers=tcfg.workers,
            drop_last=len(self.train_ds) // world > tcfg.batch_size,
        )
        self.val_loader = make_loader(val_records, self.prep, tcfg.batch_size, tcfg.workers)
        self.optimizer = make_optimizer(self.raw, tcfg)
        steps = len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, steps, tcfg)
        )
        self.start_epoch, self.best, self.history = 0, {"val_top1": -1.0}, []
        self.num_train = len(train_records)

    def _records(self, spec: RunSpec, tcfg: TrainConfig) -> tuple[list, list]:
        """(training, validation) clips, their videos probed and their frame ranges checked."""
        from art_edge.cliplist import probe_records, read_list

        def probed(path, what):
            return probe_records(
                read_list(path, self.classes, spec.root), tcfg.max_bad_fraction, what
            )

        train_records = probed(spec.train_list, "training clips")
        if spec.val_list:
            return train_records, probed(spec.val_list, "val clips")
        # model selection on clips carved from the training list, never on the test list
        return carve_validation(train_records, spec.val_fraction, tcfg.seed)

    def _init_queries(self):
        """Query selection (the Baseline has no queries), before DDP wraps the model; every rank
        sees the same clips, so the same init."""
        if self.model_cfg.query_init != "tokens" or not hasattr(
            self.raw, "init_queries_from_tokens"
        ):
            return
        clips = np.stack([self.train_ds[i][0] for i in range(min(16, len(self.train_ds)))])
        self.raw.init_queries_from_tokens(torch.from_numpy(clips).to(self.dist.device))

    def restore(self):
        """Continue from last.pt exactly: weights, optimizer, schedule, history."""
        state = load_resume_state(self.spec.out)
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"] + 1
        self.best, self.history = json.loads(state["best"]), json.loads(state["history"])
        self.spec.log(f"resuming {self.spec.out} at epoch {self.start_epoch + 1}")

    def run_epoch(self, epoch: int) -> dict:
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        torch.manual_seed(self.tcfg.seed * 100003 + epoch)  # dropout: the same stream on resume
        row = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * len(self.loader),
            "lr": max(self.scheduler.get_last_lr()),
        }
        row.update(
            train_one_epoch(
                self.model,
                self.raw,
                self.loader,
                self.optimizer,
                self.scheduler,
                self.dist,
                self.tcfg,
                epoch,
                self.progress,
            )
        )
        return row

    def end_epoch(self, epoch: int, row: dict, seconds: float):
        """Validate, and write what the run dir holds after this epoch (main process only)."""
        from art_train.plots import plot_confusion, plot_curves

        out, classes = self.spec.out, self.classes
        probs, labels = predict_probs(self.raw, self.val_loader, self.dist.device)
        m = classification_metrics(probs.argmax(-1), labels, len(classes))
        val_loss = float(-np.log(probs[np.arange(len(labels)), labels] + 1e-12).mean())
        row.update(val_top1=m["top1"], val_mean_class_acc=m["mean_class_acc"], val_loss=val_loss)
        row["seconds"] = seconds
        self.history.append(row)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        # the best epoch: the highest val top-1, and at equal top-1 the lowest val loss (a model
        # that reaches 1.000 in its first epoch is not kept over the same score with more margin)
        if (m["top1"], -val_loss) > (self.best["val_top1"], -self.best.get("val_loss", np.inf)):
            self.best = {
                "val_top1": m["top1"],
                "val_mean_class_acc": m["mean_class_acc"],
                "val_loss": val_loss,
                "epoch": epoch + 1,
            }
            extra = {"train": asdict(self.tcfg), "best": self.best}
            save_checkpoint(
                out, self.raw, classes, self.prep, extra | {"clip_weights": self.spec.clip_weights}
            )
            plot_confusion(
                m["confusion"],
                classes,
                out / "confusion.png",
                f"val confusion, epoch {epoch + 1} (top-1 {m['top1']:.3f})",
            )
        save_resume_state(
            out,
            {
                "model": self.raw.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": epoch,
                "best": json.dumps(self.best),
                "history": json.dumps(self.history),
            },
        )
        plot_curves(self.history, out / "curves.png")
        self.spec.log(
            f"epoch {epoch + 1}/{self.tcfg.epochs}  loss {row['loss']:.4f}  "
            f"train top-1 {row['train_top1']:.3f}  val top-1 {m['top1']:.3f}  ({seconds:.1f} s)"
        )


def train(
    model_cfg: ARTConfig, tcfg: TrainConfig, spec: RunSpec, resume=False, stop_after=None
) -> dict:
    """Train and write the run dir. Returns the best validation metrics. `stop_after` stops after
    that many epochs of the full schedule (a probe that may be resumed)."""
    t = Trainer(model_cfg, tcfg, spec, resume)
    if resume:
        t.restore()
    if t.dist.main:
        spec.out.mkdir(parents=True, exist_ok=True)
        spec.log(
            f"training {t.model_cfg.name} ({t.model_cfg.variant}) on {t.num_train} clips, "
            f"{len(t.classes)} classes, {tcfg.epochs} epochs, {t.dist.world} process(es) on {t.dist.device}"
        )
    end_epoch = min(tcfg.epochs, stop_after) if stop_after else tcfg.epochs
    for epoch in range(t.start_epoch, end_epoch):
        t0 = time.time()
        row = t.run_epoch(epoch)
        if t.dist.main:
            t.end_epoch(epoch, row, time.time() - t0)
        t.dist.barrier()
    t.dist.close()
    if t.dist.main:
        atomic_write_text(spec.out / "summary.json", json.dumps(t.best, indent=2))
    return t.best


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="art-train", description="Train ART on LIST files of video clips.")
    ap.add_argument(
        "--config",
        default="art-tiny",
        help="registered config name (art-tiny, art-edge-s, art-b16, art-b16-paper) "
        "or a JSON file {base, model, train}",
    )
    ap.add_argument("--train", required=True, help="training LIST CSV")
    ap.add_argument(
        "--val", help="validation LIST CSV for choosing the best epoch (not the test list)"
    )
    ap.add_argument(
        "--val-fraction",
        type=fraction,
        help="instead of --val: validate on this share of each class of --train (e.g. 0.1)",
    )
    ap.add_argument("--classes", required=True, help="classes file, one name a line")
    ap.add_argument("--root", help="folder for relative LIST paths (default: each LIST's folder)")
    ap.add_argument("--out", required=True, help="run dir to write")
    ap.add_argument(
        "--clip-weights",
        help="local open_clip/OpenAI checkpoint (a file, or a folder with its open_clip_config.json) "
        "for the backbone and text encoder; 'none': random weights. Default: the pretrained tower "
        "the package ships for the backbone (art-tiny's), else random weights",
    )
    ap.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--epochs", type=positive_int)
    ap.add_argument("--batch-size", type=positive_int)
    ap.add_argument("--lr", type=positive_float)
    ap.add_argument("--workers", type=non_negative_int)
    ap.add_argument("--seed", type=int)
    ap.add_argument(
        "--flip",
        action="store_true",
        help="random horizontal flips; the classes file's 'mirror: A | B' lines name the classes a "
        "mirror exchanges (clockwise ↔ counter-clockwise)",
    )
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
    return ap


@cli_entry
def main(argv=None):
    a = build_parser().parse_args(argv)
    sets = list(a.set) + [
        f"{k}={v}"
        for k, v in (
            ("epochs", a.epochs),
            ("batch_size", a.batch_size),
            ("lr", a.lr),
            ("workers", a.workers),
            ("seed", a.seed),
            ("variant", a.variant),
            ("flip", "true" if a.flip else None),
        )
        if v is not None
    ]
    out = Path(a.out)
    if a.resume:
        model_cfg, tcfg = resume_config(read_meta(out), sets)
    else:
        model_cfg, tcfg = resolve_config(a.config, sets)
        if (out / "model.json").exists():
            raise UserError(
                f"{out} already holds a run: pass --resume to continue it or choose another --out"
            )
    check_writable(out, "--out")
    if bool(a.val) == bool(a.val_fraction):
        raise UserError(
            "give --val LIST (a validation list) or --val-fraction F (carved from --train), one of them"
        )
    spec = RunSpec(
        a.train,
        a.val,
        a.classes,
        out,
        a.root,
        resolve_clip_weights(a.clip_weights, model_cfg.backbone),
        a.device,
        val_fraction=a.val_fraction or 0.0,
        backbone_given=backbone_named(a.config, sets),
    )
    created = not out.exists()
    try:
        best = train_with_restarts(model_cfg, tcfg, spec, a.resume)
    except BaseException:
        if created and not (out / "model.json").exists():  # stopped before its first checkpoint
            shutil.rmtree(out, ignore_errors=True)
        raise
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best val top-1 {best['val_top1']:.4f} at epoch {best.get('epoch')}; checkpoint in {out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
