"""The interface every model in the zoo shares.

``forward_features(x)`` returns the backbone output, ``forward_head(x, pre_logits=False)`` pools it and applies
the classifier, ``forward(x)`` chains the two, ``reset_classifier(n)`` swaps the head. Attributes:
``num_classes``, ``num_features``, ``in_chans``, ``img_size``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ImageClassifier", "make_head"]


def make_head(num_features: int, num_classes: int, zero_init: bool = True) -> nn.Module:
    """A linear classifier (zero-initialised by default, so training starts from uniform predictions),
    or an identity when ``num_classes == 0``."""
    if num_classes <= 0:
        return nn.Identity()
    head = nn.Linear(num_features, num_classes)
    if zero_init:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    return head


class ImageClassifier(nn.Module):
    """Mixin with the shared half of the interface; subclasses define the two ``forward_*`` methods."""

    head_name = "head"  # attribute holding the classifier (torchvision's ResNet calls it ``fc``)
    fixed_input_size = True  # False for fully convolutional models, which take any input size
    num_classes: int
    num_features: int
    in_chans: int
    img_size: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the classifier by a new zero-initialised one with ``num_classes`` outputs (0: none)."""
        self.num_classes = num_classes
        head = make_head(self.num_features, num_classes)
        old = self.get_classifier()
        p = next(old.parameters(), None)
        if p is not None:
            head.to(device=p.device, dtype=p.dtype)
        setattr(self, self.head_name, head)
