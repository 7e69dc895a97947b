"""Midline metrics as torchmetrics does them: pure functions hold the maths, thin ``Metric`` classes accumulate.

* mean radial error (MRE, mm): Euclidean landmark error averaged over landmarks and slices;
* success detection rate SDR@2mm / SDR@4mm: share of landmarks within 2 / 4 mm;
* absolute midline-shift error (mm);
* detection of shift >= 5 mm (the usual clinical threshold for significant mass effect): sensitivity and
  specificity of ``|predicted shift| >= 5``, AUROC of ``|predicted shift|`` as the score.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities import dim_zero_cat

SHIFT_THRESHOLD_MM = 5.0


def _radial_errors(pred_mm: Tensor, true_mm: Tensor) -> Tensor:
    """Per-landmark Euclidean errors. Shape: ``(B, K, 2)`` mm -> ``(B, K)``."""
    return torch.linalg.norm(pred_mm.double() - true_mm.double(), dim=-1)


def mean_radial_error(pred_mm: Tensor, true_mm: Tensor) -> Tensor:
    """MRE in mm over all landmarks of all samples."""
    return _radial_errors(pred_mm, true_mm).mean()


def success_detection_rate(errors_mm: Tensor, radius_mm: float) -> Tensor:
    """Share of landmark errors ``<= radius_mm``."""
    return (errors_mm.double() <= radius_mm).double().mean()


def shift_detection(pred_shift: Tensor, true_shift: Tensor, threshold: float = SHIFT_THRESHOLD_MM) -> dict[str, float]:
    """Sensitivity, specificity and AUROC of detecting ``|shift| >= threshold`` (NaN where a class is absent)."""
    pos = true_shift.abs() >= threshold
    called = pred_shift.abs() >= threshold
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    sens = float((called & pos).sum()) / n_pos if n_pos else math.nan
    spec = float((~called & ~pos).sum()) / n_neg if n_neg else math.nan
    auroc = float(binary_auroc(pred_shift.abs().double(), pos.long())) if n_pos and n_neg else math.nan
    return {"shift5_sensitivity": sens, "shift5_specificity": spec, "shift5_auroc": auroc}


def midline_metrics(pred_mm: Tensor, true_mm: Tensor, pred_shift: Tensor, true_shift: Tensor) -> dict[str, float]:
    """Every midline metric at once (the functional form of :class:`MidlineMetrics`)."""
    err = _radial_errors(pred_mm, true_mm)
    out = {"mre_mm": float(err.mean()), "sdr_2mm": float(success_detection_rate(err, 2.0)),
           "sdr_4mm": float(success_detection_rate(err, 4.0)),
           "shift_abs_error_mm": float((pred_shift.double() - true_shift.double()).abs().mean())}
    out.update(shift_detection(pred_shift, true_shift))
    return out


class MeanRadialError(Metric):
    """Mean radial error in mm (lower is better).

    Example:
        >>> m = MeanRadialError(); m.update(torch.zeros(1, 3, 2), torch.ones(1, 3, 2)); round(float(m.compute()), 4)
        1.4142
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred_mm: Tensor, true_mm: Tensor) -> None:
        e = _radial_errors(pred_mm, true_mm)
        self.total += e.sum()
        self.count += e.numel()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class MidlineMetrics(Metric):
    """All midline metrics: MRE, SDR@2/4 mm, shift error, shift >= 5 mm sensitivity / specificity / AUROC.

    ``update(pred_mm, true_mm, pred_shift, true_shift)`` with ``(B, 3, 2)`` landmark positions in mm and ``(B,)``
    signed shifts in mm; ``compute()`` returns a dict of floats.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("pred_mm", "true_mm", "pred_shift", "true_shift"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, pred_mm: Tensor, true_mm: Tensor, pred_shift: Tensor, true_shift: Tensor) -> None:
        self.pred_mm.append(pred_mm.double())  # type: ignore[attr-defined]
        self.true_mm.append(true_mm.double())  # type: ignore[attr-defined]
        self.pred_shift.append(pred_shift.double().reshape(-1))  # type: ignore[attr-defined]
        self.true_shift.append(true_shift.double().reshape(-1))  # type: ignore[attr-defined]

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        return midline_metrics(dim_zero_cat(self.pred_mm), dim_zero_cat(self.true_mm),  # type: ignore[attr-defined]
                               dim_zero_cat(self.pred_shift), dim_zero_cat(self.true_shift))  # type: ignore[attr-defined]
