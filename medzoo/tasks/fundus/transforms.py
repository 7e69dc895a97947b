"""Image pre-processing shared by training and prediction: FOV derivation, CLAHE, scaling, padding, augmentation.

The same functions run at training and at inference time, so what the network sees never differs:

* vessels: the green channel, contrast-equalised with CLAHE (clip 2.0, 8x8 tiles), scaled to [0, 1], one channel;
  pixels outside the field of view (FOV) set to 0.
* disc/cup: RGB with CLAHE on the L channel of CIE-LAB, scaled to [0, 1], three channels; the image is resized so
  its longer side is :data:`DISC_SIDE` pixels.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from medzoo.errors import InputError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

#: networks downsample 5 times: inputs are padded to a multiple of this.
MULTIPLE = 32
#: longer side (px) a vessel image is reduced to when it is larger (HRF full resolution 3504 -> 876, as stored).
VESSEL_MAX_SIDE = 1000
VESSEL_TARGET_SIDE = 876
#: longer side (px) of the disc network's input.
DISC_SIDE = 384
#: red-channel threshold (0..255) of :func:`derive_fov`.
FOV_RED_THRESHOLD = 20


def derive_fov(rgb: np.ndarray, threshold: int = FOV_RED_THRESHOLD) -> np.ndarray:
    """Field-of-view mask of a fundus photograph from its red channel (used for STARE, which ships none).

    Red > ``threshold`` after a 5x5 median blur, then a morphological opening and closing (elliptic 15x15
    kernel) to remove specks and fill dark vessels at the rim, then the largest connected component with its
    holes filled.

    Args:
        rgb: ``H x W x 3`` uint8 RGB.
        threshold: red-channel level separating the FOV from the black surround.

    Returns:
        ``H x W`` uint8, 1 inside the FOV.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[8:56, 8:56, 0] = 120
        >>> int(derive_fov(img)[32, 32]), int(derive_fov(img)[2, 2])
        (1, 0)
    """
    red = cv2.medianBlur(np.ascontiguousarray(rgb[..., 0]), 5)
    m = (red > threshold).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(m.shape, np.uint8)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    m = (lab == big).astype(np.uint8)
    # fill holes: flood the background from the border, the rest is the FOV
    inv = np.pad(1 - m, 1, constant_values=1)
    ff = inv.copy()
    cv2.floodFill(ff, None, (0, 0), 2)
    return np.where(ff[1:-1, 1:-1] == 2, 0, 1).astype(np.uint8)


def clahe_green(rgb: np.ndarray) -> np.ndarray:
    """Green channel with CLAHE (clip 2.0, 8x8 tiles): ``H x W`` uint8."""
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe.apply(np.ascontiguousarray(rgb[..., 1]))


def clahe_lab(rgb: np.ndarray) -> np.ndarray:
    """RGB with CLAHE (clip 2.0, 8x8 tiles) on the L channel of CIE-LAB: ``H x W x 3`` uint8."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def vessel_input(rgb: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """The vessel network's input channels: ``H x W x 1`` float32 in [0, 1] (CLAHE green, 0 outside the FOV)."""
    g = clahe_green(rgb).astype(np.float32) / 255.0
    if fov is not None:
        g = g * (fov > 0)
    return g[..., None]


def disc_input(rgb: np.ndarray) -> np.ndarray:
    """The disc network's input channels: ``H x W x 3`` float32 in [0, 1] (CLAHE on LAB-L)."""
    return clahe_lab(rgb).astype(np.float32) / 255.0


def vessel_scale(h: int, w: int) -> float:
    """Factor a vessel image is resized by before the network (1.0 unless its longer side exceeds
    :data:`VESSEL_MAX_SIDE`; then it is brought to :data:`VESSEL_TARGET_SIDE`, the scale the network was trained at)."""
    side = max(h, w)
    return 1.0 if side <= VESSEL_MAX_SIDE else VESSEL_TARGET_SIDE / side


def resize(arr: np.ndarray, size_hw: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize ``arr`` (H x W or H x W x C) to ``size_hw``; area interpolation when shrinking, linear otherwise."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if h * w < arr.shape[0] * arr.shape[1] else cv2.INTER_LINEAR
    out = cv2.resize(arr, (w, h), interpolation=interp)
    if arr.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def pad_to_multiple(arr: np.ndarray, multiple: int = MULTIPLE) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad the bottom/right of ``arr`` (H x W [x C]) to a multiple of ``multiple``; return it and the original (H, W)."""
    h, w = arr.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        pad = ((0, ph), (0, pw)) + ((0, 0),) * (arr.ndim - 2)
        arr = np.pad(arr, pad)
    return arr, (h, w)


AUGMENT_LEVELS = ("standard", "strong")
"""Strengths of :func:`train_augment`: ``standard`` (the shipped weights' recipes) and ``strong`` (wider geometric
and photometric ranges plus blur, down-scaling and sharpening: domain randomisation across cameras and sites)."""


def augment_level(augment: bool | str) -> str | None:
    """The :data:`AUGMENT_LEVELS` entry a dataset's ``augment`` argument asks for (``True``: ``standard``), or
    ``None`` for no augmentation.

    Raises:
        InputError: an unknown level.
    """
    if augment is False or augment is None:
        return None
    if augment is True:
        return "standard"
    if augment not in AUGMENT_LEVELS:
        raise InputError(f"unknown augmentation level {augment!r}; expected one of {', '.join(AUGMENT_LEVELS)}")
    return str(augment)


def train_augment(kind: str, strength: str = "standard") -> object:
    """Albumentations pipeline of the training patches (geometry + photometric jitter on the network input).

    Args:
        kind: ``"vessels"`` (1-channel patches) or ``"disc"`` (3-channel crops).
        strength: one of :data:`AUGMENT_LEVELS`.
    """
    import albumentations as A

    strong = augment_level(strength) == "strong"
    vessels = kind == "vessels"
    scale = ((0.7, 1.4) if vessels else (0.8, 1.2)) if strong else ((0.8, 1.25) if vessels else (0.85, 1.15))
    geo = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5) if vessels else A.NoOp(),
           A.RandomRotate90(p=0.5) if vessels else A.NoOp(),
           A.Affine(scale=scale, rotate=(-30, 30) if strong else (-20, 20), translate_percent=(-0.05, 0.05),
                    border_mode=cv2.BORDER_CONSTANT, p=0.8 if strong else 0.7)]
    if strong:
        photo = [A.RandomBrightnessContrast(0.3, 0.3, p=0.8), A.RandomGamma((65, 150), p=0.6),
                 A.OneOf([A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.3, 1.5)),
                          A.Downscale(scale_range=(0.5, 0.9),
                                      interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}),
                          A.Sharpen(alpha=(0.1, 0.4), lightness=(0.9, 1.1))], p=0.4),
                 A.GaussNoise(std_range=(0.0, 0.06), p=0.3)]
    else:
        photo = [A.RandomBrightnessContrast(0.15, 0.15, p=0.7), A.RandomGamma((85, 115), p=0.4),
                 A.GaussianBlur(blur_limit=(3, 3), p=0.15), A.GaussNoise(std_range=(0.0, 0.03), p=0.2)]
    return A.Compose(geo + photo)
