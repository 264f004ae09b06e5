"""The model zoo. Importing this package registers every family."""

from . import convnets, external_attention, mixer, probes, repmlp_nets, repmlpnet, resmlp, vit  # noqa: F401  (registration)
from .registry import ModelConfig, ModelSpec, create_model, get_spec, list_models, register_model

__all__ = ["ModelConfig", "ModelSpec", "create_model", "get_spec", "list_models", "register_model"]
