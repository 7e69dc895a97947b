"""The user-facing model: ``predict`` a slice of any size and spacing, the midline shift, files in, JSON/PNG out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medzoo.core import TaskModel
from medzoo.tasks.midline import preprocess as pp
from medzoo.tasks.midline.geometry import LANDMARKS, midline_shift_mm
from medzoo.tasks.midline.model import decode


@torch.no_grad()
def predict_grid(net: nn.Module, images: Tensor, *, tta: bool = True) -> Tensor:
    """Normalised ``(B, 3, 2)`` landmarks for grid images ``(B, C, S, S)``; ``tta`` averages with the mirrored image
    (the three landmarks are midline structures, so a left-right mirror keeps their identity)."""
    pts = decode(net(images))
    if tta:
        flipped = decode(net(torch.flip(images, dims=[-1])))
        flipped[..., 0] = -flipped[..., 0]
        pts = 0.5 * (pts + flipped)
    return pts


@dataclass(frozen=True)
class MidlineResult:
    """Prediction for one slice: ``points`` (3, 2) (x, y) input pixels, ``shift_mm`` (+ = toward the patient's left)."""

    points: np.ndarray
    shift_mm: float
    spacing_mm: tuple[float, float]
    source: str = ""
    slice_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "slice_index": self.slice_index, "spacing_mm": list(self.spacing_mm),
                "landmarks": {n: [float(x), float(y)] for n, (x, y) in zip(LANDMARKS, self.points)},
                "midline_shift_mm": self.shift_mm,
                "conventions": "(x, y) pixels of the slice in radiological display (row 0 anterior, column 0 = patient's "
                               "right); shift = signed perpendicular distance of the septum from the falx line, "
                               "positive toward the patient's left"}


class MidlineModel(TaskModel):
    """A midline network bound to its task (what :func:`medzoo.tasks.midline.pretrained` returns).

    Example:
        >>> from medzoo.tasks import midline                                  # doctest: +SKIP
        >>> model = midline.pretrained()                                      # doctest: +SKIP
        >>> pts = model.predict(slice_hu, spacing_mm=(0.9, 0.86))             # doctest: +SKIP
        >>> shift = model.midline_shift_mm(slice_hu, spacing_mm=(0.9, 0.86))  # doctest: +SKIP
    """

    tta: bool = True

    @property
    def grid(self) -> tuple[int, float]:
        return int(getattr(self.net, "size", 128)), float(getattr(self.net, "spacing_mm", 1.6))

    def _run(self, slice_hu: np.ndarray, spacing_mm: float | Sequence[float] | None, *, slice_index: int | None,
             assume_hu: bool, window: tuple[float, float] | None, path: str | Path | None = None) -> tuple[np.ndarray, tuple[float, float]]:
        from medzoo.errors import InputError

        if spacing_mm is None:
            raise InputError("pass spacing_mm, the slice's pixel size in mm (a float or (row_mm, col_mm), e.g. DICOM "
                             "PixelSpacing or the NIfTI header's zooms); there is no default because the spacing decides "
                             "how the slice is resampled to the model's grid and the mm of the shift (a wrong one can "
                             "even flip its sign). Files: predict_path reads it from the header", path)
        a = np.asarray(slice_hu)
        if slice_index is not None:
            if a.ndim != 3:
                raise InputError(f"slice_index given but the array has shape {a.shape}, not (slices, H, W)", path)
            if not -a.shape[0] <= slice_index < a.shape[0]:
                raise InputError(f"slice_index {slice_index} out of range for {a.shape[0]} slices", path)
            a = a[slice_index]
        hu, sp = pp.check_slice(a, spacing_mm, assume_hu=assume_hu, window=window, path=path)
        size, gsp = self.grid
        g, A = pp.to_grid(hu, sp, size, gsp)
        x = torch.from_numpy(pp.windows(g))[None].to(self.device)
        pts_n = predict_grid(self.net, x, tta=self.tta)[0].double().cpu().numpy()
        return pp.grid_to_input(pp.from_norm(pts_n, size), A), sp

    def predict(self, slice_hu: np.ndarray, spacing_mm: float | Sequence[float] | None = None, *, slice_index: int | None = None,
                assume_hu: bool = False, window: tuple[float, float] | None = None) -> np.ndarray:
        """Landmarks of one axial slice at the level of the lateral ventricles.

        Args:
            slice_hu: ``(H, W)`` slice in HU, radiological display (anterior at the top, patient's right on the
                image left); any size. A ``(Z, H, W)`` volume needs ``slice_index``.
            spacing_mm: pixel size of ``slice_hu``, a float or ``(row_mm, col_mm)``: required (an InputError
                when missing). Take it from the scan (DICOM PixelSpacing, NIfTI zooms); it decides the resampling,
                so a wrong value gives wrong landmarks and shift, not just a rescaled one.
            slice_index: axial slice of a 3-D array.
            assume_hu: accept values that do not look like HU (no 0..255 check).
            window: ``(centre, width)`` if ``slice_hu`` is a 0..255 windowed image; it is mapped back to HU.

        Returns:
            ``(3, 2)`` float array of (x, y) input-pixel coordinates: anterior falx attachment, septum pellucidum,
            posterior falx attachment.

        Raises:
            InputError: no ``spacing_mm``, 3-D without ``slice_index``, non-positive spacing, NaN or constant slice, a 0..255 image
                without ``window``/``assume_hu``.
        """
        return self._run(slice_hu, spacing_mm, slice_index=slice_index, assume_hu=assume_hu, window=window)[0]

    def midline_shift_mm(self, slice_hu: np.ndarray, spacing_mm: float | Sequence[float] | None = None, **kwargs: Any) -> float:
        """Signed midline shift in mm (positive toward the patient's left); arguments as :meth:`predict`."""
        pts, sp = self._run(slice_hu, spacing_mm, slice_index=kwargs.get("slice_index"),
                            assume_hu=kwargs.get("assume_hu", False), window=kwargs.get("window"))
        return midline_shift_mm(pts, sp)

    def predict_path(self, path: str | Path, slice_index: int | None = None, *, spacing_mm: float | Sequence[float] | None = None,
                     assume_hu: bool = False, window: tuple[float, float] | None = None) -> MidlineResult:
        """Landmarks and shift of a slice in a file: DICOM file or series folder, NIfTI volume, ``.npy``.

        Args:
            path: the file; a volume needs ``slice_index`` (NIfTI: along the superior axis; DICOM series: by z).
            slice_index: axial slice of a volume.
            spacing_mm: overrides the header (required for ``.npy``).

        Raises:
            InputError: unreadable file, a volume without ``slice_index``, no spacing, bad values.
        """
        from medzoo.errors import InputError
        from medzoo.tasks.midline.reader import read_slice

        sp_override = None if spacing_mm is None else spacing_mm
        hu, sp = read_slice(path, slice_index, spacing_mm=sp_override)  # type: ignore[arg-type]
        if sp is None:
            raise InputError("file carries no pixel spacing; pass spacing_mm (--spacing)", path)
        pts, sp2 = self._run(hu, sp, slice_index=None, assume_hu=assume_hu, window=window, path=path)
        return MidlineResult(points=pts, shift_mm=midline_shift_mm(pts, sp2), spacing_mm=sp2, source=str(path), slice_index=slice_index)


def overlay_png(hu: np.ndarray, res: MidlineResult) -> bytes:
    """PNG bytes: brain-window slice with the falx line, the three landmarks and the shift."""
    import cv2

    img = (np.clip(hu / 80.0, 0, 1) * 255).astype(np.uint8)
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    scale = max(1.0, 512 / max(img.shape[:2]))
    if scale > 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    p = res.points * scale
    a, s, q = (tuple(int(round(v)) for v in pt) for pt in p)
    cv2.line(img, a, q, (0, 200, 255), 1, cv2.LINE_AA)
    d = (p[2] - p[0]) / max(1e-6, float(np.linalg.norm(p[2] - p[0])))
    foot = p[0] + d * float(np.dot(p[1] - p[0], d))
    cv2.line(img, s, tuple(int(round(v)) for v in foot), (0, 255, 0), 1, cv2.LINE_AA)
    for pt, col in zip((a, s, q), ((255, 80, 80), (0, 0, 255), (255, 80, 80))):
        cv2.circle(img, pt, 3, col, -1, cv2.LINE_AA)
    cv2.putText(img, f"midline shift {res.shift_mm:+.1f} mm (+ = pt left)", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(img, "R", (8, img.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(img, "L", (img.shape[1] - 20, img.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    return bytes(buf) if ok else b""


def predict_files(model: MidlineModel, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
    """For each input write ``<stem>.midline.json`` and ``<stem>.midline.png`` into ``out_dir`` (atomic)."""
    from medzoo.errors import InputError
    from medzoo.io import atomic_write_bytes, atomic_write_json, output_stem
    from medzoo.tasks.midline.reader import read_slice

    spacing = options.get("spacing")
    if spacing is not None:
        spacing = tuple(float(v) for v in spacing)
        spacing = spacing[0] if len(spacing) == 1 else spacing[:2]
    slice_index = options.get("slice_index")
    out_dir = Path(out_dir)
    written: list[Path] = []
    for path in paths:
        path = Path(path)
        hu, sp = read_slice(path, slice_index, spacing_mm=spacing)  # type: ignore[arg-type]
        if sp is None:
            raise InputError("file carries no pixel spacing; pass --spacing", path)
        pts, sp2 = model._run(hu, sp, slice_index=None, assume_hu=bool(options.get("assume_hu", False)),
                              window=options.get("window"), path=path)
        res = MidlineResult(points=pts, shift_mm=midline_shift_mm(pts, sp2), spacing_mm=sp2, source=str(path), slice_index=slice_index)
        stem = output_stem(path)
        body = {**res.to_json(), "model": model.meta.get("name", "user model"),
                "synthetic_training": bool(model.meta.get("synthetic", True)),
                "note": "model trained on SYNTHETIC data only; research use, not for clinical decisions"}
        written.append(atomic_write_json(out_dir / f"{stem}.midline.json", json.loads(json.dumps(body))))
        written.append(atomic_write_bytes(out_dir / f"{stem}.midline.png", overlay_png(hu, res)))
    return written
