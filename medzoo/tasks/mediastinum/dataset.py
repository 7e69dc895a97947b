"""Datasets of one site: a built-in SYNTHETIC site by name, or a user folder.

User folder layout (what ``MediastinumTask.write_site`` writes and ``--data DIR`` reads)::

    DIR/
      labels.csv        case,file,label,z0,y0,x0,z1,y1,x1[,split][,source]
      <file>            per row: a NIfTI file (.nii / .nii.gz) or a DICOM series folder, relative to DIR

``label`` is one of :data:`~medzoo.tasks.mediastinum.generator.CLASSES`; the box is in voxel indices of the
volume as :func:`~medzoo.tasks.mediastinum.volume_io.read_volume` returns it (half-open). ``split`` is
``train`` or ``test``; without it a case goes to ``test`` when crc32(case) % 5 == 0, else ``train``.

Items are dicts ``{"image": FloatTensor[C, 64, 64], "target": int64, "id": str, "weight": float32}``, where
``weight`` is the inverse frequency of the case's class at this site (class-weighted cross-entropy; computed
from the local labels only).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medzoo.errors import InputError
from medzoo.io import read_csv_table
from medzoo.tasks.mediastinum.generator import CLASSES, SITES, case_seed, generate_case, site_labels
from medzoo.tasks.mediastinum.preprocess import Preprocess, box_from_inputs, center_crop, check_volume, crop_hu, to_channels
from medzoo.tasks.mediastinum.volume_io import read_volume

MARGIN = 10  # extra pixels cached around the crop so augmentation can shift/rotate without running out
AUG_HU_OFFSET = 10.0  # +/- HU calibration jitter (training sites span -10..+8 HU; more blurs fluid vs soft tissue)
AUG_NOISE_HU = 12.0  # up to this much extra noise
REQUIRED_COLUMNS = ("case", "file", "label", "z0", "y0", "x0", "z1", "y1", "x1")


def class_weights(labels: Sequence[str], clip: float = 5.0) -> dict[str, float]:
    """Inverse-frequency weights ``n / (K * n_c)`` of the classes present, clipped to ``[1/clip, clip]``."""
    n = len(labels)
    present = sorted(set(labels))
    return {c: float(np.clip(n / (len(present) * labels.count(c)), 1 / clip, clip)) for c in present}


def _augmenter() -> Any:
    import albumentations as A
    import cv2

    return A.Compose([
        A.Affine(scale=(0.9, 1.1), rotate=(-12, 12), translate_px=(-4, 4), interpolation=cv2.INTER_LINEAR,
                 fill=-1000.0, p=0.9),
    ])  # no flips: left-right anatomy (aorta, heart) is not symmetric


def _acquisition_jitter(hwc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Simulate an unseen scanner on an HU crop ``(H, W, P)``: reconstruction kernel (blur or edge
    enhancement), calibration offset and extra noise."""
    import cv2

    u = rng.random()
    if u < 0.3:
        hwc = cv2.GaussianBlur(hwc, (0, 0), rng.uniform(0.3, 0.9)).reshape(hwc.shape)
    elif u < 0.7:
        hwc = hwc + rng.uniform(0.2, 1.2) * (hwc - cv2.GaussianBlur(hwc, (0, 0), 0.8).reshape(hwc.shape))
    noise = rng.uniform(0, AUG_NOISE_HU) * rng.standard_normal(hwc.shape).astype(np.float32)
    return (hwc + rng.uniform(-AUG_HU_OFFSET, AUG_HU_OFFSET) + noise).astype(np.float32)


class _CropDataset(Dataset[dict[str, Any]]):
    """Shared machinery: cache each case's HU crop (with a margin), augment, window to channels."""

    def __init__(self, labels: list[str], ids: list[str], cfg: Preprocess, augment: bool) -> None:
        self.labels, self.ids, self.cfg, self.augment = labels, ids, cfg, augment
        self.weights = class_weights(labels) if labels else {}
        self._cache: dict[int, np.ndarray] = {}
        self._aug = _augmenter() if augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def _crop(self, i: int) -> np.ndarray:  # pragma: no cover - implemented by subclasses
        raise NotImplementedError

    def hu_crop(self, i: int) -> np.ndarray:
        """The cached ``(P, size + 2 * MARGIN, ...)`` HU planes of case ``i``."""
        if i not in self._cache:
            self._cache[i] = self._crop(i)
        return self._cache[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        hu = self.hu_crop(i)
        if self._aug is not None:
            # seeded from torch's generator, which the trainer seeds: augmented runs repeat exactly
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
            self._aug.set_random_seed(seed)
            rng = np.random.default_rng(seed)
            hwc = self._aug(image=np.ascontiguousarray(hu.transpose(1, 2, 0)))["image"]
            hu = _acquisition_jitter(hwc, rng).transpose(2, 0, 1)
        img = to_channels(center_crop(hu, self.cfg.size), self.cfg)
        lab = self.labels[i]
        return {"image": torch.from_numpy(np.ascontiguousarray(img)), "target": torch.tensor(CLASSES.index(lab)),
                "id": self.ids[i], "weight": torch.tensor(self.weights.get(lab, 1.0), dtype=torch.float32)}


class SyntheticSite(_CropDataset):
    """A built-in SYNTHETIC site: cases are generated on first access (deterministically) and their crops cached.

    Args:
        site: a name in :data:`~medzoo.tasks.mediastinum.generator.SITES`.
        split: ``"train"``, ``"test"`` or ``"all"`` (train then test).
        cfg: preprocessing.
        augment: random affine + HU offset/noise jitter.
        n: use only the first ``n`` cases (the class mix stays close to the site's).
    """

    def __init__(self, site: str, split: str, cfg: Preprocess, *, augment: bool = False, n: int | None = None) -> None:
        if site not in SITES:
            raise InputError(f"unknown synthetic site {site!r}; built-in sites: {', '.join(SITES)}")
        splits = ("train", "test") if split == "all" else (split,)
        self.items = [(s, k, lab) for s in splits for k, lab in enumerate(site_labels(site, s))][:n]
        if not self.items:
            raise InputError(f"synthetic site {site} has no {split!r} cases (it is {SITES[site].description})")
        self.site = site
        super().__init__([lab for _, _, lab in self.items], [f"{site}/{s}/{k:04d}" for s, k, _ in self.items],
                         cfg, augment)

    def case(self, i: int) -> Any:
        s, k, lab = self.items[i]
        return generate_case(self.site, case_seed(s, k), label=lab)

    def _crop(self, i: int) -> np.ndarray:
        c = self.case(i)
        return crop_hu(c.volume, c.spacing, c.bbox, self.cfg, margin=MARGIN)


def read_labels(folder: str | Path) -> list[dict[str, str]]:
    """Rows of ``DIR/labels.csv``, checked: required columns, known labels, integer boxes, existing files."""
    d = Path(folder)
    f = d / "labels.csv"
    rows = read_csv_table(d, "labels.csv", REQUIRED_COLUMNS)
    for n, r in enumerate(rows, start=2):
        if r["label"] not in CLASSES:
            raise InputError(f"line {n}: unknown label {r['label']!r}; expected one of {', '.join(CLASSES)}", f)
        try:
            [int(r[k]) for k in REQUIRED_COLUMNS[3:]]
        except (TypeError, ValueError) as e:
            raise InputError(f"line {n}: box values must be integers ({e})", f) from e
        if not (d / r["file"]).exists():
            raise InputError(f"line {n}: file {r['file']!r} does not exist", f)
        if r.get("split") not in (None, "", "train", "test"):
            raise InputError(f"line {n}: split must be 'train' or 'test', got {r['split']!r}", f)
    return rows


def row_split(row: dict[str, str]) -> str:
    s = row.get("split") or ""
    return s if s else ("test" if zlib.crc32(row["case"].encode()) % 5 == 0 else "train")


class FolderSite(_CropDataset):
    """A user site folder in the documented layout (NIfTI files or DICOM series folders + labels.csv).

    Raises:
        InputError: no folder or labels.csv, bad rows, or no case in ``split``; unreadable volumes and boxes
            outside their volume are reported (with the file name) when the case is first read.
    """

    def __init__(self, folder: str | Path, split: str, cfg: Preprocess, *, augment: bool = False) -> None:
        self.folder = Path(folder)
        rows = read_labels(self.folder)
        self.rows = [r for r in rows if split == "all" or row_split(r) == split]
        if not self.rows:
            raise InputError(f"no {split!r} cases in labels.csv", self.folder / "labels.csv")
        super().__init__([r["label"] for r in self.rows], [r["case"] for r in self.rows], cfg, augment)

    def _crop(self, i: int) -> np.ndarray:
        r = self.rows[i]
        path = self.folder / r["file"]
        vol, spacing = read_volume(path)
        vol = check_volume(vol, path)
        box = box_from_inputs(vol.shape, [int(r[k]) for k in REQUIRED_COLUMNS[3:]], None, path)
        return crop_hu(vol, spacing, box, self.cfg, margin=MARGIN)
