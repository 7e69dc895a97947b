"""Losses: class-weighted cross-entropy (default), focal loss, and distillation between two networks."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor


def weighted_ce(logits: Tensor, target: Tensor, weight: Tensor | None = None, *, label_smoothing: float = 0.05) -> Tensor:
    """Cross-entropy where each sample counts ``weight`` times (inverse class frequency at its site).

    Shape:
        logits ``(B, K)``, target ``(B,)`` int64, weight ``(B,)`` or None -> scalar.
    """
    ce = F.cross_entropy(logits.float(), target, reduction="none", label_smoothing=label_smoothing)
    if weight is None:
        return ce.mean()
    w = weight.to(ce.dtype)
    return (ce * w).sum() / w.sum().clamp_min(1e-8)


def focal_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None, *, gamma: float = 2.0) -> Tensor:
    """Focal loss (Lin et al. 2017), optionally sample-weighted like :func:`weighted_ce`."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None])[:, 0]
    fl = -((1 - logp.exp()) ** gamma) * logp
    if weight is None:
        return fl.mean()
    w = weight.to(fl.dtype)
    return (fl * w).sum() / w.sum().clamp_min(1e-8)


def classification_loss(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                        kind: Literal["ce", "focal"] = "ce") -> Tensor:
    return weighted_ce(logits, target, weight) if kind == "ce" else focal_loss(logits, target, weight)


def distill_kl(student: Tensor, teacher: Tensor, temperature: float = 2.0) -> Tensor:
    """KL(teacher || student) on temperature-softened probabilities, times T^2 (Hinton et al. 2015)."""
    t = temperature
    p_t = F.softmax(teacher.float() / t, dim=1)
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), p_t, reduction="batchmean") * (t * t)


__all__ = ["classification_loss", "distill_kl", "focal_loss", "weighted_ce"]
