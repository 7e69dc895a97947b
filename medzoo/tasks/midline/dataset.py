"""Midline datasets: built-in SYNTHETIC sites, a user folder layout, and (for testing) the warped CQ500 template.

Every dataset yields grid samples (the network's fixed grid, see :mod:`.preprocess`)::

    {"image": FloatTensor[2, S, S], "target": FloatTensor[3, 2] (normalised x, y),
     "shift_mm": FloatTensor[], "id": str}

User folder layout (what a hospital prepares)::

    DIR/
      landmarks.csv        # one row per slice, header below
      images/...           # NIfTI (.nii/.nii.gz), DICOM (.dcm) or NumPy (.npy) files

    landmarks.csv columns: file, slice_index, spacing_row_mm, spacing_col_mm,
                           ant_x, ant_y, sep_x, sep_y, post_x, post_y [, split]

``file`` is relative to ``DIR``; ``slice_index`` may be empty for single-slice files; spacing may be empty for
NIfTI/DICOM (read from the header) but is required for ``.npy``; points are (x, y) pixels in radiological
display orientation (anterior at the top, patient's right on the image left). Without a ``split`` column, a
fixed hash of the file name puts 20% of the rows in ``test`` and the rest in ``train``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medzoo.errors import InputError
from medzoo.io import read_csv_table
from medzoo.tasks.midline import preprocess as pp
from medzoo.tasks.midline.generator import SITES, site_slice
from medzoo.tasks.midline.geometry import midline_shift_mm

CSV_COLUMNS = ("file", "slice_index", "spacing_row_mm", "spacing_col_mm", "ant_x", "ant_y", "sep_x", "sep_y", "post_x", "post_y")


def make_grid_sample(hu: np.ndarray, spacing: tuple[float, float], points: np.ndarray, size: int, grid_spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """``(grid_hu (S, S), grid_points (3, 2))``: a labelled slice resampled to the network grid."""
    g, A = pp.to_grid(hu, spacing, size, grid_spacing)
    return g, pp.input_to_grid(points, A)


class _GridDataset(Dataset[dict[str, Any]]):
    """Base: subclasses provide ``_load(i) -> (grid_hu, grid_points, id)``; this adds augmentation and packing."""

    def __init__(self, n: int, *, augment: bool, size: int, grid_spacing: float, seed: int = 0) -> None:
        self.n, self.augment, self.size, self.grid_spacing = n, augment, size, grid_spacing
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}
        self._aug: Callable[..., Any] | None = _geometric_aug() if augment else None
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def set_seed(self, seed: int) -> None:
        """Reseed the augmentation (geometry and intensity), so an epoch's draws depend only on ``seed``: the
        relay trainer calls it each epoch (:func:`medzoo.relay.trainer.reseed_dataset`), which makes a resumed run
        and a baseline trained after others replay the same augmentations."""
        self._rng = np.random.default_rng(seed)
        if self._aug is not None:
            self._aug.set_random_seed(seed)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError

    def grid(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        if i not in self._cache:
            self._cache[i] = self._load(i)
        return self._cache[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.n <= i < self.n:
            raise IndexError(i)
        g, pts, sid = self.grid(i % self.n)
        if self._aug is not None:
            out = self._aug(image=g, keypoints=pts.astype(np.float32))
            g, pts = out["image"], np.asarray(out["keypoints"], np.float64)[:, :2]
            r = self._rng
            g = g * r.uniform(0.97, 1.03) + r.uniform(-8, 8)
            if r.random() < 0.7:
                g = g + r.normal(0, r.uniform(0, 6), g.shape).astype(np.float32)
        shift = midline_shift_mm(pts, self.grid_spacing)
        return {"image": torch.from_numpy(pp.windows(g.astype(np.float32))),
                "target": torch.from_numpy(pp.to_norm(pts, self.size).astype(np.float32)),
                "shift_mm": torch.tensor(shift, dtype=torch.float32), "id": sid}


def _geometric_aug() -> Callable[..., Any]:
    import albumentations as A
    import cv2

    return A.Compose([
        A.HorizontalFlip(p=0.5),                     # a mirrored head is a head with the lesion on the other side
        A.Affine(rotate=(-10, 10), scale=(0.93, 1.07), translate_percent=(-0.04, 0.04), interpolation=cv2.INTER_LINEAR,
                 border_mode=cv2.BORDER_CONSTANT, fill=-200.0, p=0.8),
    ], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))


class SyntheticSiteDataset(_GridDataset):
    """A built-in SYNTHETIC site (see :data:`~medzoo.tasks.midline.generator.SITES`); slices are rendered on first
    access and cached at grid resolution.

    Example:
        >>> ds = SyntheticSiteDataset("synth-a", "test", n=2, size=64, grid_spacing=3.2)
        >>> ds[0]["image"].shape
        torch.Size([2, 64, 64])
    """

    def __init__(self, site: str, split: str, *, augment: bool = False, n: int | None = None, size: int = 128,
                 grid_spacing: float = 1.6) -> None:
        if site not in SITES:
            raise InputError(f"unknown synthetic site {site!r}; built-in sites: {', '.join(SITES)}")
        prof = SITES[site]
        self.site, self.split = site, split
        self._parts = [("train", prof.n_train), ("test", prof.n_test)] if split == "all" else [(split, prof.n_train if split == "train" else prof.n_test)]
        total = sum(k for _, k in self._parts)
        super().__init__(min(total, n) if n is not None else total, augment=augment, size=size, grid_spacing=grid_spacing,
                         seed=int(hashlib.sha256(f"{site}/{split}".encode()).hexdigest()[:8], 16))

    def locate(self, i: int) -> tuple[str, int]:
        for part, k in self._parts:
            if i < k:
                return part, i
            i -= k
        raise IndexError(i)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        part, j = self.locate(i)
        s = site_slice(self.site, part, j)
        g, pts = make_grid_sample(s.hu, s.spacing_mm, s.points, self.size, self.grid_spacing)
        return g, pts, f"{self.site}/{part}/{j:04d}"


def _split_of(name: str) -> str:
    return "test" if int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"


def read_landmarks_csv(root: Path) -> list[dict[str, str]]:
    """Rows of ``root/landmarks.csv``, checked for the required columns and existing files."""
    f = root / "landmarks.csv"
    rows = read_csv_table(root, "landmarks.csv", CSV_COLUMNS)
    for k, r in enumerate(rows, start=2):
        if not (root / r["file"]).exists():
            raise InputError(f"line {k}: image file {r['file']!r} does not exist", f)
        try:
            [float(r[c]) for c in CSV_COLUMNS[4:]]
        except ValueError as e:
            raise InputError(f"line {k}: landmark coordinates are not numbers ({e})", f) from e
    return rows


class FolderDataset(_GridDataset):
    """A user folder in the documented layout (module docstring)."""

    def __init__(self, root: str | Path, split: str, *, augment: bool = False, size: int = 128, grid_spacing: float = 1.6) -> None:
        self.root = Path(root)
        rows = read_landmarks_csv(self.root)
        if split != "all":
            rows = [r for r in rows if (r.get("split") or _split_of(r["file"])) == split]
        if not rows:
            raise InputError(f"no rows in split {split!r} in landmarks.csv", self.root)
        self.rows = rows
        super().__init__(len(rows), augment=augment, size=size, grid_spacing=grid_spacing, seed=0)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        from medzoo.tasks.midline.reader import read_slice

        r = self.rows[i]
        path = self.root / r["file"]
        idx = int(r["slice_index"]) if r.get("slice_index", "").strip() else None
        sp_csv = (float(r["spacing_row_mm"]), float(r["spacing_col_mm"])) if r.get("spacing_row_mm", "").strip() else None
        hu, sp = read_slice(path, idx, spacing_mm=sp_csv)
        if sp is None:
            raise InputError("no pixel spacing in the file and none in landmarks.csv (spacing_row_mm, spacing_col_mm)", path)
        hu, sp = pp.check_slice(hu, sp, path=path)
        pts = np.array([[float(r["ant_x"]), float(r["ant_y"])], [float(r["sep_x"]), float(r["sep_y"])],
                        [float(r["post_x"]), float(r["post_y"])]])
        g, gp = make_grid_sample(hu, sp, pts, self.size, self.grid_spacing)
        return g, gp, f"{r['file']}" + (f"#{idx}" if idx is not None else "")
