"""Reading and writing CT volumes: NIfTI (nibabel) and DICOM series (pydicom), in one orientation.

Every reader returns ``(volume, spacing)``: ``volume`` is float32 ``(D, H, W)`` in Hounsfield units with axis 0
running inferior -> superior, rows anterior -> posterior and columns from the patient's right to left
(radiological display: anterior at the top, the patient's right on the image's left); ``spacing`` is
``(z, y, x)`` in mm. In DICOM's patient system (LPS) that is voxel axes (x: +L, y: +P, z: +S); a NIfTI file is
reoriented to it from its affine, whatever its storage order.

Example:
    >>> from medzoo.tasks.mediastinum.volume_io import read_volume   # doctest: +SKIP
    >>> vol, spacing = read_volume("case001.nii.gz")                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo.errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI CT volume (scaled by its slope/intercept) as ``(volume, spacing)`` in the medzoo orientation.

    Raises:
        InputError: missing/unreadable file, not 3-D, or a degenerate affine.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise InputError("no such file", p)
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj, dtype=np.float32)  # applies scl_slope / scl_inter
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise InputError(f"cannot read NIfTI ({type(e).__name__}: {e})", p) from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"expected a 3-D volume, the NIfTI holds a {data.ndim}-D array of shape {data.shape}", p)
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError("NIfTI affine is degenerate (no usable voxel-to-patient geometry)", p)
    ornt = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(("L", "P", "S"))
    xform = nib.orientations.ornt_transform(ornt, target)
    data = nib.orientations.apply_orientation(data, xform)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # voxel size along each stored axis
    zooms_lps = [0.0, 0.0, 0.0]
    for src, (dst, _) in enumerate(xform):
        zooms_lps[int(dst)] = float(zooms[src])
    vol = np.ascontiguousarray(data.transpose(2, 1, 0))  # (i: L, j: P, k: S) -> (z, y, x)
    return vol, (zooms_lps[2], zooms_lps[1], zooms_lps[0])


def write_nifti(path: str | Path, volume: np.ndarray, spacing: tuple[float, float, float], *,
                dtype: type = np.int16) -> Path:
    """Write a medzoo-oriented volume as NIfTI (atomic); :func:`read_nifti` reads it back identically.

    The affine maps voxel (i, j, k) = (x, y, z) to RAS+ millimetres: i runs to the patient's left (-R),
    j posteriorly (-A), k superiorly (+S).
    """
    import nibabel as nib

    from medzoo.io import atomic_path

    sz, sy, sx = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    arr = np.asarray(volume).transpose(2, 1, 0)
    if np.issubdtype(dtype, np.integer):
        arr = np.rint(arr)
    img = nib.Nifti1Image(arr.astype(dtype), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    p = Path(path)
    with atomic_path(p) as tmp:
        # nibabel picks compression from the suffix, so give the temporary file the same one.
        tmp_named = tmp.with_name(tmp.name + "".join(p.suffixes))
        nib.save(img, str(tmp_named))
        tmp_named.replace(tmp)
    return p


def read_dicom_series(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read one axial CT series (a folder of DICOM files, or a single file) as ``(volume, spacing)`` in HU.

    Applies RescaleSlope/RescaleIntercept, orders slices by ImagePositionPatient along the slice normal and
    takes the z spacing from those positions (not SliceThickness).

    Raises:
        InputError: no DICOM file, a file that is not CT, files from more than one series, non-axial or
            inconsistent geometry, duplicate or unevenly spaced slices.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    elif p.is_file():
        files = [p]
    else:
        raise InputError("no such file or folder", p)
    dss = []
    for f in files:
        try:
            dss.append((f, pydicom.dcmread(str(f))))
        except (InvalidDicomError, OSError) as e:
            if len(files) == 1 or f.suffix.lower() == ".dcm":
                raise InputError(f"not a readable DICOM file ({type(e).__name__}: {e})", f) from e
    if not dss:
        raise InputError("folder holds no DICOM files", p)
    for f, ds in dss:
        mod = getattr(ds, "Modality", None)
        if mod != "CT":
            raise InputError(f"not a CT image (Modality {mod!r}); this model needs CT in Hounsfield units", f)
    series = sorted({str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in dss})
    if len(series) > 1:
        raise InputError(f"folder mixes {len(series)} DICOM series ({', '.join(s[-12:] for s in series)}); "
                         "put one series per folder", p)
    ref = dss[0][1]
    try:
        iop = np.asarray([float(v) for v in ref.ImageOrientationPatient])
        rows, cols = int(ref.Rows), int(ref.Columns)
        psp = [float(v) for v in ref.PixelSpacing]
    except AttributeError as e:
        raise InputError(f"DICOM header lacks geometry ({e})", dss[0][0]) from e
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if abs(abs(row_dir[0]) - 1) > 0.05 or abs(abs(col_dir[1]) - 1) > 0.05:
        raise InputError(f"not an axial series (ImageOrientationPatient {iop.round(3).tolist()}); reformat to axial", p)
    pos, slices = [], []
    for f, ds in dss:
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols) or not np.allclose(
                [float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-3):
            raise InputError("slice geometry differs from the rest of the series (size or orientation)", f)
        ipp = getattr(ds, "ImagePositionPatient", None)
        if ipp is None:
            raise InputError("DICOM slice lacks ImagePositionPatient; cannot order slices", f)
        try:
            px = ds.pixel_array.astype(np.float32)
        except Exception as e:  # noqa: BLE001 - codec/truncation problems are the user's file
            raise InputError(f"cannot decode pixel data ({type(e).__name__}: {e})", f) from e
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        inter = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        pos.append(float(np.dot([float(v) for v in ipp], normal)))
        slices.append(px * slope + inter)
    order = np.argsort(pos)
    pos_s = np.asarray(pos)[order]
    vol = np.stack([slices[i] for i in order])
    if len(pos_s) > 1:
        gaps = np.diff(pos_s)
        if gaps.min() < 1e-3:
            raise InputError("series holds duplicate slice positions (two acquisitions or repeated files?)", p)
        if gaps.max() - gaps.min() > 0.05 * gaps.mean() + 0.01:
            raise InputError(f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm); resample the series first", p)
        sz = float(gaps.mean())
    else:
        sz = float(getattr(ref, "SliceThickness", 0) or 0) or float(getattr(ref, "SpacingBetweenSlices", 0) or 0)
        if sz <= 0:
            raise InputError("single DICOM slice without SliceThickness: the z spacing is unknown", p)
    if normal[2] < 0:  # slice normal points inferiorly: stored order is reversed w.r.t. +S
        vol = vol[::-1]
    if row_dir[0] < 0:  # columns run to the patient's right: flip to radiological display
        vol = vol[:, :, ::-1]
    if col_dir[1] < 0:
        vol = vol[:, ::-1, :]
    return np.ascontiguousarray(vol, dtype=np.float32), (sz, psp[0], psp[1])


def read_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file, a DICOM file or a DICOM series folder as ``(volume_hu, spacing_zyx_mm)``."""
    p = Path(path)
    if p.is_file() and is_nifti(p):
        return read_nifti(p)
    if p.is_dir() or (p.is_file() and (p.suffix.lower() in (".dcm", ".dicom", "") or _has_dicm(p))):
        return read_dicom_series(p)
    if not p.exists():
        raise InputError("no such file or folder", p)
    raise InputError("unsupported file type: expected a NIfTI file (.nii, .nii.gz), a DICOM file or a DICOM series folder", p)


def _has_dicm(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False
