"""Midline task: geometry, SYNTHETIC generator, metrics, prediction wrapper, bad input, protocol."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from medzoo import InputError, get_task
from medzoo.core import Task
from medzoo.tasks import midline
from medzoo.tasks.midline import preprocess as pp
from medzoo.tasks.midline.generator import SITES, case_seed, generate
from medzoo.tasks.midline.geometry import midline_shift_mm, radial_errors_mm
from medzoo.tasks.midline.metric import MeanRadialError, MidlineMetrics, midline_metrics


# ---- geometry --------------------------------------------------------------------------------------------------
def test_shift_sign_and_magnitude_on_hand_made_points() -> None:
    falx = [[100.0, 20.0], None, [100.0, 220.0]]
    to_left = np.array([falx[0], [110.0, 80.0], falx[2]])       # septum to the image right = patient's left
    to_right = np.array([falx[0], [92.0, 80.0], falx[2]])
    assert midline_shift_mm(to_left, 0.5) == pytest.approx(5.0)
    assert midline_shift_mm(to_right, 0.5) == pytest.approx(-4.0)
    assert midline_shift_mm(np.array([falx[0], [100.0, 150.0], falx[2]]), 0.5) == pytest.approx(0.0, abs=1e-12)
    # anisotropic pixels: only the column spacing matters for a vertical falx
    assert midline_shift_mm(to_left, (0.4, 0.8)) == pytest.approx(8.0)


def test_shift_is_perpendicular_for_a_tilted_falx() -> None:
    a, p = np.array([0.0, 0.0]), np.array([30.0, 40.0])             # falx 50 px long, tilted
    normal = np.array([40.0, -30.0]) / 50.0                          # unit normal pointing to the image right
    s = a + 0.5 * (p - a) + 7.0 * normal
    assert midline_shift_mm(np.stack([a, s, p]), 1.0) == pytest.approx(7.0)
    assert midline_shift_mm(np.stack([a, a + 0.3 * (p - a) - 2.0 * normal, p]), 2.0) == pytest.approx(-4.0)


# ---- generator -------------------------------------------------------------------------------------------------
def test_generator_is_deterministic_and_fast_enough_to_train_on() -> None:
    a, b = generate(123, "synth-b"), generate(123, "synth-b")
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.points, b.points) and a.shift_mm == b.shift_mm
    assert not np.array_equal(generate(124, "synth-b").hu, a.hu)
    assert case_seed("synth-a", "train", 0) != case_seed("synth-a", "test", 0)
    assert a.hu.dtype == np.float32 and a.hu.min() <= -1000 and a.hu.max() > 500   # HU: air and bone


@pytest.mark.parametrize("site", sorted(SITES))
def test_ground_truth_shift_equals_requested(site: str) -> None:
    for k, s in enumerate((-17.0, 0.0, 6.5)):
        g = generate(k, site, shift_mm=s)
        assert g.shift_mm == pytest.approx(s, abs=1e-6)
        h, w = g.hu.shape
        assert ((0 <= g.points[:, 0]) & (g.points[:, 0] < w) & (0 <= g.points[:, 1]) & (g.points[:, 1] < h)).all()
        assert g.points[0, 1] < g.points[1, 1] < g.points[2, 1]     # anterior at the top


def _row_lag_mm(img0: np.ndarray, img1: np.ndarray, x: float, y: float, spacing: float, half_mm: float = 5.0) -> float:
    """Lateral displacement (mm) of the pattern around (x, y) from img0 to img1, by cross-correlation of rows."""
    r0, r1 = int(round(y - 3 / spacing)), int(round(y + 3 / spacing))
    p0, p1 = img0[r0:r1].mean(0), img1[r0:r1].mean(0)
    hw = int(half_mm / spacing)
    xi = int(round(x))
    tpl = p0[xi - hw: xi + hw + 1] - p0[xi - hw: xi + hw + 1].mean()
    lags = np.arange(-int(25 / spacing), int(25 / spacing) + 1)
    segs = [p1[xi - hw + L: xi + hw + 1 + L] - p1[xi - hw + L: xi + hw + 1 + L].mean() for L in lags]
    score = np.array([np.dot(tpl, g) / (np.linalg.norm(g) + 1e-6) for g in segs])      # normalised correlation
    i = int(np.argmax(score))
    frac = 0.0
    if 0 < i < len(lags) - 1:
        a, b, c = score[i - 1: i + 2]
        frac = 0.5 * (a - c) / (a - 2 * b + c)
    return float((lags[i] + frac) * spacing)


@pytest.mark.parametrize("shift", [-12.0, 7.0, 18.0])
def test_septum_in_the_image_moves_by_the_requested_shift(shift: float) -> None:
    """Measured on the pixels, not the labels: the septum pattern moves by ``shift``, the falx attachments stay."""
    base = generate(7, "synth-a", shift_mm=0.0, lesion="none")
    moved = generate(7, "synth-a", shift_mm=shift, lesion="none")
    sp = base.spacing_mm[1]
    (xa, ya), (xs, ys), (xp, yp) = base.points
    assert _row_lag_mm(base.hu, moved.hu, xs, ys, sp) == pytest.approx(shift, abs=0.6)
    moved_mm = (moved.points[1] - base.points[1]) * np.array([base.spacing_mm[1], base.spacing_mm[0]])
    assert np.linalg.norm(moved_mm) == pytest.approx(abs(shift), abs=1e-6)
    brain0, brain1 = np.clip(base.hu, -50, 150), np.clip(moved.hu, -50, 150)
    assert abs(_row_lag_mm(brain0, brain1, xa, ya + 4 / sp, sp)) < 0.6
    assert abs(_row_lag_mm(brain0, brain1, xp, yp - 4 / sp, sp)) < 0.6


# ---- metrics ---------------------------------------------------------------------------------------------------
def _auroc_ref(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = score[label], score[~label]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def test_metrics_match_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 200, (40, 3, 2))
    pred = true + rng.normal(0, 2.5, true.shape)
    ts = rng.uniform(-20, 20, 40)
    ps = ts + rng.normal(0, 2, 40)
    err = np.sqrt(((pred - true) ** 2).sum(-1))
    got = midline_metrics(torch.tensor(pred), torch.tensor(true), torch.tensor(ps), torch.tensor(ts))
    assert got["mre_mm"] == pytest.approx(err.mean())
    assert got["sdr_2mm"] == pytest.approx((err <= 2).mean()) and got["sdr_4mm"] == pytest.approx((err <= 4).mean())
    assert got["shift_abs_error_mm"] == pytest.approx(np.abs(ps - ts).mean())
    lab = np.abs(ts) >= 5
    assert got["shift5_sensitivity"] == pytest.approx((np.abs(ps)[lab] >= 5).mean())
    assert got["shift5_specificity"] == pytest.approx((np.abs(ps)[~lab] < 5).mean())
    assert got["shift5_auroc"] == pytest.approx(_auroc_ref(np.abs(ps), lab), abs=1e-6)
    m = MidlineMetrics()
    for i in range(0, 40, 16):   # accumulating in batches gives the same numbers
        m.update(torch.tensor(pred[i:i + 16]), torch.tensor(true[i:i + 16]), torch.tensor(ps[i:i + 16]), torch.tensor(ts[i:i + 16]))
    assert m.compute() == pytest.approx(got)
    mre = MeanRadialError()
    mre.update(torch.tensor(pred), torch.tensor(true))
    assert float(mre.compute()) == pytest.approx(err.mean())
    assert radial_errors_mm(pred[0] / 0.5, true[0] / 0.5, 0.5) == pytest.approx(err[0])
    assert math.isnan(midline_metrics(torch.zeros(2, 3, 2), torch.zeros(2, 3, 2), torch.zeros(2), torch.zeros(2))["shift5_auroc"])


# ---- prediction wrapper ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model() -> midline.MidlineModel:
    torch.manual_seed(0)
    task = get_task("midline")
    net = task.build_model(size=64, spacing_mm=3.2, decoder_channels=[16, 16, 8, 8, 8])
    return task.wrap(net, {"name": "tiny"})  # type: ignore[return-value]


def test_predict_returns_input_pixel_coordinates_for_any_size(tiny_model: midline.MidlineModel) -> None:
    import cv2

    s = generate(3, "synth-b", shift_mm=5.0)
    pts = tiny_model.predict(s.hu, s.spacing_mm)
    assert pts.shape == (3, 2) and pts.dtype == np.float64 and np.isfinite(pts).all()
    big = cv2.resize(s.hu, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    pts2 = tiny_model.predict(big, (s.spacing_mm[0] / 2, s.spacing_mm[1] / 2))
    # the same anatomy at twice the matrix: the same place in mm, i.e. twice the pixel coordinates (+0.5 px centre offset)
    np.testing.assert_allclose(pts2, 2 * pts + 0.5, atol=2 * 3.2 / s.spacing_mm[1])
    assert tiny_model.midline_shift_mm(s.hu, s.spacing_mm) == pytest.approx(midline_shift_mm(pts, s.spacing_mm))


def test_grid_mapping_round_trips() -> None:
    s = generate(5, "synth-d", shift_mm=-9.0)
    g, A = pp.to_grid(s.hu, s.spacing_mm, 128, 1.6)
    back = pp.grid_to_input(pp.input_to_grid(s.points, A), A)
    np.testing.assert_allclose(back, s.points, atol=1e-9)
    gp = pp.input_to_grid(s.points, A)
    assert midline_shift_mm(gp, 1.6) == pytest.approx(-9.0, abs=1e-6)    # the grid keeps true mm
    np.testing.assert_allclose(pp.from_norm(pp.to_norm(gp, 128), 128), gp, atol=1e-9)


def test_shipped_weights_find_the_midline_on_a_synthetic_slice() -> None:
    model = midline.pretrained()
    assert model.meta["synthetic"] is True and model.meta["summary"].startswith("SYNTHETIC")
    mre, shift_err = [], []
    for k, shift in enumerate((-14.0, -6.0, 0.0, 3.0, 8.0, 16.0)):     # a training site, seeds outside its splits
        s = generate(case_seed("synth-b", "weights-test", k), "synth-b", shift_mm=shift)
        pts = model.predict(s.hu, s.spacing_mm)
        mre.append(radial_errors_mm(pts, s.points, s.spacing_mm).mean())
        shift_err.append(abs(model.midline_shift_mm(s.hu, s.spacing_mm) - shift))
    # loose bounds (the benchmark measures the real numbers, incl. the unseen site): a broken model is off by tens of mm
    assert np.mean(mre) < 5.0 and np.mean(shift_err) < 3.5


# ---- bad input -------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_clearly(tiny_model: midline.MidlineModel) -> None:
    s = generate(1, "synth-a")
    with pytest.raises(InputError, match="slice_index"):
        tiny_model.predict(np.stack([s.hu, s.hu]), 0.5)
    assert tiny_model.predict(np.stack([s.hu, s.hu]), s.spacing_mm, slice_index=1).shape == (3, 2)
    for bad in (0.0, -0.5, (0.5, 0.0), float("nan")):
        with pytest.raises(InputError, match="spacing"):
            tiny_model.predict(s.hu, bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="constant"):
        tiny_model.predict(np.full((200, 200), 30.0), 0.5)
    nan = s.hu.copy()
    nan[10, 10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tiny_model.predict(nan, 0.5)
    png = (np.clip((s.hu + 40) / 120, 0, 1) * 255).astype(np.uint8)   # a windowed 8-bit export
    with pytest.raises(InputError, match="Hounsfield"):
        tiny_model.predict(png, s.spacing_mm)
    assert tiny_model.predict(png, s.spacing_mm, window=(20, 120)).shape == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tiny_model.predict(png, s.spacing_mm, assume_hu=True).shape == (3, 2)


def test_volume_file_needs_a_slice_index(tiny_model: midline.MidlineModel, tmp_path: Path) -> None:
    import nibabel as nib

    s = generate(2, "synth-c")
    vol = np.round(np.stack([s.hu.T[:, ::-1]] * 3, axis=-1)).astype(np.int16)    # LAS volume of three identical slices
    nib.save(nib.Nifti1Image(vol, np.diag([-s.spacing_mm[1], s.spacing_mm[0], 5.0, 1.0])), str(tmp_path / "v.nii.gz"))
    with pytest.raises(InputError, match="slice_index"):
        tiny_model.predict_path(tmp_path / "v.nii.gz")
    res = tiny_model.predict_path(tmp_path / "v.nii.gz", slice_index=1)
    np.testing.assert_allclose(res.points, tiny_model.predict(np.round(s.hu), s.spacing_mm), atol=0.02)
    with pytest.raises(InputError, match="no such file"):
        tiny_model.predict_path(tmp_path / "missing.nii.gz", slice_index=0)


# ---- protocol and user layout ----------------------------------------------------------------------------------
def test_protocol_conformance_and_spec() -> None:
    task = get_task("midline")
    assert isinstance(task, Task) and isinstance(task, midline.MidlineTask)
    assert task.spec.synthetic and task.spec.target_kind == "landmarks" and task.spec.classes == midline.LANDMARKS
    assert {"synth-a", "synth-b", "synth-c", "synth-d", "synth-x"} <= set(task.builtin_sites())
    with pytest.raises(InputError, match="evaluation only"):
        task.build_dataset("cq500-warp", "train")


def test_write_site_then_read_it_back_as_a_user_folder(tiny_model: midline.MidlineModel, tmp_path: Path) -> None:
    task = get_task("midline")
    assert task.write_site("synth-d", "test", tmp_path / "site", n=3) == 3  # type: ignore[attr-defined]
    assert "SYNTHETIC" in (tmp_path / "site" / "README.txt").read_text()
    folder = task.build_dataset(tmp_path / "site", "all")
    builtin = task.build_dataset("synth-d", "test")
    assert len(folder) == 3  # type: ignore[arg-type]
    for i in range(3):
        a, b = folder[i], builtin[i]
        assert float(a["shift_mm"]) == pytest.approx(float(b["shift_mm"]), abs=1e-3)
        torch.testing.assert_close(a["target"], b["target"], atol=2e-3, rtol=0)
    written = task.predict_files(tiny_model, [tmp_path / "site" / "images" / "synth-d_test_0000.nii.gz"], tmp_path / "out")
    assert sorted(p.suffix for p in written) == [".json", ".png"] and all(p.stat().st_size > 0 for p in written)
    with pytest.raises(InputError, match="landmarks.csv"):
        task.build_dataset(tmp_path / "out", "train")


def test_missing_cq500_template_names_the_template_not_the_fundus_sets(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import medzoo.io
    from medzoo.cli.main import main
    from medzoo.tasks.midline.cq500 import CQ500WarpDataset

    def no_data(required: bool = True) -> Path | None:  # as data_root behaves when no data folder exists
        if required:
            raise InputError("real data sets not found: set MEDZOO_DATA to the folder holding DRIVE/, STARE/, HRF/, "
                             "Drishti-GS1/")
        return None

    monkeypatch.setattr(medzoo.io, "data_root", no_data)
    monkeypatch.delenv("MEDZOO_DATA", raising=False)
    with pytest.raises(InputError, match=r"CQ500 CT brain template.*MEDZOO_DATA.*CT_brain_template_CQ500/") as e:
        get_task("midline").build_dataset("cq500-warp", "test")
    assert "DRIVE" not in str(e.value)
    assert main(["evaluate", "midline", "--data", "cq500-warp"]) != 0
    err = capsys.readouterr().err
    assert "CT_brain_template_CQ500" in err and "DRIVE" not in err
    (tmp_path / "data").mkdir()
    with pytest.raises(InputError, match=r"data: .*expected CT_brain_template_CQ500/volumes_2mm/template_with_skull"):
        CQ500WarpDataset(tmp_path / "data")


def test_augmentation_is_replayed_by_the_epoch_seed() -> None:
    """The intensity/noise generator was never reseeded, so a resumed relay lap, or a baseline trained after other
    baselines on the same dataset object, drew other augmentations than an uninterrupted run (found by an audit:
    a killed and resumed midline simulation ended with other numbers). The trainer reseeds each epoch."""
    from medzoo.relay.trainer import reseed_dataset, seed_everything

    task = get_task("midline")
    a = task.build_dataset("synth-a", "train", augment=True)
    b = task.build_dataset("synth-a", "train", augment=True)
    for i in range(3):  # b's generators move on, as in an earlier epoch or baseline
        b[i]

    def epoch(ds, seed: int) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
        seed_everything(seed)
        reseed_dataset(ds, seed)
        return [ds[i]["image"] for i in range(3)]

    first, again = epoch(a, 11), epoch(b, 11)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(torch.equal(x, y) for x, y in zip(first, epoch(a, 12)))  # another epoch, other draws
