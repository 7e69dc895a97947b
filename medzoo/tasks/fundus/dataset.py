"""Torch datasets of fundus photographs: random training patches/crops and whole test images.

Every file is read and checked when the dataset is built (so a bad file fails at once, with its name), and kept
in memory already pre-processed (the fundus sets are small).

Sample dicts:

* vessels, train: ``image`` 1xPxP float, ``target`` 1xPxP float {0,1}, ``fov`` 1xPxP float, ``id``.
* vessels, test: ``image`` 1xH'xW' (padded to a multiple of 32), ``target`` / ``fov`` 1xHxW, ``id``.
* disc, train: ``image`` 3x352x384 float, ``target`` 2x352x384 float (channel 0 disc incl. cup, 1 cup), ``id``.
* disc, test: ``image`` 3xH'xW' (longer side 384, padded), ``target`` 2xHxW at the stored resolution, ``id``,
  ``cdr_experts`` (mean of the experts' CDRs, NaN when unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medzoo.errors import InputError
from medzoo.io import read_mask, read_rgb
from medzoo.tasks.fundus import transforms as T
from medzoo.tasks.fundus.sources import Record

VESSEL_PATCH = 256
DISC_CROP = (352, 384)


def _check_same_size(img: np.ndarray, m: np.ndarray, path: Any, what: str) -> None:
    if m.shape[:2] != img.shape[:2]:
        raise InputError(f"{what} is {m.shape[1]}x{m.shape[0]} (WxH) but its image is {img.shape[1]}x{img.shape[0]}", path)


def load_vessel_sample(rec: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one vessel record: ``(network input H x W x 1 float32, mask H x W uint8, fov H x W uint8)``,
    resized by :func:`~medzoo.tasks.fundus.transforms.vessel_scale` when the image is very large."""
    rgb = read_rgb(rec.image)
    mask = read_mask(rec.mask) if rec.mask is not None else np.zeros(rgb.shape[:2], np.uint8)
    _check_same_size(rgb, mask, rec.mask, "vessel mask")
    if rec.fov is not None:
        fov = read_mask(rec.fov)
        _check_same_size(rgb, fov, rec.fov, "FOV mask")
    else:
        fov = T.derive_fov(rgb)
    s = T.vessel_scale(*rgb.shape[:2])
    if s != 1.0:
        hw = (round(rgb.shape[0] * s), round(rgb.shape[1] * s))
        rgb = T.resize(rgb, hw)
        mask = (T.resize(mask.astype(np.float32), hw) >= 0.5).astype(np.uint8)
        fov = (T.resize(fov.astype(np.float32), hw) >= 0.5).astype(np.uint8)
    return T.vessel_input(rgb, fov), mask, fov


def load_disc_sample(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """Read one disc record: ``(RGB H x W x 3 uint8, target H x W x 2 uint8)`` at the stored resolution;
    target channel 0 = disc (soft map >= 128, i.e. a majority of experts, union with the cup), 1 = cup."""
    rgb = read_rgb(rec.image)
    od = read_mask(rec.od, threshold=128)  # type: ignore[arg-type]
    cup = read_mask(rec.cup, threshold=128)  # type: ignore[arg-type]
    _check_same_size(rgb, od, rec.od, "optic-disc mask")
    _check_same_size(rgb, cup, rec.cup, "cup mask")
    return rgb, np.stack([np.maximum(od, cup), cup], axis=-1)


def disc_network_size(h: int, w: int) -> tuple[int, int]:
    """(H, W) a disc image is resized to: longer side :data:`~medzoo.tasks.fundus.transforms.DISC_SIDE`."""
    s = T.DISC_SIDE / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _chw(a: np.ndarray) -> torch.Tensor:
    a = a if a.ndim == 3 else a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()


class VesselPatches(Dataset[dict[str, Any]]):
    """Random ``patch`` x ``patch`` training crops, centred on a random FOV pixel, optionally augmented.

    Args:
        records: labelled images.
        patches_per_image: dataset length is ``len(records) * patches_per_image`` (one "epoch").
        patch: crop side in pixels.
        augment: apply :func:`~medzoo.tasks.fundus.transforms.train_augment` (``True``: ``"standard"``, or a level
            of :data:`~medzoo.tasks.fundus.transforms.AUGMENT_LEVELS`).
    """

    def __init__(self, records: Sequence[Record], *, patches_per_image: int = 8, patch: int = VESSEL_PATCH,
                 augment: bool | str = False) -> None:
        self.records = list(records)
        self.samples = [load_vessel_sample(r) for r in self.records]
        self.fov_idx = [np.flatnonzero(f.ravel()) for _, _, f in self.samples]
        self.ppi, self.patch = patches_per_image, patch
        level = T.augment_level(augment)
        self.aug = T.train_augment("vessels", level) if level else None

    def __len__(self) -> int:
        return len(self.records) * self.ppi

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = i % len(self.records)
        x, m, f = self.samples[k]
        h, w = m.shape
        p = self.patch
        idx = self.fov_idx[k]
        c = int(idx[np.random.randint(len(idx))]) if len(idx) else np.random.randint(h * w)
        cy, cx = divmod(c, w)
        y0 = int(np.clip(cy - p // 2, 0, max(0, h - p)))
        x0 = int(np.clip(cx - p // 2, 0, max(0, w - p)))
        xs, ms, fs = x[y0:y0 + p, x0:x0 + p], m[y0:y0 + p, x0:x0 + p], f[y0:y0 + p, x0:x0 + p]
        if xs.shape[:2] != (p, p):  # image smaller than a patch: pad
            ph, pw = p - xs.shape[0], p - xs.shape[1]
            xs = np.pad(xs, ((0, ph), (0, pw), (0, 0)))
            ms, fs = np.pad(ms, ((0, ph), (0, pw))), np.pad(fs, ((0, ph), (0, pw)))
        if self.aug is not None:
            out = self.aug(image=xs, masks=[ms, fs])  # type: ignore[operator]
            xs, (ms, fs) = np.clip(out["image"], 0, 1), out["masks"]
        return {"image": _chw(xs.astype(np.float32)), "target": _chw(ms.astype(np.float32)),
                "fov": _chw(fs.astype(np.float32)), "id": self.records[k].id}


class VesselImages(Dataset[dict[str, Any]]):
    """Whole images for evaluation (padded to a multiple of 32; target and FOV unpadded)."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)
        self.samples = [load_vessel_sample(r) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, m, f = self.samples[i]
        xp, _ = T.pad_to_multiple(x)
        return {"image": _chw(xp), "target": _chw(m.astype(np.float32)), "fov": _chw(f.astype(np.float32)),
                "id": self.records[i].id}


class DiscImages(Dataset[dict[str, Any]]):
    """Disc/cup images. Training (``crop=True``): resized, padded/cropped to :data:`DISC_CROP`, optionally
    augmented; evaluation (``crop=False``): resized and padded input, target at the stored resolution."""

    def __init__(self, records: Sequence[Record], *, crop: bool, augment: bool | str = False) -> None:
        self.records = list(records)
        self.crop = crop
        level = T.augment_level(augment)
        self.aug = T.train_augment("disc", level) if level else None
        self.samples = []
        for r in self.records:
            rgb, tgt = load_disc_sample(r)
            hw = disc_network_size(*rgb.shape[:2])
            x = T.disc_input(T.resize(rgb, hw))
            tr = (T.resize(tgt.astype(np.float32), hw) >= 0.5).astype(np.uint8) if crop else tgt
            self.samples.append((x, tr))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, t = self.samples[i]
        rec = self.records[i]
        if not self.crop:
            xp, _ = T.pad_to_multiple(x)
            cdr = float("nan") if rec.cdr_experts is None else rec.cdr_experts
            return {"image": _chw(xp), "target": _chw(t.astype(np.float32)), "id": rec.id, "cdr_experts": cdr}
        if self.aug is not None:
            out = self.aug(image=x, mask=t)  # type: ignore[operator]
            x, t = np.clip(out["image"], 0, 1), out["mask"]
        ch, cw = DISC_CROP
        h, w = t.shape[:2]
        ph, pw = max(0, ch - h), max(0, cw - w)
        if ph or pw:  # centre-pad, then a random crop when larger
            x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
            t = np.pad(t, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        h, w = t.shape[:2]
        y0 = np.random.randint(h - ch + 1) if self.aug is not None else (h - ch) // 2
        x0 = np.random.randint(w - cw + 1) if self.aug is not None else (w - cw) // 2
        x, t = x[y0:y0 + ch, x0:x0 + cw], t[y0:y0 + ch, x0:x0 + cw]
        return {"image": _chw(x.astype(np.float32)), "target": _chw(t.astype(np.float32)), "id": rec.id}
