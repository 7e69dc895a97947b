"""The trained classifier a user calls: ``predict(volume_hu, spacing_mm, bbox=... | mask=...)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medzoo.core import TaskModel
from medzoo.tasks.mediastinum.preprocess import (
    box_from_inputs,
    check_hounsfield,
    check_spacing,
    check_volume,
    crop_hu,
    to_channels,
)
from medzoo.tasks.mediastinum.volume_io import read_volume


@dataclass(frozen=True)
class Prediction:
    """The classifier's answer for one lesion.

    Attributes:
        label: the most probable class.
        probabilities: class -> probability (sums to 1).
        bbox: the lesion box used, ``(z0, y0, x0, z1, y1, x1)`` voxel indices, half-open.
        spacing_mm: ``(z, y, x)`` spacing used.
        synthetic: True when the model was trained on synthetic data only.
    """

    label: str
    probabilities: dict[str, float]
    bbox: tuple[int, int, int, int, int, int]
    spacing_mm: tuple[float, float, float]
    synthetic: bool

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "probabilities": self.probabilities, "bbox": list(self.bbox),
                               "spacing_mm": list(self.spacing_mm), "synthetic": self.synthetic}
        if self.synthetic:
            out["note"] = "model trained on SYNTHETIC data only; not for clinical use"
        return out


class MediastinumClassifier(TaskModel):
    """A mediastinal-mass classifier bound to :class:`~medzoo.tasks.mediastinum.MediastinumTask`.

    Example:
        >>> from medzoo.tasks import mediastinum
        >>> from medzoo.tasks.mediastinum.generator import generate_case
        >>> clf = mediastinum.pretrained()
        >>> case = generate_case("synth-x", seed=0)
        >>> res = clf.predict(case.volume, spacing_mm=case.spacing, bbox=case.bbox)
        >>> abs(sum(res.probabilities.values()) - 1) < 1e-6
        True
    """

    @property
    def classes(self) -> tuple[str, ...]:
        return self.task.spec.classes

    def predict(self, volume_hu: Any, spacing_mm: Sequence[float] | None = None, *, bbox: Sequence[int] | None = None,
                mask: Any = None, path: str | Path | None = None) -> Prediction:
        """Classify the mass in ``bbox`` (or ``mask``) of a CT volume.

        Args:
            volume_hu: ``(D, H, W)`` array in Hounsfield units, axial slices along axis 0 (inferior -> superior),
                anterior at the top row, the patient's right on the image's left.
            spacing_mm: ``(z, y, x)`` voxel spacing in mm.
            bbox: ``(z0, y0, x0, z1, y1, x1)`` voxel indices of the mass, half-open.
            mask: alternatively, a ``(D, H, W)`` lesion mask (its bounding box is used).
            path: the source file, only to name it in errors.

        Returns:
            A :class:`Prediction` (``.label``, ``.probabilities``).

        Raises:
            InputError: not a 3-D volume, NaN/inf voxels, missing or non-positive spacing, a box outside the
                volume, an empty or mis-sized mask; values that are not a chest CT in HU (normalised, constant,
                0..255 like an 8-bit export, or no air below -500 HU, as DICOM stored values never rescaled).
        """
        vol = check_volume(volume_hu, path, hu=False)
        spacing = check_spacing(spacing_mm, path)
        box = box_from_inputs(vol.shape, bbox, mask, path)
        check_hounsfield(vol, path)  # after the arguments: a wrong call is reported as such first
        cfg = self.net.preprocess
        x = torch.from_numpy(to_channels(crop_hu(vol, spacing, box, cfg), cfg))[None].to(self.device)
        with torch.inference_mode():
            p = torch.softmax(self.net(x).float(), dim=1)[0].cpu().double()
        p = p / p.sum()
        probs = {c: float(v) for c, v in zip(self.classes, p)}
        return Prediction(self.classes[int(p.argmax())], probs, box, spacing,
                          bool(self.meta.get("synthetic", self.task.spec.synthetic)))

    def predict_path(self, path: str | Path, *, bbox: Sequence[int] | None = None, mask: Any = None,
                     spacing_mm: Sequence[float] | None = None) -> Prediction:
        """Read a NIfTI file or DICOM series folder and classify the mass in ``bbox`` / ``mask``.

        ``mask`` may be an array or a path to a mask volume (NIfTI) in the same geometry. ``spacing_mm``
        overrides the spacing in the file header.
        """
        vol, sp = read_volume(path)
        if mask is not None and isinstance(mask, (str, Path)):
            mask, _ = read_volume(mask)
        return self.predict(vol, spacing_mm if spacing_mm is not None else sp, bbox=bbox, mask=mask, path=path)

