"""Midline through DICOM: a SYNTHETIC slice written as a CT DICOM file (pydicom's real CT_small.dcm header as the
template) gives the same landmarks as the array itself, including when the file stores the slice mirrored and
says so in ImageOrientationPatient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from medzoo.tasks import midline  # noqa: E402
from medzoo.tasks.midline.generator import generate  # noqa: E402
from medzoo.weights import list_weights  # noqa: E402

pytestmark = pytest.mark.skipif("midline" not in {w.name for w in list_weights()}, reason="midline weights not shipped")


def _write_ct(path: Path, hu: np.ndarray, spacing: tuple[float, float], *, mirrored: bool) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stored = np.round(hu[:, ::-1] if mirrored else hu).astype(np.int16) + 1024  # unsigned storage with an intercept
    ds.Rows, ds.Columns = stored.shape
    ds.PixelSpacing = [f"{spacing[0]:.6f}", f"{spacing[1]:.6f}"]
    ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0] if mirrored else [1, 0, 0, 0, 1, 0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(str(path))
    return path


@pytest.mark.parametrize("mirrored", [False, True])
def test_dicom_slice_matches_the_array(tmp_path: Path, mirrored: bool) -> None:
    s = generate(7, "synth-b", shift_mm=9.0, lesion="sdh")
    hu = np.round(s.hu).astype(np.float32)
    model = midline.pretrained()
    expected = model.predict(hu, spacing_mm=s.spacing_mm)
    res = model.predict_path(_write_ct(tmp_path / "slice.dcm", hu, s.spacing_mm, mirrored=mirrored))
    np.testing.assert_allclose(res.points, expected, atol=0.05)
    assert res.shift_mm == pytest.approx(midline.midline_shift_mm(expected, s.spacing_mm), abs=0.05)
    assert res.shift_mm == pytest.approx(9.0, abs=3.0)  # toward the patient's left, whatever the storage order
