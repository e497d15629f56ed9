"""open_clip, imported safely, plus the project's own small open_clip architectures.

The torchvision wheel that pip resolves beside CPU torch 2.13.0 is a CUDA build whose C extension
cannot load; importing it fails with "operator torchvision::nms does not exist". open_clip imports
torchvision, so before the first import we define the two op schemas it looks up. Its transforms
work; its C++ ops (which we never use) do not.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

from art_edge.errors import UserError

_SHIM_LIBS = []  # keep the Library objects alive: dropping them unregisters the schemas
_CONFIG_DIR = Path(__file__).parent / "clip_configs"


def import_open_clip():
    try:
        torch.ops.torchvision.nms  # noqa: B018  (present when torchvision's C extension loaded)
    except (AttributeError, RuntimeError):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SHIM_LIBS.append(lib)
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
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"--clip-weights: no such file {weights}")
        try:
            open_clip.load_checkpoint(model, str(path), strict=False, weights_only=True)
        except Exception as e:  # open_clip raises many kinds on a mismatched or corrupt file
            raise UserError(
                f"--clip-weights {weights} does not fit open_clip model {name!r}: {e}"
            ) from None
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
