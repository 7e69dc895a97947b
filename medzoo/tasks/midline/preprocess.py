"""From a user's slice (any size, any spacing) to the network's fixed grid, and back.

The network sees a ``size x size`` grid at ``spacing_mm`` per pixel, centred on the head (found as the largest
connected region denser than -400 HU). Two channels: a brain window (0..80 HU) and a wide window
(-100..1000 HU, skull and air) so that both the septum and the inner table are visible. The 2x3 affine
returned with the grid maps grid pixels back to input pixels, so predictions come back in the input's own
pixel coordinates.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from medzoo.errors import InputError
from medzoo.tasks.midline.geometry import as_spacing

WINDOWS: tuple[tuple[float, float], ...] = ((0.0, 80.0), (-100.0, 1000.0))


def check_slice(arr: np.ndarray, spacing_mm: float | Sequence[float], *, assume_hu: bool = False,
                window: tuple[float, float] | None = None, path: str | Path | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Validate one axial slice and return it as float32 HU with ``(row_mm, col_mm)``.

    Args:
        arr: 2-D slice. A 3-D array is refused (pick a slice first); a ``(H, W, 1)`` array is squeezed.
        spacing_mm: pixel size, a float or ``(row_mm, col_mm)``; must be positive.
        assume_hu: accept values that do not look like HU (e.g. 0..255) as HU anyway.
        window: ``(centre, width)`` of the display window that produced a 0..255 image; the image is mapped back
            to approximate HU (``hu = (v / 255 - 0.5) * width + centre``).
        path: file the slice came from, for error messages.

    Raises:
        InputError: not 2-D, non-positive spacing, NaN/inf values, a constant slice, or a 0..255 display image
            given without ``window`` or ``assume_hu``.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
        a = a.reshape([d for d in a.shape if d != 1] if a.size > 1 else (1, 1))
    if a.ndim != 2:
        raise InputError(f"expected one 2-D axial slice, got an array of shape {a.shape}; for a volume pass "
                         "slice_index (the axial slice at the level of the lateral ventricles)", path)
    if min(a.shape) < 16:
        raise InputError(f"slice of shape {a.shape} is too small to hold a head", path)
    try:
        sp = as_spacing(spacing_mm)
    except (TypeError, ValueError) as e:
        raise InputError(str(e), path) from e
    if not np.issubdtype(a.dtype, np.number) or a.dtype == bool:
        raise InputError(f"slice has non-numeric dtype {a.dtype}", path)
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError(f"slice holds {int((~np.isfinite(a)).sum())} NaN/inf values", path)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-6:
        raise InputError(f"slice is constant ({lo:g} everywhere): no anatomy to localise", path)
    if window is not None:
        c, w = float(window[0]), float(window[1])
        if w <= 0:
            raise InputError(f"window width must be positive, got {w}", path)
        return (a / 255.0 - 0.5) * w + c, sp
    if not assume_hu:
        if lo >= 0 and hi <= 255.5:
            raise InputError(f"values lie in {lo:g}..{hi:g}, like an 8-bit display image, not Hounsfield units. Pass the "
                             "slice in HU (DICOM rescaled with RescaleSlope/Intercept), or window=(centre, width) to map a "
                             "windowed image back to HU, or assume_hu=True if these really are HU", path)
        if lo > -300 or hi < 150:
            warnings.warn(f"{path or 'slice'}: values {lo:g}..{hi:g} HU show no air (< -300) or no bone (> 150); "
                          "is this a tightly cropped or non-HU image? Landmarks may be unreliable", stacklevel=3)
    return a, sp


def head_centre(hu: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """``(x, y)`` pixel centre of the bounding box of the largest region above -400 HU (the head)."""
    f = max(1, int(round(2.0 / min(spacing))))              # work at ~2 mm for speed
    small = hu[::f, ::f]
    mask = (small > -400).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return (hu.shape[1] - 1) / 2, (hu.shape[0] - 1) / 2
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x0, y0, w, h = stats[i, :4]
    return (x0 + (w - 1) / 2) * f, (y0 + (h - 1) / 2) * f


def grid_affine(hu_shape: tuple[int, int], spacing: tuple[float, float], centre: tuple[float, float], size: int,
                grid_spacing: float) -> np.ndarray:
    """2x3 affine mapping grid pixels ``(u, v, 1)`` to input pixels ``(x, y)``."""
    sr, sc = spacing
    cx, cy = centre
    half = (size - 1) / 2
    return np.array([[grid_spacing / sc, 0.0, cx - half * grid_spacing / sc],
                     [0.0, grid_spacing / sr, cy - half * grid_spacing / sr]], np.float64)


def to_grid(hu: np.ndarray, spacing: tuple[float, float], size: int, grid_spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a validated HU slice to the network grid.

    Returns:
        ``(grid_hu, A)``: ``(size, size)`` float32 HU (air outside the input) and the 2x3 grid->input affine.
    """
    sr, sc = spacing
    a = np.clip(hu, -200.0, 1500.0).astype(np.float32)       # scanner padding must not bleed through the blur
    fr, fc = grid_spacing / sr, grid_spacing / sc
    if fr > 1.2 or fc > 1.2:                                  # anti-alias before downsampling
        a = cv2.GaussianBlur(a, (0, 0), sigmaX=max(0.01, 0.45 * fc), sigmaY=max(0.01, 0.45 * fr))
    A = grid_affine(a.shape, spacing, head_centre(hu, spacing), size, grid_spacing)
    out = cv2.warpAffine(a, A, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=-200.0)
    return out, A


def windows(grid_hu: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` float32 channels in [0, 1], one per :data:`WINDOWS` entry."""
    return np.stack([np.clip((grid_hu - lo) / (hi - lo), 0, 1) for lo, hi in WINDOWS]).astype(np.float32)


def grid_to_input(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` grid (x, y) pixels to input pixels with the 2x3 affine ``A``."""
    p = np.asarray(points, np.float64)
    return p @ A[:, :2].T + A[:, 2]


def input_to_grid(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Inverse of :func:`grid_to_input`."""
    p = np.asarray(points, np.float64) - A[:, 2]
    return p @ np.linalg.inv(A[:, :2]).T


def to_norm(points_px: np.ndarray, size: int) -> np.ndarray:
    """Grid pixels (centres at integers) -> normalised [-1, 1] coordinates (DSNT convention)."""
    return (2 * np.asarray(points_px, np.float64) + 1) / size - 1


def from_norm(points_n: np.ndarray, size: int) -> np.ndarray:
    return ((np.asarray(points_n, np.float64) + 1) * size - 1) / 2
