"""From a CT volume and a lesion box to the network input: validation, resampling, crop, HU windows.

The input is a 2.5D crop centred on the lesion box: ``len(slice_offsets_mm)`` axial planes resampled to a fixed
in-plane spacing (2 mm, 64 x 64 pixels = a 128 mm field around the mass, enough to show its compartment:
sternum, great vessels, airway or spine), each shown through ``len(windows)`` HU windows. Which combination is
the default was chosen by measurement (``tasks/mediastinum/benchmark.py --ablation``; see docs/mediastinum.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from medzoo.errors import InputError

Mode = Literal["windows", "slices", "slices+windows", "slices+soft"]
# (level, width) in HU: mediastinal, lung, bone, and a narrow soft-tissue window that separates fluid (0-20 HU)
# from soft tissue (40-70 HU).
WINDOWS: dict[str, tuple[float, float]] = {"mediastinal": (40.0, 400.0), "lung": (-600.0, 1500.0),
                                           "bone": (400.0, 1800.0), "soft": (40.0, 150.0)}
# mode -> (number of planes, window names)
MODES: dict[str, tuple[int, tuple[str, ...]]] = {
    "windows": (1, ("mediastinal", "lung", "bone")),
    "slices": (3, ("mediastinal",)),
    "slices+windows": (3, ("mediastinal", "lung", "bone")),
    "slices+soft": (3, ("soft", "mediastinal", "bone")),
}
AIR_HU = -1000.0


@dataclass(frozen=True)
class Preprocess:
    """How a volume becomes a network input.

    Attributes:
        mode: ``"windows"`` (the box's central plane through mediastinal/lung/bone windows), ``"slices"``
            (3 adjacent planes, mediastinal window: 2.5D), ``"slices+windows"`` (3 planes x mediastinal/lung/bone
            = 9 channels) or ``"slices+soft"`` (3 planes x narrow soft-tissue/mediastinal/bone = 9 channels).
        spacing_mm: in-plane spacing of the crop.
        size: crop side in pixels.
        offset_mm: distance between adjacent planes (``"slices"`` modes).
    """

    mode: Mode = "slices+windows"
    spacing_mm: float = 2.0
    size: int = 64
    offset_mm: float = 6.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown input mode {self.mode!r}; modes: {', '.join(MODES)}")

    @property
    def slice_offsets_mm(self) -> tuple[float, ...]:
        return (0.0,) if MODES[self.mode][0] == 1 else (-self.offset_mm, 0.0, self.offset_mm)

    @property
    def windows(self) -> tuple[tuple[float, float], ...]:
        return tuple(WINDOWS[n] for n in MODES[self.mode][1])

    @property
    def channels(self) -> int:
        return len(self.slice_offsets_mm) * len(self.windows)


def check_spacing(spacing_mm: Sequence[float] | None, path: str | Path | None = None) -> tuple[float, float, float]:
    """``(z, y, x)`` spacing in mm as three positive finite floats, else :class:`InputError`."""
    if spacing_mm is None:
        raise InputError("voxel spacing is missing: pass spacing_mm=(z, y, x) in mm (or --spacing Z Y X)", path)
    try:
        sp = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError) as e:
        raise InputError(f"voxel spacing must be three numbers (z, y, x) in mm, got {spacing_mm!r}", path) from e
    if len(sp) != 3:
        raise InputError(f"voxel spacing must be three numbers (z, y, x) in mm, got {len(sp)}: {sp}", path)
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"voxel spacing must be positive and finite, got {sp} mm", path)
    return sp  # type: ignore[return-value]


def check_volume(volume: object, path: str | Path | None = None, *, hu: bool = True) -> np.ndarray:
    """A finite float32 ``(D, H, W)`` array in HU, else :class:`InputError` naming the problem.

    With ``hu=False`` only the array itself is checked (numeric, 3-D, big enough, finite, not normalised); call
    :func:`check_hounsfield` afterwards to check that its values look like a chest CT in HU.
    """
    arr = np.asarray(volume)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"volume must be a numeric array, got dtype {arr.dtype}", path)
    if arr.ndim != 3:
        what = "a 2-D image (one slice?)" if arr.ndim == 2 else f"a {arr.ndim}-D array"
        raise InputError(f"expected a 3-D CT volume (D, H, W) in HU, got {what} of shape {arr.shape}", path)
    if min(arr.shape) < 1 or arr.shape[1] < 8 or arr.shape[2] < 8:
        raise InputError(f"volume of shape {arr.shape} is too small (need at least 1 x 8 x 8)", path)
    arr = arr.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InputError(f"volume holds {bad} NaN/inf voxels; CT values must be finite Hounsfield units", path)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= -1.0 and hi <= 1.0 and hi > lo:
        raise InputError(f"volume values lie in [{lo:.3g}, {hi:.3g}]: they look normalised, not Hounsfield units", path)
    if hu:
        check_hounsfield(arr, path)
    return arr


# A chest CT always shows air (lungs, outside the body: about -1000 HU, never above about -900 in the lung
# parenchyma); a volume whose darkest voxel is above this is not in HU.
MAX_AIR_HU = -500.0


def check_hounsfield(volume: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse values that cannot be a chest CT in Hounsfield units, with :class:`InputError` naming the problem.

    Refused: a constant volume; values within 0..255 (an 8-bit display/window export); no voxel below
    ``MAX_AIR_HU`` (-500 HU), i.e. no air, which a chest CT always contains (lungs, outside the body): typically
    DICOM stored values that were never rescaled with RescaleSlope/RescaleIntercept.
    """
    lo, hi = float(np.min(volume)), float(np.max(volume))
    if hi - lo < 1e-6:
        raise InputError(f"volume is constant ({lo:g} everywhere): no anatomy to classify", path)
    if lo >= 0 and hi <= 255.5:
        raise InputError(f"volume values lie in {lo:g}..{hi:g}, like an 8-bit display image (a window export), not "
                         "Hounsfield units. Pass the CT in HU (DICOM pixel values rescaled with RescaleSlope/"
                         "RescaleIntercept, or the original NIfTI)", path)
    if lo > MAX_AIR_HU:
        hint = (" They look like DICOM stored values never rescaled with RescaleSlope/RescaleIntercept: "
                "HU = stored value x slope + intercept (the intercept is typically -1024)" if lo >= -50 else
                " Pass the whole chest CT in HU, not a crop without air or an image with shifted values")
        raise InputError(f"volume values lie in {lo:g}..{hi:g} with no voxel below {MAX_AIR_HU:g}: a chest CT in "
                         f"Hounsfield units always contains air (about -1000 HU: lungs, outside the body).{hint}",
                         path)


def box_from_inputs(shape: tuple[int, ...], bbox: Sequence[float] | None, mask: object | None,
                    path: str | Path | None = None) -> tuple[int, int, int, int, int, int]:
    """The lesion box ``(z0, y0, x0, z1, y1, x1)`` (voxel indices, half-open) from ``bbox`` or ``mask``."""
    if bbox is not None and mask is not None:
        raise InputError("give either bbox or mask, not both", path)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != tuple(shape):
            raise InputError(f"mask shape {m.shape} does not match the volume shape {tuple(shape)}", path)
        idx = np.nonzero(m)
        if len(idx[0]) == 0:
            raise InputError("mask is empty (no lesion voxel is set)", path)
        return tuple(int(i.min()) for i in idx) + tuple(int(i.max()) + 1 for i in idx)  # type: ignore[return-value]
    if bbox is None:
        raise InputError("the lesion location is missing: pass bbox=(z0, y0, x0, z1, y1, x1) or mask=... "
                         "(CLI: --bbox or --mask)", path)
    try:
        b = [float(v) for v in bbox]
    except (TypeError, ValueError) as e:
        raise InputError(f"bbox must be six numbers (z0, y0, x0, z1, y1, x1), got {bbox!r}", path) from e
    if len(b) != 6 or not all(math.isfinite(v) and v == int(v) for v in b):
        raise InputError(f"bbox must be six integer voxel indices (z0, y0, x0, z1, y1, x1), got {bbox!r}", path)
    bi = [int(v) for v in b]
    for ax, name in enumerate("zyx"):
        lo, hi, n = bi[ax], bi[ax + 3], shape[ax]
        if not (0 <= lo < hi <= n):
            raise InputError(f"bbox {tuple(bi)} is outside the volume of shape {tuple(shape)} or empty along {name} "
                             f"(need 0 <= {name}0 < {name}1 <= {n}; the box is half-open)", path)
    return tuple(bi)  # type: ignore[return-value]


def crop_hu(volume: np.ndarray, spacing: Sequence[float], bbox: Sequence[int], cfg: Preprocess,
            margin: int = 0) -> np.ndarray:
    """HU planes ``(P, size + 2 * margin, size + 2 * margin)`` at ``cfg.spacing_mm``, centred on the box centre.

    Planes lie ``cfg.slice_offsets_mm`` from the centre; z is clamped to the volume (edge slices repeat),
    in-plane outside the volume is air.
    """
    sz, sy, sx = spacing
    cz, cy, cx = ((bbox[i] + bbox[i + 3] - 1) / 2.0 for i in range(3))
    n = cfg.size + 2 * margin
    r = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * cfg.spacing_mm
    planes = []
    for off in cfg.slice_offsets_mm:
        z = float(np.clip(cz + off / sz, 0, volume.shape[0] - 1))
        z0 = int(np.floor(z))
        z1 = min(z0 + 1, volume.shape[0] - 1)
        w = z - z0
        sl = volume[z0] if w == 0 or z1 == z0 else (1 - w) * volume[z0] + w * volume[z1]
        yy, xx = np.meshgrid(cy + r / sy, cx + r / sx, indexing="ij")
        planes.append(ndimage.map_coordinates(sl, [yy, xx], order=1, mode="constant", cval=AIR_HU))
    return np.stack(planes).astype(np.float32)


def to_channels(hu: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """HU planes ``(P, H, W)`` -> channels in [0, 1] ``(P * n_windows, H, W)``, plane-major."""
    out = [np.clip((hu - (lvl - wid / 2)) / wid, 0.0, 1.0) for lvl, wid in cfg.windows]
    return np.stack(out, axis=1).reshape(-1, *hu.shape[1:]).astype(np.float32)


def center_crop(hu: np.ndarray, size: int) -> np.ndarray:
    m = (hu.shape[-1] - size) // 2
    return hu[..., m : m + size, m : m + size] if m > 0 else hu
