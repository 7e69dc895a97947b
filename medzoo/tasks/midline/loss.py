"""Landmark loss: radial error in mm + midline-shift error in mm + a DSNT heatmap regulariser.

* mean Euclidean landmark error in mm (what the benchmark reports as MRE);
* absolute error of the shift computed from the three predicted points (the clinical quantity, so the network
  is told that the septum's lateral position matters most);
* Jensen-Shannon divergence between each predicted map and a Gaussian at the target (DSNT's regulariser, keeps
  maps unimodal so the soft-argmax is not pulled by distant mass).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medzoo.tasks.midline.geometry import shift_mm_torch
from medzoo.tasks.midline.model import dsnt, gaussian_heatmaps, spatial_softmax


def norm_to_mm(points_n: Tensor, size: int, spacing_mm: float) -> Tensor:
    """Normalised coordinates -> mm on the grid (isotropic)."""
    return points_n * (size * spacing_mm / 2)


def norm_to_px(points_n: Tensor, size: int) -> Tensor:
    return ((points_n + 1) * size - 1) / 2


def js_divergence(p: Tensor, q: Tensor, eps: float = 1e-10) -> Tensor:
    """Per-map Jensen-Shannon divergence of two ``(B, K, H, W)`` distributions -> ``(B, K)``."""
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (torch.log(a + eps) - torch.log(b + eps))).sum(dim=(-2, -1))  # noqa: E731
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


class MidlineLoss(nn.Module):
    """Loss of one batch.

    Args:
        size: grid side in pixels; spacing_mm: grid pixel size.
        shift_weight: weight of the absolute shift error (mm).
        js_weight: weight of the heatmap regulariser; sigma_px: its Gaussian's sigma.

    Shape:
        logits ``(B, K, H, W)``, target ``(B, K, 2)`` normalised (x, y) -> scalar.

    Example:
        >>> loss = MidlineLoss(64, 1.6)
        >>> float(loss(torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 2))) > 0
        True
    """

    def __init__(self, size: int, spacing_mm: float, *, shift_weight: float = 0.5, js_weight: float = 5.0,
                 sigma_px: float = 1.5) -> None:
        super().__init__()
        self.size, self.spacing_mm = size, spacing_mm
        self.shift_weight, self.js_weight, self.sigma_px = shift_weight, js_weight, sigma_px

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        prob = spatial_softmax(logits)
        pred = dsnt(prob)
        tgt = target.float()
        radial = torch.linalg.norm(norm_to_mm(pred - tgt, self.size, self.spacing_mm), dim=-1).mean()
        sp = torch.tensor([self.spacing_mm, self.spacing_mm], device=pred.device)
        shift_err = (shift_mm_torch(norm_to_px(pred, self.size), sp) - shift_mm_torch(norm_to_px(tgt, self.size), sp)).abs().mean()
        js = js_divergence(prob, gaussian_heatmaps(tgt, logits.shape[-1], self.sigma_px)).mean()
        return radial + self.shift_weight * shift_err + self.js_weight * js
