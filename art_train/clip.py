"""open_clip, imported safely, plus the project's own small open_clip architectures.

open_clip imports torchvision. Where torchvision's C extension loads (a CUDA machine with the
matching torchvision), its own registration of `torchvision::nms` is the only one: defining that
schema first makes the extension's registration abort the process. Where it cannot load (the
CUDA build of torchvision that pip resolves beside CPU torch 2.13.0), the import fails with
"operator torchvision::nms does not exist"; only then are the two op schemas its Python side
looks up defined, and the import tried again: its transforms work, its C++ ops (unused) do not.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from art_edge.errors import UserError

_SHIM_LIBS = []  # keep the Library objects alive: dropping them unregisters the schemas
_CONFIG_DIR = Path(__file__).parent / "clip_configs"


def import_torchvision():
    """torchvision, with its own C++ ops where its extension loads, with stand-in schemas of the
    two ops it looks up where it cannot (module docstring)."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    else:
        return
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import left its first submodules behind
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SHIM_LIBS.append(lib)
    import torchvision  # noqa: F401, F811


def import_open_clip():
    import_torchvision()
    import open_clip

    if "ART-ResNet-Tiny" not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)
    return open_clip


def create_clip(name: str, image_size: int, weights: str | None = None, warn_random: bool = True):
    """An open_clip CLIP model by name at `image_size`, with local weights when given."""
    open_clip = import_open_clip()
    if name not in open_clip.list_models():
        raise UserError(
            f"unknown open_clip model {name!r}; see open_clip.list_models() for the names"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        level = logging.getLogger().level
        logging.getLogger().setLevel(
            logging.ERROR
        )  # open_clip logs "no pretrained weights" at WARNING
        try:
            model = open_clip.create_model(name, pretrained=None, force_image_size=image_size)
        finally:
            logging.getLogger().setLevel(level)
    if weights:
        report = load_clip_weights(model, weights, name)
        print(
            f"--clip-weights {weights}: {report['loaded']} tensors loaded into {name} "
            f"(vision tower {report['vision']}, text tower {report['text']})",
            file=sys.stderr,
        )
    elif warn_random:
        print(
            f"warning: open_clip model {name!r} starts from random weights; pass --clip-weights PATH "
            "to load a local open_clip/OpenAI checkpoint",
            file=sys.stderr,
        )
    return model


def tokenizer_for(name: str):
    return import_open_clip().get_tokenizer(name)


def preprocess_stats(clip_model) -> tuple[tuple, tuple]:
    cfg = getattr(clip_model.visual, "preprocess_cfg", None) or {}
    from art_edge.preprocess import CLIP_MEAN, CLIP_STD

    return tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))


# ----------------------------------------------------------------------------- local CLIP weights


def is_torchscript_archive(path) -> bool:
    """OpenAI's released CLIP files are TorchScript archives (a zip holding code/ and constants.pkl)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(
            n.split("/", 1)[-1].startswith("code/") or n.endswith("constants.pkl")
            for n in z.namelist()
        )


def read_clip_state(path) -> dict:
    """The tensors of a CLIP checkpoint, without unpickling arbitrary objects: safetensors as they
    are; a TorchScript archive (OpenAI's format) through torch.jit.load, which builds the module
    from TorchScript code and tensors and runs no Python pickle; anything else with
    torch.load(weights_only=True). Usual containers are unwrapped: {"state_dict": …}, {"model": …},
    and the "module." prefix of DistributedDataParallel."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--clip-weights: no such file {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif is_torchscript_archive(path):
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (
        Exception
    ) as e:  # a truncated or foreign file: torch, zipfile and safetensors each raise their own
        raise UserError(
            f"--clip-weights {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "is it a complete open_clip or OpenAI CLIP checkpoint?"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"--clip-weights {path} holds no state dict of tensors; give an open_clip or OpenAI checkpoint"
        )
    return {
        k.removeprefix("module."): v
        for k, v in state.items()
        if k not in ("input_resolution", "context_length", "vocab_size")
    }


def guess_architecture(state: dict) -> str:
    """open_clip model names whose vision tower has the file's width, patch size and depth."""
    conv = state.get("visual.conv1.weight")
    if conv is None:
        return "an architecture that is not an open_clip ViT"
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    width, patch = conv.shape[0], conv.shape[-1]
    open_clip, names = import_open_clip(), []
    for name in open_clip.list_models():
        v = (open_clip.get_model_config(name) or {}).get("vision_cfg", {})
        if v.get("width") == width and v.get("patch_size") == patch and v.get("layers") == layers:
            names.append(name)
    return (
        ", ".join(names[:4]) if names else f"a ViT of width {width}, patch {patch}, {layers} layers"
    )


def load_clip_weights(model, path, name: str) -> dict:
    """Load a local CLIP checkpoint into both towers, strictly: every tensor of the vision and the
    text tower must come from the file, with its shape; otherwise one line that says what is
    missing and which architecture the file seems to fit. → counts for the log."""
    state = read_clip_state(path)
    own = model.state_dict()
    towers = {
        "vision": [k for k in own if k.startswith("visual.")],
        "text": [
            k for k in own if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")
        ],
    }
    for tower, keys in towers.items():
        missing = [k for k in keys if k not in state]
        wrong = [k for k in keys if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            raise UserError(
                f"--clip-weights {path} fills {len(keys) - len(missing) - len(wrong)} of {len(keys)} tensors "
                f"of the {tower} tower of {name} (missing {missing[:2]}, other shapes {wrong[:2]}); "
                f"it looks like {guess_architecture(state)}: pass that model's config"
            )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {
        "loaded": sum(k in own for k in state),
        **{t: f"{len(k)}/{len(k)}" for t, k in towers.items()},
    }


def backbone_for_weights(name: str, weights) -> str:
    """OpenAI's CLIP weights were trained with QuickGELU: their towers run with it (open_clip's
    "-quickgelu" configs), or they would run with the wrong activation without a word."""
    if (
        not weights
        or not Path(weights).is_file()
        or not is_torchscript_archive(weights)
        or name.endswith("-quickgelu")
    ):
        return name
    quick = f"{name}-quickgelu"
    if quick not in import_open_clip().list_models():
        raise UserError(
            f"--clip-weights {weights} is an OpenAI checkpoint (QuickGELU), and open_clip has no "
            f"{quick} config; pick a backbone with a -quickgelu variant, or convert the weights"
        )
    return quick
