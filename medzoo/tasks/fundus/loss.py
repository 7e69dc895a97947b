"""Training losses: soft Dice + binary cross-entropy per output channel, and the distillation loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dice_bce_loss(logits: Tensor, target: Tensor, *, bce_weight: float = 1.0, eps: float = 1.0) -> Tensor:
    """Mean over channels of (1 - soft Dice) plus ``bce_weight`` x BCE, Dice summed over the whole batch.

    Args:
        logits: raw network outputs.
        target: {0, 1} float, same shape.

    Shape:
        logits, target: ``(B, C, H, W)``.

    Returns:
        a scalar tensor.

    Example:
        >>> import torch
        >>> t = torch.zeros(1, 1, 8, 8); t[..., 2:5, 2:5] = 1
        >>> float(dice_bce_loss(t * 20 - 10, t)) < 0.05
        True
    """
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dims = (0, 2, 3)
    inter = (p * target).sum(dims)
    dice = (2 * inter + eps) / (p.sum(dims) + target.sum(dims) + eps)
    return (1 - dice).mean() + bce_weight * bce


class DiceBCELoss(nn.Module):
    """Module form of :func:`dice_bce_loss`."""

    def __init__(self, bce_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = bce_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return dice_bce_loss(logits, target, bce_weight=self.bce_weight)


def sigmoid_distill_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0, *,
                         weight: Tensor | None = None) -> Tensor:
    """Knowledge distillation for per-pixel sigmoid outputs: BCE of the student against the teacher's
    temperature-softened probabilities, times ``temperature**2`` (Hinton et al.'s gradient scaling).

    ``weight`` (same shape, e.g. a 0/1 mask) weighs each output; the mean is still over all outputs, so a kept
    pixel pulls as hard as without the mask.

    Example:
        >>> import torch
        >>> s, t = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 4.0)
        >>> w = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
        >>> bool(torch.isclose(sigmoid_distill_loss(s, t, weight=w) * 4, sigmoid_distill_loss(s, t)))
        True
    """
    soft = torch.sigmoid(teacher_logits.detach() / temperature)
    return F.binary_cross_entropy_with_logits(student_logits / temperature, soft, weight=weight) * temperature**2


def teacher_agrees(teacher_logits: Tensor, target: Tensor) -> Tensor:
    """1 where the teacher's thresholded sigmoid output (p >= 0.5) equals the {0, 1} label, else 0 (float, the
    outputs' shape)."""
    return ((teacher_logits.detach() >= 0) == (target >= 0.5)).to(teacher_logits.dtype)
