"""The model zoo. Importing this package registers every family."""

from . import (  # noqa: F401  (registration)
    baselines,
    external_attention,
    mixer,
    repmlp_pure,
    repmlp_resnet,
    repmlpnet,
    resmlp,
    resnet,
    segmentation,
    vit,
)
from .complexity import ModelStats, count, flop_counter
from .features import FeatureExtractor, FeatureInfo
from .registry import (
    MAX_SIDE,
    MAX_WIDTH,
    ModelConfig,
    ModelSpec,
    Variant,
    create_model,
    get_spec,
    list_models,
    register_family,
    register_model,
    resolve_config,
)

__all__ = [
    "MAX_SIDE",
    "MAX_WIDTH",
    "FeatureExtractor",
    "FeatureInfo",
    "ModelConfig",
    "ModelSpec",
    "ModelStats",
    "Variant",
    "count",
    "create_model",
    "flop_counter",
    "get_spec",
    "list_models",
    "register_family",
    "register_model",
    "resolve_config",
]
