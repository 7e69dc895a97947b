"""Write a built-in SYNTHETIC site to a folder in the user layout, so a hospital-style ``--data DIR`` run can be
rehearsed without patient data (``medzoo synth midline --site synth-a --out DIR``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from medzoo.errors import InputError
from medzoo.io import atomic_write_bytes
from medzoo.tasks.midline.dataset import CSV_COLUMNS
from medzoo.tasks.midline.generator import SITES, site_slice
from medzoo.tasks.midline.reader import write_nifti_slice


def write_site(site: str, split: str, out_dir: Path, *, n: int | None = None) -> int:
    """Write ``n`` slices (default: the whole split) of SYNTHETIC ``site`` as ``out_dir/images/*.nii.gz`` plus
    ``out_dir/landmarks.csv`` (with ``split``, ``shift_mm``, ``lesion`` and ``synthetic`` columns) and a README.

    Returns:
        The number of slices written.
    """
    if site not in SITES:
        raise InputError(f"unknown synthetic site {site!r}; built-in: {', '.join(SITES)}")
    if split not in ("train", "test", "all"):
        raise InputError(f"split must be train, test or all, got {split!r}")
    prof = SITES[site]
    parts = [("train", prof.n_train), ("test", prof.n_test)] if split == "all" else [(split, prof.n_train if split == "train" else prof.n_test)]
    jobs = [(part, j) for part, k in parts for j in range(k)][: n if n is not None else None]
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*CSV_COLUMNS, "split", "shift_mm", "lesion", "synthetic"])
    for part, j in jobs:
        s = site_slice(site, part, j)
        rel = f"images/{site}_{part}_{j:04d}.nii.gz"
        write_nifti_slice(out_dir / rel, s.hu, s.spacing_mm)
        p = s.points
        w.writerow([rel, "", f"{s.spacing_mm[0]:.6f}", f"{s.spacing_mm[1]:.6f}",
                    *(f"{v:.4f}" for v in p.reshape(-1)), part, f"{s.shift_mm:.4f}", s.lesion, 1])
    atomic_write_bytes(out_dir / "landmarks.csv", buf.getvalue().encode())
    atomic_write_bytes(out_dir / "README.txt", (
        f"SYNTHETIC data: site {site} ({split}) of the medzoo midline task, procedurally generated; no patient data.\n"
        "Landmarks are (x, y) pixels in radiological display orientation; shift_mm is positive toward the patient's left.\n"
        "Use: medzoo evaluate midline --data THIS_FOLDER, or as a relay site with --data THIS_FOLDER.\n").encode())
    return len(jobs)
