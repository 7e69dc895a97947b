"""Mediastinal mass classification on chest CT (built-in sites are SYNTHETIC).

Example:
    >>> from medzoo.tasks import mediastinum
    >>> clf = mediastinum.pretrained()                                                  # doctest: +SKIP
    >>> res = clf.predict(volume_hu, spacing_mm=(z, y, x), bbox=(z0, y0, x0, z1, y1, x1))  # doctest: +SKIP
    >>> res.label, res.probabilities                                                   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from medzoo.tasks.mediastinum.classifier import MediastinumClassifier, Prediction
from medzoo.tasks.mediastinum.generator import CLASSES, SITES, generate_case
from medzoo.tasks.mediastinum.metric import MediastinumMetrics
from medzoo.tasks.mediastinum.preprocess import Preprocess
from medzoo.tasks.mediastinum.task import MediastinumTask
from medzoo.tasks.mediastinum.volume_io import read_volume, write_nifti

WEIGHTS_NAME = "mediastinum"

__all__ = ["CLASSES", "SITES", "MediastinumClassifier", "MediastinumMetrics", "MediastinumTask", "Prediction",
           "Preprocess", "generate_case", "load", "pretrained", "read_volume", "write_nifti"]


def _task() -> MediastinumTask:
    from medzoo import get_task

    return get_task("mediastinum")  # type: ignore[return-value]


def pretrained(name: str = WEIGHTS_NAME) -> MediastinumClassifier:
    """The shipped classifier (sha256-checked, trained on SYNTHETIC sites only).

    Raises:
        WeightsError: the weights file is missing or corrupt.
    """
    from medzoo.weights import load_pretrained

    return load_pretrained(_task(), name)  # type: ignore[return-value]


def load(path: str | Path) -> MediastinumClassifier:
    """A classifier from a medzoo model file (e.g. one written by ``medzoo train`` or a relay)."""
    from medzoo.core import load_model

    return load_model(path, expect_task="mediastinum")  # type: ignore[return-value]
