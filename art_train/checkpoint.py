"""Checkpoints: `model.safetensors` + `model.json` in a run dir, written atomically.

No pickle for anything a user may receive. The resume state (`last.pt`: optimizer, scheduler,
step) stays in the run dir that wrote it and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from art_edge.errors import UserError, read_json
from art_edge.files import atomic_write, atomic_write_text
from art_edge.preprocess import Preprocessing

WEIGHTS, META, RESUME = "model.safetensors", "model.json", "last.pt"


def save_checkpoint(run_dir, model, class_names, prep: Preprocessing, extra: dict | None = None):
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {
        "format": "art-checkpoint/1",
        "model": model.cfg.to_dict(),
        "classes": list(class_names),
        "preprocessing": prep.to_dict(),
        **(extra or {}),
    }
    atomic_write(run_dir / WEIGHTS, lambda p: save_file(state, p))
    atomic_write_text(run_dir / META, json.dumps(meta, indent=2))


def read_meta(run_dir) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"checkpoint dir not found: {run_dir} (pass the --out of art-train)")
    return read_json(
        run_dir / META,
        f"{run_dir} has no {META}: not an art-train run dir",
        "the checkpoint is corrupt",
    )


def read_weights(run_dir) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no {WEIGHTS}: training did not finish an epoch, or the file was removed"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is corrupt ({e}); re-export it from the run or retrain") from None


def load_checkpoint(run_dir, device="cpu"):
    """→ (model in eval mode, meta dict). Clear errors for a missing, corrupt or mismatched file."""
    from art_train.model import ARTConfig, build_model

    meta = read_meta(run_dir)
    cfg = ARTConfig.from_dict(meta["model"])
    state = read_weights(run_dir)
    model = build_model(cfg, quiet=True)
    load_state(model, state, f"{Path(run_dir) / WEIGHTS}")
    return model.to(device).eval(), meta


def load_state(model, state: dict, source: str):
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {keys[:3]}{'…' if len(keys) > 3 else ''}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise UserError(
            f"weights in {source} do not fit the {model.cfg.name} architecture ({detail}); "
            "use the model.json that was saved with them"
        )
    model.load_state_dict(state)


def save_resume_state(run_dir, payload: dict):
    atomic_write(Path(run_dir) / RESUME, lambda p: torch.save(payload, p))


def load_resume_state(run_dir) -> dict:
    path = Path(run_dir) / RESUME
    if not path.is_file():
        raise UserError(f"--resume: {path} not found; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--resume: {path} is corrupt ({e}); start without --resume") from None
