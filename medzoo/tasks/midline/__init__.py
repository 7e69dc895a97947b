"""Brain midline landmarks and midline shift on axial head CT (models trained on SYNTHETIC data).

Example:
    >>> from medzoo.tasks import midline                                # doctest: +SKIP
    >>> model = midline.pretrained()                                    # doctest: +SKIP
    >>> pts = model.predict(slice_hu, spacing_mm=(row_mm, col_mm))      # doctest: +SKIP
    >>> shift = model.midline_shift_mm(slice_hu, spacing_mm=(row_mm, col_mm))  # doctest: +SKIP
    >>> res = model.predict_path("head.nii.gz", slice_index=70)         # doctest: +SKIP

``spacing_mm`` (the slice's pixel size, e.g. DICOM PixelSpacing) is required for arrays: it decides the resampling.
"""

from __future__ import annotations

from pathlib import Path

from medzoo.tasks.midline.generator import SITES, generate
from medzoo.tasks.midline.geometry import LANDMARKS, midline_shift_mm
from medzoo.tasks.midline.loss import MidlineLoss
from medzoo.tasks.midline.metric import MidlineMetrics
from medzoo.tasks.midline.model import MidlineNet
from medzoo.tasks.midline.predict import MidlineModel, MidlineResult
from medzoo.tasks.midline.task import MidlineTask

__all__ = ["LANDMARKS", "SITES", "MidlineLoss", "MidlineMetrics", "MidlineModel", "MidlineNet", "MidlineResult",
           "MidlineTask", "generate", "load", "midline_shift_mm", "pretrained"]


def _task() -> MidlineTask:
    from medzoo import get_task

    return get_task("midline")  # type: ignore[return-value]


def pretrained(name: str = "midline") -> MidlineModel:
    """The shipped weights (sha256-checked, trained on SYNTHETIC data) as a :class:`MidlineModel`.

    Raises:
        WeightsError: the weights file is missing or does not match its model card.
    """
    from medzoo.weights import load_pretrained

    return load_pretrained(_task(), name)  # type: ignore[return-value]


def load(path: str | Path) -> MidlineModel:
    """A midline model file (``.safetensors`` written by ``TaskModel.save`` or a relay) as a :class:`MidlineModel`."""
    from medzoo.core import load_model

    return load_model(path, expect_task="midline")  # type: ignore[return-value]
