"""Classification metrics from torchmetrics: macro AUROC, balanced accuracy, per-class sensitivity and
specificity, confusion matrix.

Macro AUROC averages the one-vs-rest AUROC of the classes that have both positives and negatives in the set
(a class absent from a test set has no defined AUROC; it is left out and ``auroc_classes`` says how many were
averaged). Balanced accuracy is the mean sensitivity over the classes present.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_auroc, multiclass_confusion_matrix

from medzoo.tasks.mediastinum.generator import CLASSES


def classification_metrics(probs: Tensor, target: Tensor, classes: Sequence[str] = CLASSES) -> dict[str, float]:
    """All metrics as a flat dict of floats (NaN where undefined).

    Args:
        probs: ``(N, K)`` class probabilities.
        target: ``(N,)`` true class indices.
        classes: class names, for the per-class keys (``sens_<c>``, ``spec_<c>``, ``auroc_<c>``).

    Returns:
        ``auroc_macro``, ``auroc_classes``, ``balanced_accuracy``, ``accuracy``, and per class ``auroc_<c>``,
        ``sens_<c>``, ``spec_<c>`` (NaN when the class is absent), ``n_<c>``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]); t = torch.tensor([0, 1, 1])
        >>> classification_metrics(p, t, ["a", "b"])["auroc_macro"]
        1.0
    """
    k = len(classes)
    probs, target = probs.float(), target.long()
    cm = multiclass_confusion_matrix(probs.argmax(1), target, num_classes=k).double()
    pos = cm.sum(1)  # true count per class
    tp = cm.diag()
    fp = cm.sum(0) - tp
    neg = cm.sum() - pos
    sens = torch.where(pos > 0, tp / pos.clamp_min(1), torch.nan)
    spec = torch.where(neg > 0, (neg - fp) / neg.clamp_min(1), torch.nan)
    with warnings.catch_warnings():  # absent classes are handled below (NaN, left out of the macro mean)
        warnings.filterwarnings("ignore", message=".*(positive|negative) samples.*")
        per_auc = multiclass_auroc(probs, target, num_classes=k, average=None, thresholds=None).double()
    defined = (pos > 0) & (neg > 0)
    per_auc = torch.where(defined, per_auc, torch.nan)
    out: dict[str, float] = {
        "auroc_macro": float(per_auc[defined].mean()) if defined.any() else float("nan"),
        "auroc_classes": float(defined.sum()),
        "balanced_accuracy": float(sens[pos > 0].mean()) if (pos > 0).any() else float("nan"),
        "accuracy": float(tp.sum() / cm.sum().clamp_min(1)),
    }
    for i, c in enumerate(classes):
        out[f"auroc_{c}"] = float(per_auc[i])
        out[f"sens_{c}"] = float(sens[i])
        out[f"spec_{c}"] = float(spec[i])
        out[f"n_{c}"] = float(pos[i])
    return out


def confusion_matrix(probs: Tensor, target: Tensor, num_classes: int = len(CLASSES)) -> list[list[int]]:
    """Rows: true class, columns: predicted class (argmax), as nested int lists."""
    cm = multiclass_confusion_matrix(probs.argmax(1), target.long(), num_classes=num_classes)
    return [[int(v) for v in row] for row in cm]


class MediastinumMetrics(Metric):
    """Accumulate probabilities and targets over batches; ``compute()`` returns :func:`classification_metrics`
    plus ``"confusion"`` (a nested list)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, classes: Sequence[str] = CLASSES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(classes)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, target: Tensor) -> None:
        self.probs.append(probs.detach().float())  # type: ignore[attr-defined, union-attr]
        self.target.append(target.detach().long())  # type: ignore[attr-defined, union-attr]

    def compute(self) -> dict[str, Any]:
        p = torch.cat(self.probs)  # type: ignore[attr-defined, arg-type]
        t = torch.cat(self.target)  # type: ignore[attr-defined, arg-type]
        out: dict[str, Any] = dict(classification_metrics(p, t, self.classes))
        out["confusion"] = confusion_matrix(p, t, len(self.classes))
        return out
