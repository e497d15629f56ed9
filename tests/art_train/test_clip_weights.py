"""--clip-weights: a local CLIP checkpoint loads strictly into both towers, whatever container it
comes in, says what it did, and refuses a file for another architecture or image size, a damaged
one, or one with tensors missing or left over, in one line that says what to pass instead.

Each layout open_clip and the HF hub ship builds the activation its weights were trained with:
OpenAI's TorchScript archives and OpenAI state dicts (their scalars kept) QuickGELU, a folder with
its open_clip_config.json what the config says; where the file cannot tell, for an architecture
whose published weights come both ways, the command refuses and names both choices. The files are
written here with random values and the real key names (open_clip's are OpenAI's), the configs by
open_clip's own writer; nothing is downloaded."""

import json

import pytest
import torch

from art_edge.errors import UserError
from art_train.clip import (
    backbone_for_weights,
    create_clip,
    import_open_clip,
    load_clip_weights,
    quickgelu_tags,
    read_clip_weights,
)

NAME = "ART-ViT-Tiny"
CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(1)
    return create_clip(NAME, 64, None, warn_random=False)


def fresh():
    torch.manual_seed(2)
    return create_clip(NAME, 64, None, warn_random=False)


def assert_loaded(model, state):
    own = model.state_dict()
    for k, v in state.items():
        if k in own:
            assert torch.equal(own[k], v.to(own[k].dtype)), k


def write(path, obj):
    torch.save(obj, path)
    return path


def plain_state(model):
    return {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def activation(model) -> str:
    """The activation the built tower runs: its first block's MLP (open_clip's ViT)."""
    return type(model.frame_encoder.visual.transformer.resblocks[0].mlp.gelu).__name__


def build(path, given=False, **overrides):
    """art-tiny on an ART-ViT-Tiny tower from `path`; `given`: the user named the backbone."""
    from art_train.model import build_model, get_config

    small = {"backbone": NAME, "feature_stage": -1, "num_classes": 4}
    cfg, _ = get_config("art-tiny", **small | overrides)
    return build_model(cfg, CLASSES, str(path), backbone_given=given)


@pytest.mark.parametrize(
    "container", ["plain", "state_dict", "model", "module_prefix", "safetensors"]
)
def test_containers_load_into_both_towers(source_model, tmp_path, container, capsys):
    state = plain_state(source_model)
    if container == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    else:
        obj = {
            "plain": state,
            "state_dict": {"state_dict": state, "epoch": 3},
            "model": {"model": state},
            "module_prefix": {f"module.{k}": v for k, v in state.items()},
        }[container]
        path = write(tmp_path / "w.pt", obj)
    model = fresh()
    report = load_clip_weights(model, path, NAME)
    assert (
        report["loaded"] == len(state)
        and report["vision"].split("/")[0] == report["vision"].split("/")[1]
    )
    assert_loaded(model, state)


# ----------------------------------------------------------------------------- the activation


def traced_archive(model, path):
    """An OpenAI-format file: a TorchScript archive of the CLIP model (OpenAI's key names)."""
    image, text = torch.zeros(1, 3, 64, 64), torch.zeros(1, 32, dtype=torch.long)
    traced = torch.jit.trace(model.eval(), (image, text), strict=False, check_trace=False)
    traced.save(str(path))
    return path


def openai_state_dict(model) -> dict:
    """What OpenAI's state dicts hold (a TorchScript archive's state_dict(), saved): their
    weights in half precision, and the three scalars OpenAI's model keeps as tensors."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in plain_state(model).items()}
    scalars = {"input_resolution": 64, "context_length": 32, "vocab_size": 49408}
    return state | {k: torch.tensor(v) for k, v in scalars.items()}


def test_an_openai_archive_loads_and_gets_quickgelu(source_model, tmp_path):
    path = traced_archive(source_model, tmp_path / "ViT-openai.pt")
    assert backbone_for_weights(NAME, path) == f"{NAME}-quickgelu"
    model = create_clip(f"{NAME}-quickgelu", 64, None, warn_random=False)
    load_clip_weights(model, path, NAME)
    assert_loaded(model, source_model.state_dict())
    assert backbone_for_weights(NAME, None) == NAME  # no file, no change


def test_an_openai_archive_records_quickgelu_in_the_model_config(source_model, tmp_path):
    model = build(traced_archive(source_model, tmp_path / "ViT-openai.pt"))
    assert model.cfg.backbone == f"{NAME}-quickgelu"  # what model.json will say
    assert activation(model) == "QuickGELU"


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".safetensors"])
def test_an_openai_state_dict_builds_quickgelu(source_model, tmp_path, suffix):
    state, path = openai_state_dict(source_model), tmp_path / f"ViT-B-16-openai{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        write(path, state)
    model = build(path)
    assert model.cfg.backbone == f"{NAME}-quickgelu" and activation(model) == "QuickGELU"
    assert_loaded(
        model.frame_encoder.visual, {k[7:]: v for k, v in state.items() if k[:7] == "visual."}
    )


def hub_folder(model, folder, quick_gelu):
    """The HF-hub layout open_clip reads (`hf-hub:` / `local-dir:`): open_clip_config.json,
    written by open_clip's own writer, beside open_clip_model.safetensors and
    open_clip_pytorch_model.bin (what its save_for_hf writes)."""
    import_open_clip()
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    folder.mkdir()
    model_cfg = dict(import_open_clip().get_model_config(NAME))
    if quick_gelu is not None:
        model_cfg["quick_gelu"] = quick_gelu
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=model_cfg)
    save_file(plain_state(model), str(folder / "open_clip_model.safetensors"))
    torch.save(plain_state(model), folder / "open_clip_pytorch_model.bin")
    return folder


@pytest.mark.parametrize("quick_gelu", [True, False, None])
@pytest.mark.parametrize("given", ["folder", "bin", "safetensors"])
def test_a_hub_folder_builds_what_its_config_says(source_model, tmp_path, quick_gelu, given):
    folder = hub_folder(source_model, tmp_path / "vit_tiny_clip.openai", quick_gelu)
    assert "model_cfg" in json.loads((folder / "open_clip_config.json").read_text())
    path = {
        "folder": folder,
        "bin": folder / "open_clip_pytorch_model.bin",
        "safetensors": folder / "open_clip_model.safetensors",
    }[given]
    model = build(path)
    quick = bool(quick_gelu)  # absent: open_clip builds GELU
    assert model.cfg.backbone == (f"{NAME}-quickgelu" if quick else NAME)
    assert activation(model) == ("QuickGELU" if quick else "GELU")
    assert_loaded(
        model.frame_encoder.visual,
        {k[7:]: v for k, v in source_model.state_dict().items() if k[:7] == "visual."},
    )


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_a_file_that_says_wins_over_the_named_backbone(source_model, tmp_path, quick_gelu):
    folder = hub_folder(source_model, tmp_path / "hub", quick_gelu)
    for named in (NAME, f"{NAME}-quickgelu"):
        model = build(folder, given=True, backbone=named)
        assert activation(model) == ("QuickGELU" if quick_gelu else "GELU")


def test_open_clips_registry_says_which_vit_b_16_weights_ran_quickgelu():
    quick, plain = quickgelu_tags("ViT-B-16")
    assert "openai" in quick and "laion2b_s34b_b88k" in plain and not set(quick) & set(plain)
    assert quickgelu_tags(NAME) == ([], [])


@pytest.fixture
def published_both_ways(monkeypatch):
    """ART-ViT-Tiny, as if open_clip listed weights of it trained both ways (as for ViT-B-16,
    whose real files are too big to write here)."""
    import art_train.clip as clip

    monkeypatch.setattr(
        clip, "quickgelu_tags", lambda base: (["openai", "metaclip_400m"], ["laion2b_s34b_b88k"])
    )


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_state_dict_that_does_not_say_is_refused_naming_both_choices(
    source_model, tmp_path, published_both_ways, suffix
):
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(plain_state(source_model), str(path))
    else:
        write(path, plain_state(source_model))
    with pytest.raises(UserError) as e:
        build(path)
    msg = str(e.value)
    assert "\n" not in msg and "does not say" in msg
    assert f"--set backbone={NAME}-quickgelu" in msg and f"--set backbone={NAME} " in msg
    # naming either one settles it
    assert activation(build(path, given=True, backbone=f"{NAME}-quickgelu")) == "QuickGELU"
    assert activation(build(path, given=True, backbone=NAME)) == "GELU"


def test_the_cli_choice_settles_a_file_that_does_not_say(
    source_model, tmp_path, published_both_ways
):
    from art_train.configs import backbone_named

    path = write(tmp_path / "w.pt", plain_state(source_model))
    assert backbone_named("art-b16", [f"backbone={NAME}"]) and not backbone_named("art-b16", [])
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"base": "art-tiny", "model": {"backbone": NAME}}))
    assert backbone_named(str(config))
    assert backbone_for_weights(NAME, path, given=True) == NAME
    with pytest.raises(UserError, match="does not say"):
        backbone_for_weights(NAME, path, given=False)


def test_an_architecture_without_quickgelu_weights_builds_the_plain_tower(source_model, tmp_path):
    model = build(write(tmp_path / "w.pt", plain_state(source_model)))
    assert model.cfg.backbone == NAME and activation(model) == "GELU"


# ----------------------------------------------------------------------------- bad input


def test_a_file_for_another_architecture_is_one_line(source_model, tmp_path):
    path = write(tmp_path / "w.pt", source_model.state_dict())
    other = create_clip("ART-ResNet-Tiny", 64, None, warn_random=False)
    with pytest.raises(
        UserError,
        match=r"vision tower of ART-ResNet-Tiny .* looks like ART-ViT-Tiny.*--set backbone=ART-ViT-Tiny",
    ) as e:
        load_clip_weights(other, path, "ART-ResNet-Tiny")
    assert "\n" not in str(e.value)


def test_a_file_for_another_image_size_names_it(source_model, tmp_path):
    path = write(tmp_path / "w.pt", source_model.state_dict())  # made at 64²
    with pytest.raises(
        UserError, match=r"is for 64² input .* built at 32² here: pass --set image_size=64"
    ) as e:
        build(path, image_size=32)
    assert "\n" not in str(e.value)


def test_a_vision_only_file_is_refused(source_model, tmp_path):
    vision = {k: v for k, v in source_model.state_dict().items() if k.startswith("visual.")}
    with pytest.raises(UserError, match="holds no text tower.*both towers"):
        load_clip_weights(fresh(), write(tmp_path / "v.pt", vision), NAME)


def test_a_vision_tower_file_that_says_so_fills_the_vision_tower_only(source_model, tmp_path):
    from safetensors.torch import save_file

    from art_train.clip import VISION_ONLY

    vision = {k: v.contiguous() for k, v in source_model.state_dict().items() if k[:7] == "visual."}
    path = tmp_path / "tower.safetensors"
    save_file(vision, str(path), metadata=VISION_ONLY)
    model = fresh()
    text_before = model.token_embedding.weight.clone()
    report = load_clip_weights(model, path, NAME)
    assert_loaded(model, vision)
    assert report["text"].startswith("random") and torch.equal(
        model.token_embedding.weight, text_before
    )


def test_missing_tensors_are_named(source_model, tmp_path):
    state = plain_state(source_model)
    del state["ln_final.bias"]
    with pytest.raises(
        UserError, match=r"text tower .*missing 1: \['ln_final.bias'\].*incomplete"
    ) as e:
        load_clip_weights(fresh(), write(tmp_path / "w.pt", state), NAME)
    assert "\n" not in str(e.value)


def test_extra_tensors_are_named(source_model, tmp_path):
    state = plain_state(source_model) | {"head.weight": torch.zeros(4, 64)}
    with pytest.raises(
        UserError, match=r"1 tensors that ART-ViT-Tiny has no place for \(\['head.weight'\]\)"
    ) as e:
        load_clip_weights(fresh(), write(tmp_path / "w.pt", state), NAME)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_truncated_file_is_one_line(source_model, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(plain_state(source_model), str(path))
    else:
        write(path, source_model.state_dict())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot be read.*incomplete") as e:
        load_clip_weights(fresh(), path, NAME)
    assert "\n" not in str(e.value)


def test_a_folder_without_weights_is_one_line(tmp_path):
    with pytest.raises(UserError, match="folder without a weights file"):
        read_clip_weights(tmp_path)
