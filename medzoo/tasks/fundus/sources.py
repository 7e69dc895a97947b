"""Where fundus samples come from: the built-in real sites and a user folder in the generic layout.

Built-in vessel sites (under :func:`medzoo.io.data_root`): ``drive`` (official 20 train / 20 test), ``stare``
(``split.csv`` column ``split_maninis2016``: 10 train / 8 test; FOV derived, see
:func:`~medzoo.tasks.fundus.transforms.derive_fov`), ``hrf`` (the 42 images with vessel GT; the first 5 of each
category -- ids ``01``..``05`` of ``_h``, ``_g``, ``_dr`` -- train = 15, the other 27 test).
Built-in disc site: ``drishti`` (Drishti-GS1, official 50 train / 51 test).

Generic folder layout (one site)::

    <folder>/images/<id>.<png|jpg|tif|...>     colour fundus photographs (8-bit RGB)
    <folder>/masks/<mask>                      vessels: 0 background, >= 128 vessel
    <folder>/masks_od/<mask>, masks_cup/<mask> disc task: optic disc and cup (>= 128 = inside; soft maps allowed)
    <folder>/fov/<mask>                        optional field-of-view masks (derived from the image when absent)
    <folder>/split.csv                         optional, columns ``id,split`` (train/test); without it every
                                               image belongs to every split

Validation: the splits ``fit`` and ``val`` divide a site's training split (built-in or folder): every
:data:`VAL_EVERY`-th training image in listing order is ``val``, the rest ``fit`` (DRIVE 16 / 4, STARE 8 / 2,
HRF 12 / 3), for choosing settings without touching the test split.

Pairing rule: an image's id is its file stem; a mask belongs to it when the mask's stem equals the id or starts
with the id followed by ``_``, ``.`` or ``-`` (``01.png`` pairs with ``01_manual1.png`` and ``01.ah.png``, never
with ``010.png``). Every image needs exactly one mask in each mask folder, and every mask needs an image.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medzoo.errors import InputError
from medzoo.io import data_root, list_images

VESSEL_SITES = ("drive", "stare", "hrf")
DISC_SITES = ("drishti",)
_SEPARATORS = ("_", ".", "-")
VAL_EVERY = 5
SPLITS = ("train", "test", "all", "fit", "val")


@dataclass(frozen=True)
class Record:
    """One labelled fundus photograph: image path plus the label files the task needs."""

    id: str
    image: Path
    mask: Path | None = None
    fov: Path | None = None
    od: Path | None = None
    cup: Path | None = None
    cdr_experts: float | None = None


def _rows(csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise InputError("split file missing", csv_path)
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _keep(split_of_row: str, split: str) -> bool:
    return split == "all" or split_of_row == split


def builtin_records(site: str, split: str) -> list[Record]:
    """Records of a built-in site and split (``"train"``, ``"test"``, ``"all"``).

    Raises:
        InputError: the data folder is absent, or ``site`` is unknown.
    """
    root = data_root()
    assert root is not None
    if site == "drive":
        d = root / "DRIVE"
        return [Record(r["id"], d / r["image"], d / r["mask"], d / r["fov"]) for r in _rows(d / "split.csv")
                if _keep(r["split"], split)]
    if site == "stare":
        d = root / "STARE"
        return [Record(r["id"], d / r["image"], d / r["mask"], None) for r in _rows(d / "split.csv")
                if _keep(r["split_maninis2016"], split)]
    if site == "hrf":
        d = root / "HRF"
        out = []
        for r in _rows(d / "split.csv"):
            if not (d / r["mask"]).is_file():  # 11_h, 12_h, 13_h have no vessel GT
                continue
            row_split = "train" if int(r["id"].split("_")[0]) <= 5 else "test"
            if _keep(row_split, split):
                out.append(Record(r["id"], d / r["image"], d / r["mask"], d / r["fov"]))
        return out
    if site == "drishti":
        d = root / "Drishti-GS1"
        out = []
        for r in _rows(d / "labels.csv"):
            if _keep(r["split"], split):
                cdr = [float(r[f"cdr_expert{i}"]) for i in range(1, 5) if r.get(f"cdr_expert{i}")]
                out.append(Record(r["id"], d / "images" / f"{r['id']}.png", od=d / "masks_od" / f"{r['id']}.png",
                                  cup=d / "masks_cup" / f"{r['id']}.png",
                                  cdr_experts=sum(cdr) / len(cdr) if cdr else None))
        return out
    raise InputError(f"unknown built-in site {site!r}")


def _pair(images: Sequence[Path], folder: Path) -> dict[str, Path]:
    """Map image id -> mask file in ``folder`` by the pairing rule; errors name unpaired or ambiguous files."""
    masks = list_images(folder)
    ids = [p.stem for p in images]
    found: dict[str, Path] = {}
    used: set[Path] = set()
    for i in ids:
        exact = [m for m in masks if m.stem == i]
        cands = exact or [m for m in masks if any(m.stem.startswith(i + s) for s in _SEPARATORS)]
        # a longer image id claiming the same mask wins (``01_a`` over ``01`` for ``01_a_mask.png``)
        cands = [m for m in cands if not any(j != i and len(j) > len(i) and (m.stem == j or any(m.stem.startswith(j + s) for s in _SEPARATORS)) for j in ids)]
        if not cands:
            img = next(p for p in images if p.stem == i)
            raise InputError(f"no mask for this image in {folder} (pairing rule: mask stem == {i!r} or starts "
                             f"with {i!r} + one of {' '.join(_SEPARATORS)})", img)
        if len(cands) > 1:
            raise InputError(f"several masks pair with image id {i!r}: {', '.join(m.name for m in cands)}", cands[0])
        found[i] = cands[0]
        used.add(cands[0])
    extra = [m for m in masks if m not in used]
    if extra:
        raise InputError(f"mask has no image in {folder.parent / 'images'} ({len(extra)} unpaired mask(s))", extra[0])
    return found


def folder_records(folder: str | Path, split: str, *, kind: str) -> list[Record]:
    """Records of a user folder in the generic layout (see the module docstring).

    Args:
        folder: the site folder.
        split: ``"train"``, ``"test"`` or ``"all"``; applied only when the folder has ``split.csv``.
        kind: ``"vessels"`` or ``"disc"``.

    Raises:
        InputError: missing sub-folders, empty folders, unpaired names, an unknown id in ``split.csv``, or an
            empty split (each message names the file or folder).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError("no such folder (expected a built-in site name or a folder with images/ and masks/)", root)
    images = list_images(root / "images")
    ids = [p.stem for p in images]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"two images share the id {dup!r} (ids are file stems)", root / "images")
    label_dirs = ("masks",) if kind == "vessels" else ("masks_od", "masks_cup")
    paired = {d: _pair(images, root / d) for d in label_dirs}
    fov = _pair(images, root / "fov") if (root / "fov").is_dir() else {}
    keep = set(ids)
    if (root / "split.csv").is_file() and split != "all":
        rows = _rows(root / "split.csv")
        unknown = [r.get("id") for r in rows if r.get("id") not in keep]
        if unknown:
            raise InputError(f"split.csv names ids with no image: {unknown[:5]}", root / "split.csv")
        keep = {r["id"] for r in rows if r.get("split") == split}
    recs = []
    for p in images:
        if p.stem not in keep:
            continue
        if kind == "vessels":
            recs.append(Record(p.stem, p, mask=paired["masks"][p.stem], fov=fov.get(p.stem)))
        else:
            recs.append(Record(p.stem, p, od=paired["masks_od"][p.stem], cup=paired["masks_cup"][p.stem]))
    if not recs:
        raise InputError(f"no images in split {split!r}", root / "split.csv")
    return recs


def resolve(source: str | Path, split: str, *, kind: str) -> tuple[str, list[Record]]:
    """``(site name, records)`` of a built-in site name or a folder."""
    sites = VESSEL_SITES if kind == "vessels" else DISC_SITES
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (expected {', '.join(SPLITS)})")
    base = "train" if split in ("fit", "val") else split
    if isinstance(source, str) and source.lower() in sites and not Path(source).is_dir():
        name, recs = source.lower(), builtin_records(source.lower(), base)
    elif isinstance(source, str) and not Path(source).exists():
        raise InputError(f"neither a built-in site ({', '.join(sites)}) nor an existing folder", source)
    else:
        name, recs = Path(source).name, folder_records(source, base, kind=kind)
    if split in ("fit", "val"):
        recs = [r for i, r in enumerate(recs) if (i % VAL_EVERY == VAL_EVERY - 1) == (split == "val")]
    return name, recs
