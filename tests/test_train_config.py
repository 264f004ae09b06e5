"""TrainConfig: recipe keys, validation and the shipped recipes."""

from pathlib import Path

import pytest
import yaml

import mlpvision
from mlpvision.data import AugmentConfig
from mlpvision.errors import ConfigError
from mlpvision.models import create_model
from mlpvision.train import TrainConfig

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_the_default_config_is_valid_and_trains_a_repmlp_model():
    cfg = TrainConfig()
    cfg.validate()
    assert mlpvision.get_spec(cfg.model).family == "repmlp"


def test_from_dict_builds_the_augmentation_and_round_trips():
    cfg = TrainConfig.from_dict({"epochs": 3, "aug": {"crop_padding": 4, "mixup": 0.2}})
    assert cfg.aug == AugmentConfig(crop_padding=4, mixup=0.2)
    assert TrainConfig.from_dict(cfg.as_dict()) == cfg


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"learning_rate": 0.1}, "unknown option(s) learning_rate"),
        ({"aug": {"cutout": 0.5}}, "unknown option(s) aug.cutout"),
    ],
)
def test_from_dict_names_an_unknown_key(recipe, message):
    with pytest.raises(ConfigError, match=r"valid: ") as info:
        TrainConfig.from_dict(recipe)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"min_lr": -1}, "min_lr must be >= 0"),
        ({"lr": 0.01, "min_lr": 0.1}, "min_lr (0.1) must not exceed lr (0.01)"),
        ({"accum_steps": 0}, "accum_steps must be >= 1"),
        ({"optimizer": "lamb"}, "optimizer must be one of adamw, sgd"),
        ({"distill": "soft"}, "needs --teacher"),
        ({"teacher": "t.safetensors", "distill": "soft", "distill_tau": 0.0}, "distill_tau must be > 0"),
        ({"ema_decay": 1.0}, "ema_decay must be >= 0 and < 1"),
        ({"ema_bn_images": -1}, "ema_bn_images must be >= 0"),
        ({"ema_bn_images": 100}, "ema_bn_images acts on the weight EMA"),
    ],
)
def test_validate_refuses_an_impossible_value(override, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**override).validate()
    assert message in str(info.value)


def test_teacher_files_lists_one_file_or_the_members_of_an_ensemble():
    assert TrainConfig().teacher_files == []
    assert TrainConfig(teacher="a.safetensors").teacher_files == ["a.safetensors"]
    assert TrainConfig(teacher=["a.safetensors", "b.safetensors"]).teacher_files == ["a.safetensors", "b.safetensors"]


def test_amp_is_kept_when_set_and_follows_the_device_when_not():
    assert TrainConfig(amp=True).amp_on("meta") is True
    assert TrainConfig(amp=False).amp_on("meta") is False
    assert TrainConfig(amp=None).amp_on("meta") is False  # no device runs bfloat16 natively on "meta"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid_and_builds_its_model(recipe):
    cfg = TrainConfig.from_dict(yaml.safe_load(recipe.read_text()))
    cfg.validate()
    model = create_model(cfg.model, device="meta", **cfg.model_args)
    assert sum(p.numel() for p in model.parameters()) > 0
    for teacher in cfg.teacher_files:
        assert not Path(teacher).is_absolute() and teacher.startswith("results/")  # a file of this repository


def test_the_optimizer_decays_weights_only_not_biases_of_any_shape():
    from mlpvision.train.schedule import build_optimizer

    model = create_model("mixer_t4_28", embed_dim=16, depth=1, token_mixing_groups=16)  # untied: 2-D biases
    decay, no_decay = build_optimizer(TrainConfig(weight_decay=0.05), model).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, kept = ({names[id(p)] for p in g["params"]} for g in (decay, no_decay))
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decayed and all(n.endswith("weight") for n in decayed)
    assert {n for n in kept if n.endswith("_bias")}  # the untied token mixing's per-channel (2-D) biases


def test_resmlps_affine_is_decayed_as_in_timm_unless_switched_off():
    from mlpvision.train.schedule import build_optimizer

    model = create_model("resmlp_tiny_12_28", embed_dim=16, depth=1)
    affine = {id(p) for n, p in model.named_parameters() if n.endswith((".alpha", ".beta"))}
    for on in (True, False):
        decayed = {id(p) for p in build_optimizer(TrainConfig(affine_decay=on), model).param_groups[0]["params"]}
        assert affine and (affine <= decayed if on else not affine & decayed)


def test_a_field_added_after_a_checkpoint_resumes_at_its_default():
    import json

    saved = json.loads(json.dumps(TrainConfig().as_dict()))
    del saved["affine_decay"], saved["aug"]["hflip"]  # as a checkpoint written before these fields existed
    assert TrainConfig().resume_conflicts(saved) == {}
    assert set(TrainConfig(affine_decay=False).resume_conflicts(saved)) == {"affine_decay"}
