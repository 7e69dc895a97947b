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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def read_dicom_series(path: str | Path, *, require_z_spacing: bool = True,
                      max_tilt_deg: float | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read one axial CT series (a folder of DICOM files, or a single file) as ``(volume, spacing)`` in HU.

    Applies RescaleSlope/RescaleIntercept, orders slices by ImagePositionPatient along the slice normal and
    takes the z spacing from those positions (not SliceThickness). In a folder, files that are not DICOM and
    DICOM objects without pixel data (a DICOMDIR, reports) are skipped. Shared by the midline task's reader.

    Args:
        require_z_spacing: a single slice without SliceThickness is refused; with False its z spacing is NaN.
        max_tilt_deg: accept a gantry-tilted series up to this angle (in the orientation, the GantryDetectorTilt tag
            or sheared slice positions), with a warning: the slices are then read in their acquired, tilted plane.
            None (default): refused beyond the axial tolerances.

    Raises:
        InputError: no DICOM file, a file that is not CT, files from more than one series, non-axial, tilted
            (gantry tilt) or inconsistent geometry (size, orientation, pixel spacing), duplicate or unevenly
            spaced (missing) slices.
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
    if len(files) > 1:  # a DICOMDIR or another non-image object beside the slices is not part of the series
        dss = [(f, ds) for f, ds in dss if "PixelData" in ds]
    elif dss and "PixelData" not in dss[0][1]:
        raise InputError("DICOM file holds no image (no PixelData; a DICOMDIR or a report?)", dss[0][0])
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
    except AttributeError as e:
        raise InputError(f"DICOM header lacks geometry ({e})", dss[0][0]) from e
    tilt_ok = max_tilt_deg is not None
    row_dir, col_dir, normal = check_axial_orientation(
        iop, p, tolerance_deg=max(AXIAL_TOLERANCE_DEG, max_tilt_deg) if tilt_ok else AXIAL_TOLERANCE_DEG)  # type: ignore[type-var]
    check_gantry_tilt(dss, tolerance_deg=max_tilt_deg if tilt_ok else GANTRY_TILT_TOLERANCE_DEG)  # type: ignore[arg-type]
    psp = check_pixel_spacing(dss)
    pos, slices, ipps = [], [], []
    for f, ds in dss:
        if "ImageOrientationPatient" not in ds:
            raise InputError("DICOM slice lacks ImageOrientationPatient; its geometry is unknown", f)
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols) or not np.allclose(
                [float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-3):
            raise InputError("slice geometry differs from the rest of the series (size or orientation)", f)
        ipp = getattr(ds, "ImagePositionPatient", None)
        if ipp is None:
            raise InputError("DICOM slice lacks ImagePositionPatient; cannot order slices", f)
        ipps.append([float(v) for v in ipp])
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
    if not tilt_ok:
        check_slices_follow_normal(np.asarray(ipps)[order], normal, p)
    else:
        tag = max(abs(float(getattr(ds, "GantryDetectorTilt", 0) or 0)) for _, ds in dss)
        plane = float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]))))))
        steps = np.diff(np.asarray(ipps, dtype=np.float64)[order], axis=0)
        lens = np.linalg.norm(steps, axis=1)
        shear = float(np.degrees(np.arccos(np.clip(np.abs(steps @ normal)[lens > 0] / lens[lens > 0], 0, 1))).max()) \
            if (lens > 0).any() else 0.0
        tilt = max(tag, plane, shear)
        if tilt > max_tilt_deg:  # type: ignore[operator]
            raise InputError(f"gantry tilt of {tilt:.1f} deg (at most {max_tilt_deg:g} accepted); correct the tilt "
                             "(resample) first", p)
        if tilt > AXIAL_TOLERANCE_DEG:
            import warnings

            from medzoo.errors import MedzooWarning

            warnings.warn(f"{p}: gantry-tilted series ({tilt:.1f} deg); read in its acquired, tilted plane",
                          MedzooWarning, stacklevel=2)
    if len(pos_s) > 1:
        gaps = np.diff(pos_s)
        if gaps.min() < 1e-3:
            raise InputError("series holds duplicate slice positions (two acquisitions or repeated files?)", p)
        if gaps.max() - gaps.min() > 0.05 * gaps.mean() + 0.01:
            raise InputError(f"uneven slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm); resample the series first", p)
        sz = float(gaps.mean())
    else:
        sz = float(getattr(ref, "SliceThickness", 0) or 0) or float(getattr(ref, "SpacingBetweenSlices", 0) or 0)
        if sz <= 0 and require_z_spacing:
            raise InputError("single DICOM slice without SliceThickness: the z spacing is unknown", p)
        sz = sz if sz > 0 else float("nan")
    if normal[2] < 0:  # slice normal points inferiorly: stored order is reversed w.r.t. +S
        vol = vol[::-1]
    if row_dir[0] < 0:  # columns run to the patient's right: flip to radiological display
        vol = vol[:, :, ::-1]
    if col_dir[1] < 0:
        vol = vol[:, ::-1, :]
    return np.ascontiguousarray(vol, dtype=np.float32), (sz, psp[0], psp[1])


# -- geometry checks of a DICOM series, importable on their own (the midline reader shares them) --------------------

AXIAL_TOLERANCE_DEG = 1.0  # largest angle of the rows / columns from the patient's x / y axes still read as axial
GANTRY_TILT_TOLERANCE_DEG = 0.5  # largest GantryDetectorTilt accepted


def check_axial_orientation(iop: Sequence[float], where: str | Path | None = None, *,
                            tolerance_deg: float = AXIAL_TOLERANCE_DEG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refuse an ImageOrientationPatient that is not axial within ``tolerance_deg``: rows along the patient's
    x axis (either sign) and columns along y (either sign), i.e. no oblique or tilted plane (gantry tilt stored in
    the orientation) and no in-plane rotation. Returns ``(row_dir, col_dir, normal)`` (unit vectors, LPS).

    Raises:
        InputError: not six finite numbers, or an angle above the tolerance (the message gives the angles).
    """
    v = np.asarray([float(x) for x in iop], dtype=np.float64)
    if v.shape != (6,) or not np.all(np.isfinite(v)):
        raise InputError(f"ImageOrientationPatient must be 6 numbers, got {list(iop)}", where)
    row_dir, col_dir = v[:3], v[3:]
    nr, nc = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if nr < 1e-6 or nc < 1e-6:
        raise InputError(f"ImageOrientationPatient {v.round(3).tolist()} has a zero direction", where)
    row_dir, col_dir = row_dir / nr, col_dir / nc
    row_deg = float(np.degrees(np.arccos(min(1.0, abs(row_dir[0])))))
    col_deg = float(np.degrees(np.arccos(min(1.0, abs(col_dir[1])))))
    if max(row_deg, col_deg) > tolerance_deg:
        raise InputError(f"not an axial series: ImageOrientationPatient {v.round(4).tolist()} has its rows "
                         f"{row_deg:.1f} deg from the patient's x axis and its columns {col_deg:.1f} deg from y "
                         f"(tilted / oblique or rotated plane; at most {tolerance_deg:g} deg accepted); reformat "
                         "(resample) to a true axial series first", where)
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def check_gantry_tilt(datasets: Sequence[tuple[Path, Any]], *,
                      tolerance_deg: float = GANTRY_TILT_TOLERANCE_DEG) -> None:
    """Refuse a series whose slices record a GantryDetectorTilt (0018,1120) above ``tolerance_deg``.

    ``datasets``: ``(file, pydicom Dataset)`` pairs. A tilt that is only in the slice positions (sheared
    series) is caught by :func:`check_slices_follow_normal`, one in the orientation by :func:`check_axial_orientation`.
    """
    for f, ds in datasets:
        tilt = float(getattr(ds, "GantryDetectorTilt", 0) or 0)
        if abs(tilt) > tolerance_deg:
            raise InputError(f"acquired with gantry tilt ({tilt:g} degrees); correct the tilt (resample) first", f)


def check_pixel_spacing(datasets: Sequence[tuple[Path, Any]], *, rtol: float = 1e-3) -> tuple[float, float]:
    """The series' PixelSpacing ``(row, column)`` in mm, refusing a slice without it, a non-positive value, or a
    slice whose PixelSpacing differs from the first slice's (relative tolerance ``rtol``): a volume's in-plane
    spacing must hold for every slice.

    ``datasets``: ``(file, pydicom Dataset)`` pairs.
    """
    ref_file, psp = None, None
    for f, ds in datasets:
        if "PixelSpacing" not in ds:
            raise InputError("DICOM slice lacks PixelSpacing; its geometry is unknown", f)
        try:
            sp = [float(v) for v in ds.PixelSpacing]
        except (TypeError, ValueError) as e:
            raise InputError(f"unreadable PixelSpacing {ds.PixelSpacing!r}", f) from e
        if len(sp) != 2 or not all(np.isfinite(sp)) or min(sp) <= 0:
            raise InputError(f"PixelSpacing must be two positive numbers, got {sp}", f)
        if psp is None:
            ref_file, psp = f, sp
        elif not np.allclose(sp, psp, rtol=rtol, atol=0):
            raise InputError(f"PixelSpacing {sp} differs from the rest of the series ({psp} in "
                             f"{Path(ref_file).name}); mixed in-plane spacing: put one series per folder", f)
    if psp is None:
        raise InputError("no DICOM slice to read PixelSpacing from", None)
    return psp[0], psp[1]


def check_slices_follow_normal(positions: np.ndarray, normal: np.ndarray, where: str | Path | None = None) -> None:
    """Refuse slice positions (``(N, 3)`` ImagePositionPatient, sorted along ``normal``) whose steps leave the slice
    normal: a gantry-tilted (sheared) series whose orientation says axial."""
    pos = np.asarray(positions, dtype=np.float64)
    if len(pos) < 2:
        return
    step = np.diff(pos, axis=0)  # position steps between neighbouring slices
    shear = np.linalg.norm(step - np.outer(step @ normal, normal), axis=1)
    if shear.max() > 0.01 * max(1.0, float(np.abs(step @ normal).max())) + 0.01:
        raise InputError("slice positions do not follow the slice normal (gantry tilt / sheared series); "
                         "correct the tilt (resample) first", where)


def read_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file, a DICOM file or a DICOM series folder as ``(volume_hu, spacing_zyx_mm)``."""
    p = Path(path)
    if p.is_file() and is_nifti(p):
        return read_nifti(p)
    if p.is_dir() or (p.is_file() and (p.suffix.lower() in (".dcm", ".dicom", "") or has_dicm_magic(p))):
        return read_dicom_series(p)
    if not p.exists():
        raise InputError("no such file or folder", p)
    raise InputError("unsupported file type: expected a NIfTI file (.nii, .nii.gz), a DICOM file or a DICOM series folder", p)


def has_dicm_magic(p: Path) -> bool:
    """True when ``p`` starts with the DICOM preamble (``DICM`` at byte 128), whatever its name."""
    try:
        with open(p, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False

