"""Midline-shift geometry: the perpendicular, signed distance of the septum from the falx line.

Conventions (radiological display, as a radiologist reads an axial head CT):

* points are ``(x, y)`` pixel coordinates: ``x`` = column (increasing toward the **patient's left**, which is the
  image's right), ``y`` = row (increasing toward **posterior**, the image's bottom); integer values are pixel
  centres;
* landmark order: anterior falx attachment at the inner table, septum pellucidum, posterior falx attachment;
* the shift is **positive toward the patient's left** (image right) and negative toward the patient's right;
* spacing is ``(row_mm, col_mm)``, so anisotropic pixels are handled exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

LANDMARKS: tuple[str, ...] = ("falx_anterior", "septum_pellucidum", "falx_posterior")


def as_spacing(spacing_mm: float | Sequence[float]) -> tuple[float, float]:
    """``(row_mm, col_mm)`` from a float or a pair; raises ``ValueError`` on non-positive or non-finite values."""
    if np.isscalar(spacing_mm):
        sr = sc = float(spacing_mm)  # type: ignore[arg-type]
    else:
        vals = [float(v) for v in spacing_mm]  # type: ignore[union-attr]
        if len(vals) != 2:
            raise ValueError(f"spacing must be a float or a (row, col) pair, got {len(vals)} values")
        sr, sc = vals
    if not (np.isfinite(sr) and np.isfinite(sc)) or sr <= 0 or sc <= 0:
        raise ValueError(f"pixel spacing must be positive and finite, got ({sr}, {sc}) mm")
    return sr, sc


def midline_shift_mm(points: np.ndarray, spacing_mm: float | Sequence[float] = 1.0) -> float:
    """Signed midline shift in mm from the three landmarks.

    Args:
        points: ``(3, 2)`` array of ``(x, y)`` pixel coordinates: anterior falx, septum, posterior falx.
        spacing_mm: pixel size, a float or ``(row_mm, col_mm)``.

    Returns:
        The perpendicular distance of the septum from the line through the two falx points, in mm, positive
        when the septum lies toward the patient's left (image right) of the line directed anterior -> posterior.

    Example:
        >>> midline_shift_mm([[50, 10], [56, 50], [50, 90]], 0.5)
        3.0
    """
    p = torch.as_tensor(np.asarray(points, dtype=np.float64))[None]
    return float(shift_mm_torch(p, torch.tensor(as_spacing(spacing_mm), dtype=torch.float64)[None])[0])


def shift_mm_torch(points: Tensor, spacing_mm: Tensor) -> Tensor:
    """Batched, differentiable :func:`midline_shift_mm`.

    Shape:
        points: ``(B, 3, 2)`` (x, y) pixels; spacing_mm: ``(B, 2)`` (row_mm, col_mm) or ``(2,)``; returns ``(B,)``.
    """
    sp = spacing_mm.to(points.dtype)
    if sp.ndim == 1:
        sp = sp[None].expand(points.shape[0], 2)
    mm = points * torch.stack([sp[:, 1], sp[:, 0]], dim=1)[:, None, :]  # (x*col_mm, y*row_mm)
    a, s, p = mm[:, 0], mm[:, 1], mm[:, 2]
    d = p - a                                          # falx direction, anterior -> posterior (down the image)
    v = s - a
    cross = d[:, 0] * v[:, 1] - d[:, 1] * v[:, 0]
    # With y pointing down and d pointing down, a septum to the image right gives cross < 0: negate.
    return -cross / torch.linalg.norm(d, dim=1).clamp_min(1e-6)


def radial_errors_mm(pred: np.ndarray, true: np.ndarray, spacing_mm: float | Sequence[float]) -> np.ndarray:
    """Per-landmark Euclidean errors in mm, ``(..., 3)``, for ``(..., 3, 2)`` (x, y) pixel arrays."""
    sr, sc = as_spacing(spacing_mm)
    d = (np.asarray(pred, np.float64) - np.asarray(true, np.float64)) * np.array([sc, sr])
    return np.sqrt((d**2).sum(-1))
