"""The midline DICOM reader shares the mediastinum reader's checks (CT only, one series, axial or tilted up to 30 deg with a warning,
one pixel spacing, no missing or duplicate slices, geometry present), skips a DICOMDIR or a stray non-DICOM file
in a series folder, and recognises DICOM files by their DICM preamble whatever their name (PACS exports)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from medzoo.errors import InputError  # noqa: E402
from medzoo.tasks.midline.reader import kind_of, read_slice  # noqa: E402


@pytest.fixture(scope="module")
def ct_small() -> Path:
    p = get_testdata_file("CT_small.dcm", download=False)
    if p is None:
        pytest.skip("pydicom's test file CT_small.dcm is not installed")
    return Path(p)


def _series(src: Path, folder: Path, zs: list[float], *, edit=None) -> Path:  # type: ignore[no-untyped-def]
    """Copies of CT_small at positions ``zs``, pixel values tagged with the slice number (+100 per slice)."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for k, z in enumerate(zs):
        ds = pydicom.dcmread(str(src))
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 100 * k).tobytes()
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1]), z]
        ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), uid
        if edit is not None:
            edit(k, ds)
        ds.save_as(str(folder / f"im{len(zs) - k:03d}.dcm"))
    return folder


def test_series_folder_reads_in_ascending_z(ct_small: Path, tmp_path: Path) -> None:
    folder = _series(ct_small, tmp_path / "s", [0.0, 5.0, 10.0])
    first, sp = read_slice(folder, 0)
    last, _ = read_slice(folder, 2)
    assert sp == pytest.approx((0.661468, 0.661468))
    assert float(np.median(last - first)) == pytest.approx(200.0)


def test_mr_is_refused(tmp_path: Path) -> None:
    mr = get_testdata_file("MR_small.dcm", download=False)
    if mr is None:
        pytest.skip("pydicom's MR_small.dcm is not installed")
    with pytest.raises(InputError, match="not a CT"):
        read_slice(mr)


@pytest.mark.parametrize("case,edit,zs,match", [
    ("missing slice", None, [0.0, 5.0, 15.0, 20.0], "uneven slice spacing"),
    ("duplicate", None, [0.0, 5.0, 5.0], "duplicate slice positions"),
    ("mixed series", lambda k, ds: setattr(ds, "SeriesInstanceUID", generate_uid()), [0.0, 5.0], "mixes 2 DICOM series"),
    ("gantry tilt beyond 30 deg", lambda k, ds: setattr(ds, "GantryDetectorTilt", 35.0), [0.0, 5.0], "gantry tilt"),
    ("sheared beyond 30 deg", lambda k, ds: setattr(ds, "ImagePositionPatient",
                                                    [float(ds.ImagePositionPatient[0]), 4.0 * k, float(ds.ImagePositionPatient[2])]),
     [0.0, 5.0, 10.0], "gantry tilt"),
    ("mixed pixel spacing", lambda k, ds: setattr(ds, "PixelSpacing", [0.9, 0.9] if k else [0.661468, 0.661468]),
     [0.0, 5.0], "PixelSpacing"),
    ("missing orientation", lambda k, ds: delattr(ds, "ImageOrientationPatient") if k else None, [0.0, 5.0],
     "ImageOrientationPatient"),
])
def test_bad_series_is_refused(ct_small: Path, tmp_path: Path, case: str, edit, zs: list[float], match: str) -> None:  # type: ignore[no-untyped-def]
    folder = _series(ct_small, tmp_path / "s", zs, edit=edit)
    with pytest.raises(InputError, match=match):
        read_slice(folder, 0)


def test_single_file_without_orientation_is_refused(ct_small: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(str(ct_small))
    del ds.ImageOrientationPatient
    ds.save_as(str(tmp_path / "x.dcm"))
    with pytest.raises(InputError, match="geometry|ImageOrientationPatient"):
        read_slice(tmp_path / "x.dcm")


def test_dicomdir_and_stray_file_in_a_folder_are_skipped(ct_small: Path, tmp_path: Path) -> None:
    folder = _series(ct_small, tmp_path / "s", [0.0, 5.0])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d = pydicom.Dataset()
    d.file_meta = meta
    d.FileSetID = "EXPORT"
    d.save_as(str(folder / "DICOMDIR"), enforce_file_format=True)
    (folder / "README.txt").write_text("exported by PACS")
    hu, sp = read_slice(folder, 1)
    assert hu.shape == (128, 128) and sp == pytest.approx((0.661468, 0.661468))


def test_dicom_without_suffix_is_recognised(ct_small: Path, tmp_path: Path) -> None:
    shutil.copy(ct_small, tmp_path / "IM0001")
    shutil.copy(ct_small, tmp_path / "slice.dcm")
    assert kind_of(tmp_path / "IM0001") == "dicom"
    a, _ = read_slice(tmp_path / "IM0001")
    b, _ = read_slice(tmp_path / "slice.dcm")
    np.testing.assert_array_equal(a, b)
    (tmp_path / "notes").write_text("not dicom")
    with pytest.raises(InputError, match="unsupported file type"):
        read_slice(tmp_path / "notes")


@pytest.mark.parametrize("edit", [
    lambda k, ds: setattr(ds, "GantryDetectorTilt", 15.0),
    lambda k, ds: setattr(ds, "ImagePositionPatient",
                          [float(ds.ImagePositionPatient[0]), 1.0 * k, float(ds.ImagePositionPatient[2])]),
], ids=["tilt tag 15 deg", "sheared positions ~11 deg"])
def test_gantry_tilted_head_ct_is_read_with_a_warning(ct_small: Path, tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Routine head CT is often tilted along the orbitomeatal line and the shift is read in the acquired plane:
    midline accepts up to 30 deg with a warning (mediastinum still refuses any tilt)."""
    from medzoo.errors import MedzooWarning
    from medzoo.tasks.mediastinum.volume_io import read_dicom_series

    folder = _series(ct_small, tmp_path / "s", [0.0, 5.0, 10.0], edit=edit)
    with pytest.warns(MedzooWarning, match="gantry-tilted series"):
        hu, _ = read_slice(folder, 1)
    assert hu.shape == (128, 128)
    with pytest.raises(InputError, match="gantry tilt|slice normal"):
        read_dicom_series(folder)
