"""Fundus photography: retinal vessel segmentation and optic disc/cup segmentation with vertical CDR.

Example:
    >>> from medzoo.tasks import fundus                       # doctest: +SKIP
    >>> v = fundus.pretrained("vessels")                       # doctest: +SKIP
    >>> mask = v.predict(rgb)          # H x W uint8, 1 = vessel  # doctest: +SKIP
    >>> d = fundus.pretrained("disc")                          # doctest: +SKIP
    >>> labels = d.predict(rgb); d.vcdr(labels)  # 0 bg / 1 disc / 2 cup  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medzoo.tasks.fundus import dataset as datasets
from medzoo.tasks.fundus import loss
from medzoo.tasks.fundus import metric as metrics
from medzoo.tasks.fundus.metric import vcdr
from medzoo.tasks.fundus.model import FundusModel
from medzoo.tasks.fundus.task import DiscCupTask, VesselTask

__all__ = ["DiscCupTask", "FundusModel", "VesselTask", "build_model", "datasets", "load", "loss", "metrics",
           "pretrained", "vcdr"]

_PRETRAINED = {"vessels": ("fundus-vessels", "fundus-vessels"), "disc": ("fundus-disc", "fundus-disc")}


def _task(name: str) -> Any:
    from medzoo import get_task

    return get_task(name)


def pretrained(name: str = "vessels") -> FundusModel:
    """Shipped weights, sha256-checked: ``"vessels"`` (weights/fundus-vessels) or ``"disc"`` (weights/fundus-disc).

    Raises:
        ValueError: unknown name.
        WeightsError: the file is missing or does not match its model card's sha256.

    Example:
        >>> from medzoo.tasks import fundus          # doctest: +SKIP
        >>> fundus.pretrained("vessels").predict(rgb)  # doctest: +SKIP
    """
    from medzoo.weights import load_pretrained

    if name not in _PRETRAINED:
        raise ValueError(f"unknown fundus weights {name!r}; choose one of {', '.join(_PRETRAINED)}")
    task_name, weights = _PRETRAINED[name]
    return load_pretrained(_task(task_name), weights)  # type: ignore[return-value]


def load(path: str | Path) -> FundusModel:
    """A fundus model saved with ``FundusModel.save`` (or by ``medzoo train``) from a ``.safetensors`` file.

    Raises:
        WeightsError: not a medzoo model file, or a model of a non-fundus task.
    """
    from medzoo.core import load_model
    from medzoo.errors import WeightsError

    m = load_model(path)
    if not isinstance(m, FundusModel):
        raise WeightsError(f"{path}: a {m.task.spec.name!r} model, not a fundus one")
    return m


def build_model(task: str = "vessels", **arch: Any) -> Any:
    """A fresh (random-init) fundus U-Net: ``task`` ``"vessels"`` (1 in, 1 out) or ``"disc"`` (3 in, 2 out)."""
    return (VesselTask() if task == "vessels" else DiscCupTask()).build_model(**arch)
