"""Reading real formats: pydicom's real CT slice, DICOM series ordering/rescale/refusals, NIfTI round trips and
orientation conventions."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medzoo.errors import InputError
from medzoo.tasks.mediastinum.volume_io import read_dicom_series, read_nifti, read_volume, write_nifti


@pytest.fixture(scope="module")
def ct_small() -> Path:
    p = get_testdata_file("CT_small.dcm", download=False)  # shipped inside pydicom: works offline
    if p is None:
        pytest.skip("pydicom's test file CT_small.dcm is not installed")
    return Path(p)


def _series(src: Path, folder: Path, zs: list[float], *, edit=None) -> list[np.ndarray]:
    """Copies of CT_small at positions ``zs`` (pixel values tagged with the slice number); returns the raw slices."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    raws = []
    for k, z in enumerate(zs):
        ds = pydicom.dcmread(str(src))
        arr = ds.pixel_array.astype(np.int16) + 10 * k
        ds.PixelData = arr.tobytes()
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1]), z]
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        if edit is not None:
            edit(k, ds)
        ds.save_as(str(folder / f"im{len(zs) - k:03d}.dcm"))  # file names in the reverse order of z
        raws.append(arr)
    return raws


def test_real_ct_slice_reads_as_hounsfield_units(ct_small: Path) -> None:
    ds = pydicom.dcmread(str(ct_small))
    vol, spacing = read_volume(ct_small)
    assert vol.shape == (1, 128, 128)
    assert spacing == pytest.approx((5.0, 0.661468, 0.661468))
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol[0], expected)
    assert -1100 < vol.min() < vol.max() < 3100


def test_series_sorted_by_position_with_spacing_from_headers(ct_small: Path, tmp_path: Path) -> None:
    zs = [-70.0, -75.0, -72.5, -67.5]  # shuffled; spacing 2.5 mm while SliceThickness says 5
    raws = _series(ct_small, tmp_path / "s", zs)
    vol, spacing = read_dicom_series(tmp_path / "s")
    assert spacing[0] == pytest.approx(2.5)
    order = np.argsort(zs)
    for out_k, src_k in enumerate(order):
        np.testing.assert_array_equal(vol[out_k], raws[src_k].astype(np.float32) - 1024)


def test_rescale_slope_and_intercept_applied(ct_small: Path, tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = 2, -2000

    raws = _series(ct_small, tmp_path / "s", [0.0, 3.0], edit=edit)
    vol, _ = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(vol[0], raws[0].astype(np.float32) * 2 - 2000)


def test_mirrored_row_direction_is_flipped_to_radiological_display(ct_small: Path, tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]

    raws = _series(ct_small, tmp_path / "s", [0.0, 3.0], edit=edit)
    vol, _ = read_dicom_series(tmp_path / "s")
    # normal = row x col = (0, 0, -1), but slices still come back inferior -> superior; columns mirrored
    np.testing.assert_array_equal(vol[0], raws[0][:, ::-1].astype(np.float32) - 1024)
    np.testing.assert_array_equal(vol[1], raws[1][:, ::-1].astype(np.float32) - 1024)


def test_non_ct_series_is_refused(ct_small: Path, tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.Modality = "MR"

    _series(ct_small, tmp_path / "s", [0.0, 3.0], edit=edit)
    with pytest.raises(InputError, match="not a CT"):
        read_dicom_series(tmp_path / "s")


def test_mixed_series_are_refused(ct_small: Path, tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k == 1:
            ds.SeriesInstanceUID = generate_uid()

    _series(ct_small, tmp_path / "s", [0.0, 3.0, 6.0], edit=edit)
    with pytest.raises(InputError, match="mixes 2 DICOM series"):
        read_dicom_series(tmp_path / "s")


def test_duplicate_positions_and_non_dicom_refused(ct_small: Path, tmp_path: Path) -> None:
    _series(ct_small, tmp_path / "dup", [0.0, 0.0])
    with pytest.raises(InputError, match="duplicate slice positions"):
        read_dicom_series(tmp_path / "dup")
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"not dicom at all")
    with pytest.raises(InputError, match=r"x\.dcm"):
        read_volume(bad)
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")


def test_nifti_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1500, size=(7, 20, 24)).astype(np.float32)
    p = write_nifti(tmp_path / "v.nii.gz", vol, (2.5, 0.8, 0.7))
    back, spacing = read_nifti(p)
    np.testing.assert_array_equal(back, vol)
    assert spacing == pytest.approx((2.5, 0.8, 0.7))
    assert nib.aff2axcodes(nib.load(str(p)).affine) == ("L", "P", "S")


def test_nifti_in_ras_storage_is_reoriented(tmp_path: Path) -> None:
    """A volume stored RAS (as many tools write it) comes back in the same display orientation."""
    vol = np.full((5, 16, 18), -1000, np.float32)
    vol[3, 1, 2] = 500.0  # superior slice, anterior (top row), patient's right (left of the image)
    data_ras = vol.transpose(2, 1, 0)[::-1, ::-1, :]  # i -> R, j -> A, k -> S
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data_ras), affine), str(tmp_path / "ras.nii.gz"))
    back, spacing = read_volume(tmp_path / "ras.nii.gz")
    np.testing.assert_array_equal(back, vol)
    assert spacing == pytest.approx((2.5, 0.8, 0.7))
    assert np.unravel_index(back.argmax(), back.shape) == (3, 1, 2)


def test_nifti_2d_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), str(tmp_path / "flat.nii"))
    with pytest.raises(InputError, match="3-D"):
        read_nifti(tmp_path / "flat.nii")


def test_real_ct_passes_the_hounsfield_check_and_raw_stored_values_do_not(ct_small: Path) -> None:
    from medzoo.tasks.mediastinum.preprocess import check_volume

    vol, _ = read_volume(ct_small)
    check_volume(np.repeat(vol, 3, axis=0), ct_small)  # a real CT slice in HU (min -896)
    raw = pydicom.dcmread(str(ct_small)).pixel_array.astype(np.float32)  # stored values, never rescaled
    with pytest.raises(InputError, match=r"CT_small\.dcm: .*RescaleSlope/RescaleIntercept"):
        check_volume(np.repeat(raw[None], 3, axis=0), ct_small)


def test_mixed_pixel_spacing_is_refused(ct_small: Path, tmp_path: Path) -> None:
    def edit(k: int, ds: pydicom.Dataset) -> None:
        if k == 2:
            ds.PixelSpacing = [0.8, 0.8]

    _series(ct_small, tmp_path / "s", [0.0, 3.0, 6.0], edit=edit)
    with pytest.raises(InputError, match="PixelSpacing .* differs from the rest of the series"):
        read_dicom_series(tmp_path / "s")


@pytest.mark.parametrize("deg", [5.0, 15.0, 18.0])
def test_tilted_orientation_is_refused(ct_small: Path, tmp_path: Path, deg: float) -> None:
    """Gantry tilt stored in ImageOrientationPatient (columns tipped towards z), positions along the normal: was read
    as axial up to ~18 degrees."""
    t = np.radians(deg)

    def edit(k: int, ds: pydicom.Dataset) -> None:
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t))]
        normal = np.cross([1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)])
        ds.ImagePositionPatient = [float(v) for v in 3.0 * k * normal]

    _series(ct_small, tmp_path / "s", [0.0, 3.0, 6.0], edit=edit)
    with pytest.raises(InputError, match="not an axial series"):
        read_dicom_series(tmp_path / "s")


def test_gantry_tilt_tag_and_sheared_positions_are_refused(ct_small: Path, tmp_path: Path) -> None:
    def tag(k: int, ds: pydicom.Dataset) -> None:
        ds.GantryDetectorTilt = 12.0

    _series(ct_small, tmp_path / "tag", [0.0, 3.0], edit=tag)
    with pytest.raises(InputError, match="gantry tilt"):
        read_dicom_series(tmp_path / "tag")

    def shear(k: int, ds: pydicom.Dataset) -> None:
        ds.ImagePositionPatient = [0.0, 1.0 * k, 3.0 * k]  # the table moves along z, the slices are stepped in y

    _series(ct_small, tmp_path / "shear", [0.0, 3.0, 6.0], edit=shear)
    with pytest.raises(InputError, match="do not follow the slice normal"):
        read_dicom_series(tmp_path / "shear")


def test_geometry_checks_are_importable_on_their_own() -> None:
    from medzoo.tasks.mediastinum import volume_io as v

    row, col, normal = v.check_axial_orientation([1, 0, 0, 0, 1, 0])
    assert normal.tolist() == [0, 0, 1]
    v.check_axial_orientation([-0.99995, 0.01, 0, 0, 1, 0])  # 0.6 deg: within the tolerance
    with pytest.raises(InputError, match="not an axial series"):
        v.check_axial_orientation([1, 0, 0, 0, 0.95, -0.31])
    with pytest.raises(InputError, match="not an axial series"):
        v.check_axial_orientation([0.95, 0.31, 0, -0.31, 0.95, 0])  # rotated in plane
    a, b = pydicom.Dataset(), pydicom.Dataset()
    a.PixelSpacing, b.PixelSpacing = [0.5, 0.5], [0.5, 0.5004]
    assert v.check_pixel_spacing([(Path("a"), a), (Path("b"), b)]) == (0.5, 0.5)
    b.PixelSpacing = [0.5, 0.6]
    with pytest.raises(InputError, match="differs"):
        v.check_pixel_spacing([(Path("a"), a), (Path("b"), b)])
    b.GantryDetectorTilt = -3
    with pytest.raises(InputError, match="gantry tilt"):
        v.check_gantry_tilt([(Path("a"), a), (Path("b"), b)])
    v.check_slices_follow_normal(np.array([[0, 0, 0], [0, 0, 2.0]]), np.array([0, 0, 1.0]))
