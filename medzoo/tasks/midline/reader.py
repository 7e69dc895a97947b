"""Read one axial slice in HU, in radiological display orientation, from NIfTI, DICOM or NumPy files.

Display orientation: row 0 is anterior, column 0 is the patient's right (image left). NIfTI volumes are
reoriented through their affine (``nibabel.as_closest_canonical``, RAS+), DICOM files and series
through the mediastinum task's reader (:func:`medzoo.tasks.mediastinum.volume_io.read_dicom_series`): CT only,
one series, axial or gantry-tilted up to 30 deg (warned: routine head CT is often tilted, and the shift is
measured in the acquired plane), consistent size/orientation/pixel spacing, no duplicate or missing slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo.errors import InputError
from medzoo.tasks.mediastinum.volume_io import has_dicm_magic, read_dicom_series

MAX_TILT_DEG = 30.0  # gantry tilt accepted for head CT (warned): the orbitomeatal tilt of routine head CT is ~10-25 deg

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if path.suffix.lower() in DICOM_SUFFIXES or path.is_dir():
        return "dicom"
    if path.suffix.lower() == ".npy":
        return "npy"
    if path.is_file() and has_dicm_magic(path):  # PACS exports often have no suffix (IM0001) or another one
        return "dicom"
    raise InputError(f"unsupported file type {path.suffix!r}; expected NIfTI (.nii/.nii.gz), DICOM (a file with the "
                     "DICM preamble or a series folder) or NumPy (.npy)", path)


def nifti_display_volume(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """``(Z, H, W)`` HU volume in display orientation (axial slices along axis 0, inferior first) and spacing."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise InputError(f"cannot read NIfTI ({type(e).__name__}: {e})", path) from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(f"expected a 3-D (or 2-D) NIfTI image, got shape {data.shape}", path)
    zooms = img.header.get_zooms()
    # RAS+: axis0 -> patient's right, axis1 -> anterior. Display: column -> patient's left, row -> posterior.
    vol = np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))
    return vol, (float(zooms[1]), float(zooms[0]))


def read_slice(path: str | Path, slice_index: int | None = None, *,
               spacing_mm: float | tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """One axial slice in HU (display orientation) and its ``(row_mm, col_mm)`` spacing (None if the file has none).

    Args:
        path: a NIfTI volume or slice, a DICOM file, a DICOM series folder, or a ``.npy`` array (2-D, or 3-D with
            slices along axis 0, already in display orientation).
        slice_index: axial slice of a volume (NIfTI: index along the superior axis, inferior first; DICOM
            series: index in ascending z). Required for volumes with more than one slice.
        spacing_mm: overrides the file's spacing (required for ``.npy``).

    Raises:
        InputError: unreadable file, a volume without ``slice_index``, an index out of range.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", p)
    kind = kind_of(p)
    sp: tuple[float, float] | None
    if kind == "nifti":
        vol, sp = nifti_display_volume(p)
    elif kind == "npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"cannot read .npy ({type(e).__name__}: {e})", p) from e
        vol, sp = (arr[None] if arr.ndim == 2 else arr), None
    else:  # a DICOM file or series folder, with the mediastinum reader's checks; slices in ascending z
        # head CT is often acquired with gantry tilt, and midline shift is read in the acquired plane
        vol, (_, sr, sc) = read_dicom_series(p, require_z_spacing=False, max_tilt_deg=MAX_TILT_DEG)
        sp = (sr, sc)
    if vol.ndim != 3:
        raise InputError(f"expected a 2-D slice or a 3-D volume, got shape {vol.shape}", p)
    if slice_index is None:
        if vol.shape[0] != 1:
            raise InputError(f"this is a volume of {vol.shape[0]} axial slices; pass slice_index (--slice-index) "
                             "for the slice at the level of the lateral ventricles", p)
        slice_index = 0
    if not -vol.shape[0] <= slice_index < vol.shape[0]:
        raise InputError(f"slice_index {slice_index} out of range for {vol.shape[0]} slices", p)
    if spacing_mm is not None:
        sp = (float(spacing_mm), float(spacing_mm)) if np.isscalar(spacing_mm) else tuple(float(v) for v in spacing_mm)  # type: ignore[union-attr,assignment]
    return np.ascontiguousarray(vol[slice_index], dtype=np.float32), sp


def write_nifti_slice(path: Path, hu: np.ndarray, spacing: tuple[float, float]) -> None:
    """Write a display-orientation HU slice as a one-slice int16 NIfTI in LAS orientation (atomic)."""
    import nibabel as nib

    from medzoo.io import atomic_path

    sr, sc = spacing
    data = np.round(hu.T[:, ::-1]).astype(np.int16)[:, :, None]        # axis0 -> left, axis1 -> anterior
    img = nib.Nifti1Image(data, np.diag([-sc, sr, 1.0, 1.0]))
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp.with_name(tmp.name + ".nii.gz")))
        tmp.with_name(tmp.name + ".nii.gz").replace(tmp)
