"""RepMLPNet: share-set token mixing, Locality Injection and a BN-free deploy form."""

import pytest
import torch
from torch import nn

import mlpvision
from mlpvision.errors import ConfigError
from mlpvision.layers import Affine
from mlpvision.models.repmlpnet import ShareSetMixer
from mlpvision.reparam import non_mlp_layers, reparameterize

from .helpers import assert_reparam_equivalent, randomize_bn_

SHARED = {"sets": (8, 16), "partitions": (14, 7), "kernels": (1, 3)}  # S < C, whole-map FC3 in the first stage


def test_one_fc3_per_channel_deploys_to_linear_layers_only():
    model = randomize_bn_(mlpvision.create_model("repmlpnet_28"))
    deployed = assert_reparam_equivalent(model, torch.randn(3, 1, 28, 28), rtol=1e-5)
    assert non_mlp_layers(deployed) == []
    # S = C: the token mixer's pre-norm folds into FC3 and the gate, so not even an affine is left
    assert not any(isinstance(m, Affine) for m in deployed.modules())
    assert isinstance(deployed.head, nn.Linear) and isinstance(deployed.head_norm, nn.Identity)


def test_shared_sets_keep_a_per_channel_affine_and_no_batchnorm():
    model = randomize_bn_(mlpvision.create_model("repmlpnet_28", **SHARED))
    deployed = assert_reparam_equivalent(model, torch.randn(3, 1, 28, 28), rtol=1e-5)
    assert non_mlp_layers(deployed) == []
    affines = [m for m in deployed.modules() if isinstance(m, Affine)]
    assert len(affines) == 4  # one per unit: a set's channels share FC3's matrix but not the norm's scale


def test_channels_of_a_set_share_one_fc3_matrix():
    torch.manual_seed(0)
    mixer = ShareSetMixer(4, (7, 7), (7, 7), sets=2, kernels=()).eval()
    with torch.no_grad():
        mixer.gp_fc2.bias.fill_(30.0)  # gate ~1 everywhere: the output is FC3 alone
        mixer.gp_fc2.weight.zero_()
    x = torch.zeros(1, 4, 7, 7)
    x[0, 0] = x[0, 2] = torch.randn(7, 7)  # channels 0 and 2 are both in set 0
    x[0, 1] = torch.randn(7, 7)
    with torch.no_grad():
        y = mixer(x)
    torch.testing.assert_close(y[0, 0], y[0, 2])
    assert not torch.allclose(y[0, 0], y[0, 1], atol=1e-3)


def test_locality_injection_puts_the_conv_into_fc3():
    mixer = randomize_bn_(ShareSetMixer(8, (7, 7), (7, 7), sets=8, kernels=(3,))).eval()
    weight, _ = mixer.get_equivalent_weight_bias()
    with torch.no_grad():
        mixer.fc3.weight.zero_()  # FC3 alone now contributes only its BN's shift: the rest is the 3x3 conv
    local, _ = mixer.get_equivalent_weight_bias()
    # a 3x3 conv on a 7x7 map reaches at most the 3x3 neighbourhood: pixel 0 (a corner) sees 4 pixels
    assert (local[:, 0].abs() > 0).sum(dim=1).max() == 4
    assert (weight[:, 0].abs() > 0).sum(dim=1).min() > 4  # the trained FC3 reaches the whole partition


def test_the_head_norm_folds_into_the_classifier_and_pre_logits_agree():
    model = randomize_bn_(mlpvision.create_model("repmlpnet_28")).eval()
    deployed = reparameterize(model)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_head(model.forward_features(x), pre_logits=True),
            deployed.forward_head(deployed.forward_features(x), pre_logits=True),
        )
    assert not torch.equal(model.head.weight, deployed.head.weight)  # the norm went into the weights
    headless = randomize_bn_(mlpvision.create_model("repmlpnet_28", num_classes=0)).eval()
    assert_reparam_equivalent(headless, x, rtol=1e-5)  # the pooled features, in both forms


@pytest.mark.parametrize(
    "over, match",
    [
        ({"sets": (7, 128)}, "share-sets"),
        ({"partitions": (5, 7)}, "partition"),
        ({"depths": (3,)}, "one entry per stage"),
        ({"patch_size": 3}, "img_size"),
        ({"kernels": (2,)}, "odd"),
    ],
)
def test_bad_configs_are_clear_errors(over, match):
    with pytest.raises(ConfigError, match=match):
        mlpvision.create_model("repmlpnet_28", **over)
