"""Fundus metrics, per image (the literature's convention: compute per image, then average).

Vessels (only pixels inside the field of view count): Dice (= F1), sensitivity, specificity, accuracy at the
model's threshold, and the threshold-free ROC AUC (torchmetrics ``binary_auroc``).
Disc/cup: Dice of the optic disc (including the cup), Dice of the cup, and the absolute error of the vertical
cup-to-disc ratio (vCDR = cup height / disc height in pixel rows).

As torchmetrics does it: pure functions hold the maths (:func:`vessel_metrics`, :func:`disc_metrics`); the thin
``Metric`` classes :class:`VesselMetrics` and :class:`DiscCupMetrics` accumulate per-image values (synchronised
across processes under torch.distributed) and return their means.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

VESSEL_KEYS = ("dice", "sensitivity", "specificity", "accuracy", "auc")
DISC_KEYS = ("dice_disc", "dice_cup", "dice_mean", "vcdr_abs_err")


def _confusion(pred: Tensor, target: Tensor) -> tuple[float, float, float, float]:
    tp = float((pred & target).sum())
    fp = float((pred & ~target).sum())
    fn = float((~pred & target).sum())
    tn = float((~pred & ~target).sum())
    return tp, fp, fn, tn


def vessel_metrics(prob: Tensor | np.ndarray, target: Tensor | np.ndarray, fov: Tensor | np.ndarray | None = None,
                   *, threshold: float = 0.5) -> dict[str, float]:
    """Metrics of one image's vessel probabilities, inside the FOV.

    Args:
        prob: probabilities in [0, 1].
        target: {0, 1} ground truth.
        fov: {0, 1} field of view (all pixels when None).
        threshold: ``prob >= threshold`` is a vessel.

    Shape:
        all inputs ``(H, W)`` (or any equal shapes).

    Returns:
        ``{"dice", "sensitivity", "specificity", "accuracy", "auc"}``; Dice is 1 when both prediction and
        target are empty; AUC is NaN when the FOV holds only one class.

    Example:
        >>> import numpy as np
        >>> t = np.zeros((8, 8)); t[2:4] = 1
        >>> vessel_metrics(t * 0.9, t)["dice"]
        1.0
    """
    from torchmetrics.functional.classification import binary_auroc

    p = torch.as_tensor(np.asarray(prob) if not torch.is_tensor(prob) else prob).float().flatten()
    t = torch.as_tensor(np.asarray(target) if not torch.is_tensor(target) else target).flatten() > 0.5
    if fov is not None:
        f = torch.as_tensor(np.asarray(fov) if not torch.is_tensor(fov) else fov).flatten() > 0.5
        p, t = p[f], t[f]
    pred = p >= threshold
    tp, fp, fn, tn = _confusion(pred, t)
    dice = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    acc = (tp + tn) / max(1.0, tp + fp + fn + tn)
    auc = float(binary_auroc(p, t.long())) if 0 < int(t.sum()) < t.numel() else float("nan")
    return {"dice": dice, "sensitivity": sens, "specificity": spec, "accuracy": acc, "auc": auc}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks (1 when both are empty)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def vcdr(labels: np.ndarray) -> float:
    """Vertical cup-to-disc ratio of a label map (0 bg, 1 disc outside cup, 2 cup): the number of rows the cup
    spans over the number of rows the disc (labels >= 1) spans; NaN when there is no disc.

    Example:
        >>> import numpy as np
        >>> lab = np.zeros((20, 20), np.uint8); lab[2:12, 5:15] = 1; lab[4:9, 8:12] = 2
        >>> vcdr(lab)
        0.5
    """
    lab = np.asarray(labels)
    disc_rows = np.flatnonzero((lab >= 1).any(axis=1))
    if disc_rows.size == 0:
        return float("nan")
    cup_rows = np.flatnonzero((lab == 2).any(axis=1))
    cup_h = 0 if cup_rows.size == 0 else cup_rows[-1] - cup_rows[0] + 1
    return float(cup_h / (disc_rows[-1] - disc_rows[0] + 1))


def target_labels(target: np.ndarray) -> np.ndarray:
    """Label map (0/1/2) from a 2-channel {disc, cup} target (``2 x H x W`` or ``H x W x 2``)."""
    t = np.asarray(target)
    if t.shape[0] == 2 and t.ndim == 3:
        t = np.moveaxis(t, 0, -1)
    disc, cup = t[..., 0] > 0.5, t[..., 1] > 0.5
    lab = np.zeros(disc.shape, np.uint8)
    lab[disc | cup] = 1
    lab[cup] = 2
    return lab


def disc_metrics(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Disc/cup metrics of one image from two label maps (0 bg, 1 disc outside cup, 2 cup).

    Returns:
        ``{"dice_disc", "dice_cup", "dice_mean", "vcdr_abs_err"}`` (vCDR error NaN if either has no disc).
    """
    dd = dice(pred_labels >= 1, true_labels >= 1)
    dc = dice(pred_labels == 2, true_labels == 2)
    return {"dice_disc": dd, "dice_cup": dc, "dice_mean": (dd + dc) / 2,
            "vcdr_abs_err": abs(vcdr(pred_labels) - vcdr(true_labels))}


def mean_metrics(per_sample: dict[str, list[float]]) -> dict[str, float]:
    """Mean of each metric over samples, ignoring NaN (NaN if all are NaN)."""
    out = {}
    for k, v in per_sample.items():
        a = np.asarray(v, dtype=np.float64)
        out[k] = float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")
    return out


class _PerImageMean(Metric):
    """Accumulates one value per image and metric key; ``compute()`` returns the NaN-ignoring means."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    keys: tuple[str, ...] = ()

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        for k in self.keys:
            self.add_state(k, default=[], dist_reduce_fx="cat")

    def _add(self, values: dict[str, float]) -> None:
        for k in self.keys:
            getattr(self, k).append(torch.tensor([values[k]], dtype=torch.float64, device=self.device))

    def per_image(self) -> dict[str, list[float]]:
        """The accumulated per-image values (after synchronisation)."""
        return {k: dim_zero_cat(getattr(self, k)).tolist() if getattr(self, k) else [] for k in self.keys}

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        return mean_metrics(self.per_image())


class VesselMetrics(_PerImageMean):
    """Per-image vessel metrics inside the FOV (:func:`vessel_metrics`), averaged over images.

    Example:
        >>> m = VesselMetrics(threshold=0.5)
        >>> t = torch.zeros(8, 8); t[2:4] = 1
        >>> m.update(t * 0.9, t); m.compute()["dice"]
        1.0
    """

    keys = VESSEL_KEYS

    def __init__(self, threshold: float = 0.5, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold

    def update(self, prob: Tensor, target: Tensor, fov: Tensor | None = None) -> None:  # type: ignore[override]
        """One image: ``prob``, ``target`` (and ``fov``) of equal shape ``(H, W)``."""
        self._add(vessel_metrics(prob.detach().cpu(), target.detach().cpu(), None if fov is None else fov.detach().cpu(),
                                 threshold=self.threshold))


class DiscCupMetrics(_PerImageMean):
    """Per-image Dice disc, Dice cup, their mean and vCDR absolute error (:func:`disc_metrics`), averaged.

    Example:
        >>> lab = np.zeros((20, 20), np.uint8); lab[2:12, 5:15] = 1; lab[4:9, 8:12] = 2
        >>> m = DiscCupMetrics(); m.update(lab, lab); m.compute()["vcdr_abs_err"]
        0.0
    """

    keys = DISC_KEYS

    def update(self, pred_labels: np.ndarray, true_labels: np.ndarray) -> None:  # type: ignore[override]
        """One image: two ``H x W`` label maps (0 background, 1 disc outside the cup, 2 cup)."""
        self._add(disc_metrics(np.asarray(pred_labels), np.asarray(true_labels)))
