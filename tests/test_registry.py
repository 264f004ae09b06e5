import dataclasses
import typing

import pytest

import mlpvision
from mlpvision.errors import ConfigError, UnknownModelError
from mlpvision.models import get_spec, register_model
from mlpvision.models.mixer import MixerConfig, MlpMixer

PAPER_MODELS = [
    "mixer_s32_224",
    "mixer_s16_224",
    "mixer_b32_224",
    "mixer_b16_224",
    "mixer_l32_224",
    "mixer_l16_224",
    "mixer_h14_224",
    "resmlp_12_224",
    "resmlp_24_224",
    "resmlp_36_224",
    "resmlp_big_24_224",
    "resmlp_big_24_p16_224",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "resnet18",
    "resnet50",
]


def test_every_required_model_is_registered():
    names = set(mlpvision.list_models())
    assert set(PAPER_MODELS) <= names
    for family in ("mixer", "resmlp", "vit", "resnet", "convnet", "external_attention"):
        small = mlpvision.list_models(family=family)
        assert any(n.endswith("_28") for n in small), family
        assert any(n.endswith("_32") for n in small), family


def test_list_models_pattern_and_order():
    names = mlpvision.list_models("resmlp_*")
    assert names == sorted(names)
    assert names and all(n.startswith("resmlp_") for n in names)
    assert mlpvision.list_models("no_such_*") == []


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match="mixer_s16_224") as e:
        mlpvision.create_model("mixer_s16_244")
    assert isinstance(e.value, KeyError)
    assert "unknown model 'mixer_s16_244'" in str(e.value)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("mixer_s16_224", MlpMixer, MixerConfig(), family="mixer")


def test_unknown_override_lists_options():
    with pytest.raises(ConfigError, match="token_mlp_dim") as e:
        mlpvision.create_model("mixer_t4_28", token_mlp_width=12)
    assert "token_mlp_width" in str(e.value)


def test_overrides_reach_the_model():
    m = mlpvision.create_model("mixer_t4_28", num_classes=3, img_size=32, in_chans=3, depth=2, drop_path_rate=0.1)
    assert (m.num_classes, m.img_size, m.in_chans, len(m.blocks)) == (3, 32, 3, 2)
    assert m.config == dataclasses.replace(
        get_spec("mixer_t4_28").config, num_classes=3, img_size=32, in_chans=3, depth=2, drop_path_rate=0.1
    )
    assert m.model_name == "mixer_t4_28"
    assert m.blocks[-1].drop_path.p == pytest.approx(0.1)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_spec("mixer_s16_224").config.depth = 3


def test_every_numeric_field_of_every_model_config_declares_its_range():
    """A config checks its fields when built (``option``'s limits): a number or tuple field without limits would let
    a stored config or a --model-arg through to the layers (a decoder of 0 channels fails at the first step)."""
    missing = set()
    for name in mlpvision.list_models():
        cls = type(get_spec(name).config)
        for f in dataclasses.fields(cls):
            kind = typing.get_origin(typing.get_type_hints(cls)[f.name]) or typing.get_type_hints(cls)[f.name]
            if kind in (int, float, tuple) and "limits" not in f.metadata:
                missing.add(f"{cls.__name__}.{f.name}")
    assert not missing, sorted(missing)
