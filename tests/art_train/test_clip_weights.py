"""--clip-weights: a local CLIP checkpoint loads strictly into both towers, whatever container it
comes in, says what it did, refuses a file for another architecture or a damaged one in one line,
and OpenAI's TorchScript archives get their QuickGELU towers. The files are written here by
open_clip itself, with random weights (no download)."""

import pytest
import torch

from art_edge.errors import UserError
from art_train.clip import backbone_for_weights, create_clip, load_clip_weights

NAME = "ART-ViT-Tiny"


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
            assert torch.equal(own[k], v), k


def write(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    "container", ["plain", "state_dict", "model", "module_prefix", "safetensors"]
)
def test_containers_load_into_both_towers(source_model, tmp_path, container, capsys):
    state = {k: v.clone().contiguous() for k, v in source_model.state_dict().items()}
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


def traced_archive(model, path):
    """An OpenAI-format file: a TorchScript archive of the CLIP model (OpenAI's key names)."""
    image, text = torch.zeros(1, 3, 64, 64), torch.zeros(1, 32, dtype=torch.long)
    traced = torch.jit.trace(model.eval(), (image, text), strict=False, check_trace=False)
    traced.save(str(path))
    return path


def test_an_openai_archive_loads_and_gets_quickgelu(source_model, tmp_path):
    path = traced_archive(source_model, tmp_path / "ViT-openai.pt")
    assert backbone_for_weights(NAME, path) == f"{NAME}-quickgelu"
    model = create_clip(f"{NAME}-quickgelu", 64, None, warn_random=False)
    load_clip_weights(model, path, NAME)
    assert_loaded(model, source_model.state_dict())
    assert backbone_for_weights(NAME, None) == NAME  # no file, no change


def test_an_openai_archive_records_quickgelu_in_the_model_config(source_model, tmp_path):
    from art_train.model import create_model

    path = traced_archive(source_model, tmp_path / "ViT-openai.pt")
    model = create_model(
        "art-tiny",
        class_names=["a", "b", "c", "d"],
        clip_weights=str(path),
        backbone=NAME,
        feature_stage=-1,
    )
    assert model.cfg.backbone == f"{NAME}-quickgelu"  # what model.json will say


def test_a_file_for_another_architecture_is_one_line(source_model, tmp_path):
    path = write(tmp_path / "w.pt", source_model.state_dict())
    other = create_clip("ART-ResNet-Tiny", 64, None, warn_random=False)
    with pytest.raises(
        UserError, match=r"vision tower of ART-ResNet-Tiny .* looks like ART-ViT-Tiny"
    ) as e:
        load_clip_weights(other, path, "ART-ResNet-Tiny")
    assert "\n" not in str(e.value)


def test_a_vision_only_file_is_refused(source_model, tmp_path):
    vision = {k: v for k, v in source_model.state_dict().items() if k.startswith("visual.")}
    with pytest.raises(UserError, match="of the text tower"):
        load_clip_weights(fresh(), write(tmp_path / "v.pt", vision), NAME)


def test_a_truncated_file_is_one_line(source_model, tmp_path):
    path = write(tmp_path / "w.pt", source_model.state_dict())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot be read") as e:
        load_clip_weights(fresh(), path, NAME)
    assert "\n" not in str(e.value)
