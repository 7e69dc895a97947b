"""CQ500-template warp set: real-anatomy slices with a known, synthetic midline shift (skips without the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medzoo.tasks.midline.geometry import midline_shift_mm

pytestmark = pytest.mark.realdata


def _lag_px(a: np.ndarray, b: np.ndarray, x: float, y: float, half: int = 3, rows: int = 1) -> float:
    """Lateral displacement (pixels) of the pattern around (x, y) from a to b, by normalised cross-correlation."""
    r = int(round(y))
    p0, p1 = a[r - rows: r + rows + 1].mean(0), b[r - rows: r + rows + 1].mean(0)
    xi = int(round(x))
    tpl = p0[xi - half: xi + half + 1] - p0[xi - half: xi + half + 1].mean()
    lags = np.arange(-12, 13)
    segs = [p1[xi - half + L: xi + half + 1 + L] - p1[xi - half + L: xi + half + 1 + L].mean() for L in lags]
    score = np.array([np.dot(tpl, g) / (np.linalg.norm(g) + 1e-6) for g in segs])
    i = int(np.argmax(score))
    frac = 0.0
    if 0 < i < len(lags) - 1:
        s0, s1, s2 = score[i - 1: i + 2]
        frac = 0.5 * (s0 - s2) / (s0 - 2 * s1 + s2)
    return float(lags[i] + frac)


def test_template_landmarks_are_plausible(data_root: Path) -> None:
    from medzoo.tasks.midline.cq500 import load_slice

    ts = load_slice(66, data_root)
    (xa, ya), (xs, ys), (xp, yp) = ts.points
    assert ts.spacing_mm == (2.0, 2.0) and xa == xs == xp
    assert abs(xs - 63.5) < 3                              # the template is centred: midline near the middle column
    assert ya < ys < yp and 140 < (yp - ya) * 2.0 < 190     # inner-table AP length of an adult head, mm
    col = ts.hu[:, int(round(xs))]
    assert col[int(ya) - 2] > 300 and col[int(np.ceil(ya)) + 2] < 100     # bone above, brain below the anterior point
    assert col[int(np.ceil(yp)) + 2] > 300 and col[int(yp) - 2] < 100
    assert ts.hu.min() == -1000.0                           # background set to air


@pytest.mark.parametrize("shift", [-10.0, 6.0, 15.0])
def test_warp_moves_the_septum_by_the_intended_shift(data_root: Path, shift: float) -> None:
    from medzoo.tasks.midline.cq500 import load_slice, warp

    base = load_slice(65, data_root)
    moved = warp(base, shift, lesion=False)
    assert moved.shift_mm == pytest.approx(shift, abs=1e-9)
    assert midline_shift_mm(moved.points, moved.spacing_mm) == pytest.approx(shift, abs=1e-9)
    (xa, ya), (xs, ys), (xp, yp) = base.points
    # measured on the pixels: the septum region moves by shift, the falx attachments do not move
    assert _lag_px(base.hu, moved.hu, xs, ys) * 2.0 == pytest.approx(shift, abs=0.5)
    for x, y in ((xa, ya + 2), (xp, yp - 2)):
        assert abs(_lag_px(np.clip(base.hu, -50, 150), np.clip(moved.hu, -50, 150), x, y)) * 2.0 < 0.5
    bone = base.hu > 300
    np.testing.assert_array_equal(moved.hu[bone], base.hu[bone])          # the skull is never warped


def test_warp_set_is_evaluation_only_and_well_formed(data_root: Path) -> None:
    from medzoo import InputError, get_task
    from medzoo.tasks.midline.cq500 import SHIFTS_MM, SLICES, CQ500WarpDataset

    task = get_task("midline")
    with pytest.raises(InputError, match="evaluation only"):
        task.build_dataset("cq500-warp", "test", augment=True)
    ds = CQ500WarpDataset(data_root, size=64, grid_spacing=3.2)
    assert len(ds) == len(SLICES) * len(SHIFTS_MM)
    shifts = sorted({round(float(ds[i]["shift_mm"]), 6) for i in range(0, len(ds), 1)})
    assert shifts == sorted(SHIFTS_MM)
