"""Real-anatomy test slices: the CQ500 CT brain template, warped with a known midline shift.

``../shared/data/CT_brain_template_CQ500`` (Muschelli 2020) is an average of real non-contrast head CTs from
CQ500, 2 mm isotropic, LAS. Its licence is CC BY-NC-SA 4.0: medzoo uses it **to test only**, never to train
shipped weights (``MidlineTask.build_dataset("cq500-warp", "train")`` refuses).

Recipe of a test case:

1. read the volume with nibabel, reorient to radiological display (anterior at the top row, patient's right on
   the image left; axial slices along the superior axis), take a slice at the level of the frontal horns;
2. set the empty background to air (-1000 HU);
3. landmarks: the midline column is the centre of the frontal horns (template ventricle mask); the falx
   attachments are where that column crosses the inner table (half-way between bone and brain HU, sub-pixel);
   the septum is on the midline at the centre of the frontal horns;
4. warp the brain (never the skull) with the same flat-topped displacement as the generator: exactly
   ``shift_mm`` at the septum, exactly zero at the falx attachments and near the skull; optionally paint a
   subdural haematoma on the side the shift points away from;
5. the ground truth is the warped septum and the fixed attachments; the true shift is recomputed from them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from medzoo.errors import InputError
from medzoo.tasks.midline.dataset import _GridDataset, make_grid_sample
from medzoo.tasks.midline.geometry import midline_shift_mm

TEMPLATE_DIR = "CT_brain_template_CQ500"
SLICES: tuple[int, ...] = (64, 65, 66, 67, 68)
SHIFTS_MM: tuple[float, ...] = (-15.0, -10.0, -7.0, -5.0, -3.0, 0.0, 3.0, 5.0, 7.0, 10.0, 15.0)


@dataclass(frozen=True)
class TemplateSlice:
    hu: np.ndarray
    spacing_mm: tuple[float, float]
    points: np.ndarray
    shift_mm: float
    slice_index: int


TEMPLATE_FILE = "volumes_2mm/template_with_skull_2mm.nii.gz"


def template_dir(root: str | Path | None = None) -> Path:
    """The CQ500 template folder: ``root`` itself or ``root/CT_brain_template_CQ500`` (default root: the data
    folder, :func:`medzoo.io.data_root`).

    Raises:
        InputError: no data folder, or no template in it; the message names the folder and file needed.
    """
    import os

    from medzoo.io import data_root

    base = Path(root) if root is not None else data_root(required=False)
    if base is None:
        env = os.environ.get("MEDZOO_DATA")
        where = f"MEDZOO_DATA={env} does not exist, nor does" if env else "MEDZOO_DATA is not set and there is no"
        raise InputError(f"the CQ500 CT brain template is not found: {where} ../shared/data. Set MEDZOO_DATA to "
                         f"the folder holding {TEMPLATE_DIR}/ ({TEMPLATE_DIR}/{TEMPLATE_FILE}), or pass the "
                         "template folder itself")
    d = base / TEMPLATE_DIR if (base / TEMPLATE_DIR).is_dir() else base
    if not (d / TEMPLATE_FILE).is_file():
        raise InputError(f"the CQ500 CT brain template is not found: expected {TEMPLATE_DIR}/{TEMPLATE_FILE} in "
                         f"this folder (or {TEMPLATE_FILE} if it is the template folder itself)", d)
    return d


def _crossing(profile: np.ndarray, start: int, step: int, level: float) -> float:
    """Sub-pixel index where ``profile`` first falls below ``level`` walking from ``start`` by ``step``."""
    i = start
    while 0 <= i + step < len(profile) and profile[i + step] >= level:
        i += step
    a, b = profile[i], profile[i + step]
    return i + step * float((a - level) / max(a - b, 1e-6))


@functools.lru_cache(maxsize=2)
def _volumes(folder: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    from medzoo.tasks.midline.reader import nifti_display_volume

    d = Path(folder)
    vol, sp = nifti_display_volume(d / "template_with_skull_2mm.nii.gz")
    lv, _ = nifti_display_volume(d / "lateral_ventricles_2mm.nii.gz")
    vol.setflags(write=False)
    lv.setflags(write=False)
    return vol, lv, sp


def load_slice(k: int, root: str | Path | None = None) -> TemplateSlice:
    """Unwarped template slice ``k`` (display orientation, HU with air outside) and its landmarks."""
    vol, lv, sp = _volumes(str(template_dir(root) / "volumes_2mm"))
    hu = vol[k].astype(np.float32)
    bone = (hu > 300).astype(np.uint8)
    filled = bone.copy()
    cnts, _ = cv2.findContours(bone, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, cnts, -1, 1, thickness=cv2.FILLED)
    head = cv2.dilate(filled, np.ones((3, 3), np.uint8)) > 0
    hu[~head & (hu < 100)] = -1000.0
    m = lv[k] > 0
    n, lab = cv2.connectedComponents(m.astype(np.uint8))
    if n <= 1:
        raise InputError(f"template slice {k} shows no lateral ventricle; pick a slice at the ventricle level")
    rows = [np.where(lab == i)[0].mean() for i in range(1, n)]
    front = lab == 1 + int(np.argmin(rows))                # frontal horns: the most anterior component
    fy, fx = np.where(front)
    xm = float(fx.mean())
    near = np.abs(fx - xm) <= 3
    ys = float(0.5 * (fy[near].min() + fy[near].max()))
    col = np.array([np.interp(xm, np.arange(hu.shape[1]), hu[r]) for r in range(hu.shape[0])])
    brain = float(np.median(col[int(ys) - 5: int(ys) + 5][col[int(ys) - 5: int(ys) + 5] < 100])) if (col[int(ys) - 5: int(ys) + 5] < 100).any() else 30.0
    top, bot = int(np.argmax(col > 300)), len(col) - 1 - int(np.argmax(col[::-1] > 300))
    level_a = 0.5 * (col[top: top + 6].max() + brain)
    level_p = 0.5 * (col[bot - 5: bot + 1].max() + brain)
    ya = _crossing(col, top + int(np.argmax(col[top: top + 6])), +1, level_a)
    yp = _crossing(col, bot - 5 + int(np.argmax(col[bot - 5: bot + 1])), -1, level_p)
    pts = np.array([[xm, ya], [xm, ys], [xm, yp]], np.float64)
    return TemplateSlice(hu=hu, spacing_mm=sp, points=pts, shift_mm=0.0, slice_index=k)


def warp(ts: TemplateSlice, shift_mm: float, *, lesion: bool = True, noise_hu: float = 0.0, seed: int = 0) -> TemplateSlice:
    """Shift the septum of ``ts`` by ``shift_mm`` (positive toward the patient's left) with a smooth displacement
    that is zero at the falx attachments and at the skull; return the warped slice with its ground truth."""
    sr, sc = ts.spacing_mm
    hu = ts.hu
    h, w = hu.shape
    (xa, ya), (xs, ys), (_, yp) = ts.points
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x_mm, y_mm = (xx - xs) * sc, (yy - ys) * sr                    # septum-centred mm, x toward patient's left
    la, lp, lx = (ys - ya) * sr * 0.92, (yp - ys) * sr * 0.92, 50.0
    v = y_mm
    bump = lambda t: np.cos(0.5 * np.pi * np.clip(np.abs(t), 0, 1)) ** 2  # noqa: E731
    g = bump(np.where(v < 0, v / la, v / lp)) * bump((x_mm - shift_mm) / lx)
    map_x = (xx - shift_mm * g / sc).astype(np.float32)
    warped = cv2.remap(hu, map_x, yy, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    intracranial = (hu < 150) & (hu > -500)
    out = np.where(intracranial, warped, hu).astype(np.float32)
    if lesion and shift_mm != 0:
        side = -1 if shift_mm > 0 else 1                          # the haematoma pushes away from itself
        bone = (hu > 300).astype(np.uint8)
        dist = cv2.distanceTransform((1 - bone).astype(np.uint8), cv2.DIST_L2, 5) * sc
        ang = np.arctan2(y_mm, side * x_mm)
        thick = 0.9 * abs(shift_mm) + 3.0
        prof = np.cos(0.5 * np.pi * np.clip(np.abs(ang / 1.5), 0, 1)) ** 2
        sdh = intracranial & (side * x_mm > 0) & (dist < thick * prof)
        out[sdh] = 65.0
        out = np.where(intracranial, cv2.GaussianBlur(out, (0, 0), 0.6), out)
    if noise_hu > 0:
        out = out + np.random.default_rng(seed).normal(0, noise_hu, out.shape).astype(np.float32) * (out > -500)
    pts = ts.points.copy()
    pts[1, 0] += shift_mm / sc
    return TemplateSlice(hu=out, spacing_mm=ts.spacing_mm, points=pts, shift_mm=midline_shift_mm(pts, ts.spacing_mm),
                         slice_index=ts.slice_index)


def cases(root: str | Path | None = None, *, slices: tuple[int, ...] = SLICES, shifts: tuple[float, ...] = SHIFTS_MM,
          lesion: bool = True, noise_hu: float = 3.0) -> list[tuple[str, TemplateSlice]]:
    """Every (slice, shift) test case as ``(id, TemplateSlice)``."""
    out = []
    for k in slices:
        base = load_slice(k, root)
        for j, s in enumerate(shifts):
            out.append((f"cq500-template/z{k}/shift{s:+.0f}", warp(base, s, lesion=lesion, noise_hu=noise_hu, seed=1000 * k + j)))
    return out


class CQ500WarpDataset(_GridDataset):
    """The warped CQ500-template test set as grid samples (evaluation only; CC BY-NC-SA 4.0)."""

    def __init__(self, root: str | Path | None = None, *, size: int = 128, grid_spacing: float = 1.6, lesion: bool = True,
                 **kw: Any) -> None:
        self.cases = cases(root, lesion=lesion, **kw)
        super().__init__(len(self.cases), augment=False, size=size, grid_spacing=grid_spacing)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        cid, ts = self.cases[i]
        g, pts = make_grid_sample(ts.hu, ts.spacing_mm, ts.points, self.size, self.grid_spacing)
        return g, pts, cid
