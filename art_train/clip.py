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
from dataclasses import dataclass
from pathlib import Path

import torch

from art_edge.errors import UserError

_SHIM_LIBS = []  # keep the Library objects alive: dropping them unregisters the schemas
_CONFIG_DIR = Path(__file__).parent / "clip_configs"
# Label-free pretrained towers shipped with the package, one per open_clip model name
# (benchmarks/pretrain_tower.py; provenance in docs/model.md)
_TOWER_DIR = Path(__file__).parent / "towers"


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


def create_clip(
    name: str,
    image_size: int,
    weights=None,
    warn_random: bool = True,
    text_tower: bool = True,
):
    """An open_clip CLIP model by name at `image_size`, with local weights when given (a path or
    the ClipWeights that read_clip_weights returned). `text_tower=False` builds the vision tower
    alone (what a checkpoint holds; no text tower is built or run) and returns it."""
    open_clip = import_open_clip()
    if name not in open_clip.list_models():
        raise UserError(
            f"unknown open_clip model {name!r}; see open_clip.list_models() for the names"
        )
    if not text_tower:
        return vision_tower(name, image_size)
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
        weights = weights if isinstance(weights, ClipWeights) else read_clip_weights(weights)
        report = load_clip_weights(model, weights, name)
        print(
            f"--clip-weights {weights.path}: {report['loaded']} tensors loaded into {name} "
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


def vision_tower(name: str, image_size: int):
    """open_clip's vision tower of `name` at `image_size`, alone, as CLIP builds it (the same
    module and parameter names), with its preprocessing config."""
    from dataclasses import asdict

    from open_clip.model import _build_vision_tower
    from open_clip.transform import PreprocessCfg

    cfg = import_open_clip().get_model_config(name)
    vision_cfg = dict(cfg["vision_cfg"], image_size=image_size)
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    visual = _build_vision_tower(cfg["embed_dim"], vision_cfg, cfg.get("quick_gelu", False))
    visual.preprocess_cfg = asdict(PreprocessCfg(size=image_size))
    return visual


def embed_dim(name: str) -> int:
    """The width of CLIP's joint image-text space for open_clip model `name` (from its config:
    nothing is built)."""
    return int(import_open_clip().get_model_config(name)["embed_dim"])


def packaged_tower(backbone: str) -> Path | None:
    """The label-free pretrained vision tower this package ships for `backbone`, if any (one:
    ART-ResNet-Tiny, art-tiny's, made by benchmarks/pretrain_tower.py)."""
    path = _TOWER_DIR / f"{backbone}.safetensors"
    return path if path.is_file() else None


def resolve_clip_weights(given: str | None, backbone: str) -> str | None:
    """--clip-weights → what to load: a path as given; "none": random weights; not given: the
    tower the package ships for `backbone` (art-tiny's starts from features, as the larger
    configs start from CLIP), else random weights."""
    if given is not None:
        return None if given.lower() == "none" else given
    tower = packaged_tower(backbone)
    return str(tower) if tower else None


def tokenizer_for(name: str):
    return import_open_clip().get_tokenizer(name)


def preprocess_stats(clip_model) -> tuple[tuple, tuple]:
    cfg = getattr(clip_model.visual, "preprocess_cfg", None) or {}
    from art_edge.preprocess import CLIP_MEAN, CLIP_STD

    return tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))


# ----------------------------------------------------------------------------- local CLIP weights

# Entries of a state dict that are no weights: OpenAI's TorchScript model keeps its input size,
# context length and vocabulary size as tensors; derived masks and position ids (open_clip drops
# the latter too).
OPENAI_SCALARS = ("input_resolution", "context_length", "vocab_size")
HF_CONFIG = "open_clip_config.json"  # what open_clip and the HF hub keep beside the weights
# the weights file open_clip picks from a folder, in its order (open_clip.factory)
FOLDER_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)
# safetensors metadata of a file that holds a vision tower alone on purpose (pretrain_tower.py)
VISION_ONLY = {"towers": "vision"}


@dataclass
class ClipWeights:
    """A local CLIP checkpoint, read once: its tensors and what the file says about itself."""

    path: Path  # the weights file
    state: dict  # name → tensor, open_clip's (= OpenAI's) key names
    quick_gelu: bool | None  # the activation its towers were trained with; None: it cannot tell
    evidence: str  # how that is known, for messages
    towers: tuple = ("vision", "text")  # the towers it must fill
    config: dict | None = None  # the model_cfg of an open_clip_config.json beside it


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


def weights_file(path) -> tuple[Path, Path | None]:
    """--clip-weights as given (a file, or a folder in the HF-hub layout) → (the weights file,
    the open_clip_config.json beside it, if there is one)."""
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in FOLDER_WEIGHTS if (path / n).is_file()]
        if not found:
            raise UserError(
                f"--clip-weights {path} is a folder without a weights file ({', '.join(FOLDER_WEIGHTS[:3])}, …); "
                "pass the folder open_clip or the HF hub wrote, or the weights file itself"
            )
        path = found[0]
    elif not path.is_file():
        raise UserError(f"--clip-weights: no such file {path}")
    config = path.parent / HF_CONFIG
    return path, config if config.is_file() else None


def _read_tensors(path: Path) -> tuple[dict, dict]:
    """(the file's objects as loaded, its safetensors metadata), without unpickling arbitrary
    objects: safetensors as they are; a TorchScript archive (OpenAI's format) through
    torch.jit.load, which builds the module from TorchScript code and tensors and runs no Python
    pickle; anything else with torch.load(weights_only=True)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
            return load_file(str(path)), metadata
        if is_torchscript_archive(path):
            return torch.jit.load(str(path), map_location="cpu").state_dict(), {}
        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except (
        Exception
    ) as e:  # a truncated or foreign file: torch, zipfile, safetensors raise their own
        raise UserError(
            f"--clip-weights {path} cannot be read ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'}): the file is incomplete or "
            "not a checkpoint; copy it again, or pass a complete open_clip or OpenAI CLIP checkpoint"
        ) from None


def read_clip_state(path) -> dict:
    """The tensors of a CLIP checkpoint (read_clip_weights(path).state)."""
    return read_clip_weights(path).state


def read_clip_weights(path) -> ClipWeights:
    """A local CLIP checkpoint (a file, or a folder in the HF-hub layout) and what it says about
    its activation: OpenAI's TorchScript archives and state dicts that carry OpenAI's scalars ran
    QuickGELU; an open_clip_config.json beside the weights says `quick_gelu` (absent: false, as
    open_clip reads it). Usual containers are unwrapped: {"state_dict": …}, {"model": …}, and the
    "module." prefix of DistributedDataParallel."""
    path, config_path = weights_file(path)
    state, metadata = _read_tensors(path)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"--clip-weights {path} holds no state dict of tensors; give an open_clip or OpenAI checkpoint"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    weights = ClipWeights(path, {}, None, "the file does not say")
    if config_path is not None:
        from art_edge.errors import read_json

        doc = read_json(config_path, f"{config_path} is missing", "fix or remove it")
        weights.config = doc.get("model_cfg", doc)
        weights.quick_gelu = bool(weights.config.get("quick_gelu", False))
        weights.evidence = f"its {HF_CONFIG} says quick_gelu: {str(weights.quick_gelu).lower()}"
    elif is_torchscript_archive(path):
        weights.quick_gelu, weights.evidence = (
            True,
            "a TorchScript archive, OpenAI's release format",
        )
    elif any(k in state for k in OPENAI_SCALARS):
        weights.quick_gelu, weights.evidence = True, "OpenAI's input_resolution/vocab_size entries"
    if all(metadata.get(k) == v for k, v in VISION_ONLY.items()):
        weights.towers = ("vision",)
    weights.state = {k: v for k, v in state.items() if not _not_a_weight(k)}
    return weights


def _not_a_weight(key: str) -> bool:
    return key in OPENAI_SCALARS or key.endswith(("attn_mask", "embeddings.position_ids"))


def quickgelu_tags(base: str) -> tuple[list, list]:
    """open_clip's published weights of architecture `base`: (tags trained with QuickGELU, tags
    trained with GELU)."""
    open_clip, quick, plain = import_open_clip(), [], []
    for name in (base, f"{base}-quickgelu"):
        for tag in open_clip.list_pretrained_tags_by_model(name):
            is_quick = name != base or open_clip.get_pretrained_cfg(name, tag).get("quick_gelu")
            (quick if is_quick else plain).append(tag)
    return sorted(set(quick)), sorted(set(plain) - set(quick))


def backbone_for_weights(name: str, weights, given: bool = False) -> str:
    """The open_clip model to build for `weights` (a path or ClipWeights): its "-quickgelu"
    variant where the file says its towers ran QuickGELU (OpenAI's do), the plain one where it
    says GELU, whichever of the two `name` is. A file that does not say keeps `name` where the user
    named it (`given`: --set backbone=…), or where the architecture has no published QuickGELU
    weights; otherwise it is refused, naming both choices: building either one silently would
    run half of such files with the wrong activation."""
    if not weights:
        return name
    weights = weights if isinstance(weights, ClipWeights) else read_clip_weights(weights)
    base = name.removesuffix("-quickgelu")
    if weights.quick_gelu is None:
        quick, plain = quickgelu_tags(base)
        if given or name != base or not quick:
            return name
        raise UserError(
            f"--clip-weights {weights.path} does not say whether its towers ran QuickGELU (no "
            f"TorchScript archive, no {HF_CONFIG} beside it), and {base} weights come both ways: "
            f"pass --set backbone={base}-quickgelu (OpenAI's and others: {', '.join(quick[:4])}) "
            f"or --set backbone={base} (GELU: {', '.join(plain[:3]) or 'your own'})"
        )
    want = f"{base}-quickgelu" if weights.quick_gelu else base
    if want != name and want not in import_open_clip().list_models():
        raise UserError(
            f"--clip-weights {weights.path} ran QuickGELU ({weights.evidence}), and open_clip has "
            f"no {want} config; pick a backbone with a -quickgelu variant, or convert the weights"
        )
    return want


def guess_architecture(state: dict) -> list[str]:
    """open_clip model names (plain activation) whose vision tower has the file's width, patch
    size and depth; empty when the file holds no open_clip ViT."""
    conv = state.get("visual.conv1.weight")
    if conv is None:
        return []
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    width, patch = conv.shape[0], conv.shape[-1]
    open_clip, names = import_open_clip(), []
    for name in open_clip.list_models():
        v = (open_clip.get_model_config(name) or {}).get("vision_cfg", {})
        if v.get("width") == width and v.get("patch_size") == patch and v.get("layers") == layers:
            names.append(name)
    return [n for n in names if not n.endswith("-quickgelu")] or names


def _described(state: dict, own: dict, name: str) -> str:
    """What the file seems to be, and what to pass instead, for a message."""
    if all(k in own and v.shape == own[k].shape for k, v in state.items()):
        return f"every tensor it has fits {name}, so it is incomplete: pass a complete checkpoint"
    names = guess_architecture(state)
    if names:
        return f"it looks like {', '.join(names[:4])}: pass --set backbone={names[0]}" + (
            " (or another of those)" if len(names) > 1 else ""
        )
    if any(k.startswith("visual.trunk.") for k in state):
        return "it holds an open_clip timm tower: pass --set backbone= the open_clip model it was saved from"
    return "pass --set backbone= the open_clip model it was saved from"


def file_image_size(state: dict, own: dict) -> int | None:
    """The input side a file's position embedding was made for, where it differs from the
    model's (a ViT's grid of patches, a ResNet's attention pool at stride 32); else None."""
    for key, stride_key in (
        ("visual.positional_embedding", "visual.conv1.weight"),
        ("visual.attnpool.positional_embedding", None),
    ):
        if key in state and key in own and state[key].shape != own[key].shape:
            grid = round((state[key].shape[0] - 1) ** 0.5)
            stride = state[stride_key].shape[-1] if stride_key in state else 32
            return grid * stride
    return None


def check_fit(weights: ClipWeights, own: dict, name: str):
    """One line, and what to pass instead, where `weights` does not fill `own` (a CLIP model's
    state dict) exactly: another image size, another architecture, a tower or tensors missing,
    tensors the model has no place for."""
    state, where = weights.state, f"--clip-weights {weights.path}"
    towers = {t: k for t, k in tower_keys(own).items() if t in weights.towers}
    size = file_image_size(state, own)
    shapes_elsewhere = [k for k in own if k in state and state[k].shape != own[k].shape]
    if size and len(shapes_elsewhere) == 1:
        raise UserError(
            f"{where} is for {size}² input (its position embedding has "
            f"{state[shapes_elsewhere[0]].shape[0]} rows) and {name} is built at "
            f"{file_image_size(own, state)}² here: pass --set image_size={size}"
        )
    if "text" in towers and not any(k in state for k in towers["text"]):
        raise UserError(
            f"{where} holds no text tower ({len(state)} tensors, none of {name}'s text tower): ART's "
            "class semantics come from CLIP's text tower; pass the full CLIP checkpoint (both towers)"
        )
    for tower, keys in towers.items():
        missing = [k for k in keys if k not in state]
        wrong = [k for k in keys if k in state and state[k].shape != own[k].shape]
        if missing or wrong:
            raise UserError(
                f"{where} fills {len(keys) - len(missing) - len(wrong)} of {len(keys)} tensors of "
                f"the {tower} tower of {name} (missing {len(missing)}: {missing[:2]}, other shapes "
                f"{len(wrong)}: {wrong[:2]}); {_described(state, own, name)}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise UserError(
            f"{where} holds {len(extra)} tensors that {name} has no place for ({extra[:3]}): it is "
            "more than a CLIP model of that architecture (a fine-tuned head? another model?); pass "
            "the CLIP model's own checkpoint, or --set backbone= the open_clip model it was saved from"
        )


def tower_keys(own: dict) -> dict:
    """A CLIP model's state dict keys by tower (the logit scale and bias belong to neither)."""
    return {
        "vision": [k for k in own if k.startswith("visual.")],
        "text": [
            k for k in own if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias")
        ],
    }


def load_clip_weights(model, weights, name: str) -> dict:
    """Load a local CLIP checkpoint (a path or ClipWeights) into both towers, strictly: every
    tensor of the vision and the text tower must come from the file, with its shape, and every
    tensor of the file must have a place; otherwise one line that says which and what to pass
    instead. A file that declares itself a vision tower alone (benchmarks/pretrain_tower.py's)
    fills the vision tower, and the text tower keeps its initialisation. → counts for the log."""
    weights = weights if isinstance(weights, ClipWeights) else read_clip_weights(weights)
    own = model.state_dict()
    check_fit(weights, own, name)
    model.load_state_dict({k: v for k, v in weights.state.items() if k in own}, strict=False)
    report = {"loaded": len(weights.state)}
    for tower, keys in tower_keys(own).items():
        report[tower] = (
            f"{len(keys)}/{len(keys)}" if tower in weights.towers else "random (not in the file)"
        )
    return report
