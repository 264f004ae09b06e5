"""Distillation: the hard and soft losses, and a student that learns what its teacher decides."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlpvision
from mlpvision.deploy import predict_images
from mlpvision.errors import ConfigError
from mlpvision.io import save_model
from mlpvision.models import create_model
from mlpvision.train import distillation_loss, train

from .helpers import TINY, tiny_cfg


def test_hard_distillation_is_cross_entropy_with_the_teachers_decision():
    logits, teacher = torch.randn(6, 5), torch.randn(6, 5)
    expected = F.cross_entropy(logits, teacher.argmax(1))
    torch.testing.assert_close(distillation_loss(logits, teacher, "hard"), expected)
    # only the decision counts: a more confident teacher gives the same loss
    torch.testing.assert_close(distillation_loss(logits, 10 * teacher + 3, "hard"), expected)


@settings(max_examples=30, deadline=None)
@given(tau=st.floats(0.5, 8.0), seed=st.integers(0, 1000))
def test_soft_distillation_is_the_scaled_kl_divergence(tau, seed):
    g = torch.Generator().manual_seed(seed)
    logits, teacher = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    p_t, log_p_s = F.softmax(teacher / tau, 1), F.log_softmax(logits / tau, 1)
    by_hand = (p_t * (p_t.log() - log_p_s)).sum(1).mean() * tau**2
    loss = distillation_loss(logits, teacher, "soft", tau)
    torch.testing.assert_close(loss, by_hand)
    assert loss >= 0
    assert distillation_loss(teacher, teacher, "soft", tau).abs() < 1e-5  # nothing to learn from oneself


def test_an_unknown_mode_or_weight_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hard or soft"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), "medium")
    for bad in ({"distill_alpha": 1.5}, {"distill_tau": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            tiny_cfg(tmp_path, teacher="t.safetensors", distill="soft", **bad).validate()


def test_a_student_taught_by_the_teacher_alone_copies_its_decisions(tmp_path):
    """A teacher that always answers class 3, weight 1 on its loss: the student learns to answer 3 whatever the
    labels say (the same recipe without the teacher scores over 90%, see test_train.py)."""
    teacher = create_model(TINY["model"], num_classes=4, **TINY["model_args"])
    with torch.no_grad():
        teacher.head.weight.zero_()
        teacher.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    path = save_model(teacher, tmp_path / "teacher.safetensors")
    cfg = tiny_cfg(tmp_path / "student", epochs=2, teacher=str(path), distill="hard", distill_alpha=1.0)
    summary = train(cfg)
    student = mlpvision.load_checkpoint(tmp_path / "student" / "model.safetensors")
    _, classes = predict_images(student, torch.rand(64, 1, 28, 28), top_k=1)
    assert (classes[:, 0] == 3).float().mean() > 0.9
    assert summary["test_top1_best"] < 50  # the labels were never learned (chance is 25%)
