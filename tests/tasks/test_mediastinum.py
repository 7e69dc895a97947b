"""Mediastinum task: generator determinism and radiology, metrics against a reference, predict API, bad input,
the user folder layout, and protocol conformance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from medzoo import get_task
from medzoo.core import Task
from medzoo.errors import InputError
from medzoo.tasks import mediastinum
from medzoo.tasks.mediastinum.generator import CLASSES, SITES, generate_case, site_labels
from medzoo.tasks.mediastinum.metric import MediastinumMetrics, classification_metrics

CLEAN = dataclasses.replace(SITES["synth-d"], name="clean", noise_hu=0.0, hu_offset=0.0, kernel=0.0)


@pytest.fixture(scope="module")
def task() -> mediastinum.MediastinumTask:
    return get_task("mediastinum")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def clf(task: mediastinum.MediastinumTask) -> mediastinum.MediastinumClassifier:
    torch.manual_seed(0)
    return task.wrap(task.build_model())


def _interior(case: mediastinum.generator.Case) -> np.ndarray:
    return case.volume[ndimage.binary_erosion(case.mask, iterations=2)]


# -- generator ------------------------------------------------------------------------------------------------
def test_generation_is_deterministic_by_seed() -> None:
    a, b, c = generate_case("synth-a", 7), generate_case("synth-a", 7), generate_case("synth-a", 8)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert a.bbox == b.bbox and a.label == b.label
    assert not np.array_equal(a.volume, c.volume)


def test_sites_differ_in_acquisition() -> None:
    shapes = {s: generate_case(s, 0).volume.shape for s in SITES}
    spacings = {s: generate_case(s, 0).spacing for s in SITES}
    assert len(set(shapes.values())) == len(SITES) and len(set(spacings.values())) == len(SITES)
    for s, st in SITES.items():
        assert spacings[s] == (st.slice_mm, st.pixel_mm, st.pixel_mm)
    muscle = {s: float(np.median(generate_case(s, 0, label="cyst").volume[:, 2:6, :])) for s in ("synth-b", "synth-c")}
    assert muscle["synth-b"] != muscle["synth-c"]


def test_site_class_mix_is_exact() -> None:
    labels = site_labels("synth-c", "train")
    assert len(labels) == SITES["synth-c"].n_train
    for c, p in zip(CLASSES, SITES["synth-c"].class_mix):
        assert abs(labels.count(c) - p * len(labels)) <= 1
    first = site_labels("synth-a", "test")
    assert first[0] != first[1] and set(first[:12]) == set(CLASSES)  # any prefix is mixed


@pytest.mark.parametrize("seed", range(4))
def test_cyst_is_fluid_and_teratoma_has_fat(seed: int) -> None:
    cyst = _interior(generate_case(CLEAN, seed, label="cyst"))
    assert 0 <= np.median(cyst) <= 20
    for lab in ("thymoma", "lymphoma", "neurogenic", "cyst"):
        assert (_interior(generate_case(CLEAN, seed, label=lab)) < -50).mean() < 0.02, lab
    assert np.median(_interior(generate_case(CLEAN, seed, label="thymoma"))) > 40


def test_teratomas_usually_contain_fat_and_calcification_is_dense() -> None:
    fat = [(_interior(generate_case(CLEAN, s, label="teratoma")) < -50).mean() > 0.01 for s in range(12)]
    assert sum(fat) >= 9
    assert max(generate_case(CLEAN, s, label="teratoma").volume[generate_case(CLEAN, s, label="teratoma").mask].max()
               for s in range(6)) > 250


def test_compartments_follow_the_class() -> None:
    for s in range(6):
        neuro = generate_case(CLEAN, s, label="neurogenic").params["center_mm"]
        thym = generate_case(CLEAN, s, label="thymoma").params["center_mm"]
        assert abs(neuro[2]) > 30 and neuro[1] > 40  # paravertebral: lateral and posterior
        assert thym[1] < -35  # anterior (prevascular)


# -- metrics --------------------------------------------------------------------------------------------------
def _auc_ref(score: np.ndarray, pos: np.ndarray) -> float:
    p, n = score[pos], score[~pos]
    return float(((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (len(p) * len(n)))


def test_metrics_match_a_numpy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 5, (200,), generator=g)
    logits = torch.randn(200, 5, generator=g) + 1.5 * torch.nn.functional.one_hot(t, 5)
    p = logits.softmax(1)
    m = classification_metrics(p, t)
    pn, tn = p.numpy(), t.numpy()
    aucs = [_auc_ref(pn[:, k], tn == k) for k in range(5)]
    assert m["auroc_macro"] == pytest.approx(np.mean(aucs), abs=1e-6)
    pred = pn.argmax(1)
    sens = [(pred[tn == k] == k).mean() for k in range(5)]
    spec = [(pred[tn != k] != k).mean() for k in range(5)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(sens), abs=1e-6)
    for k, c in enumerate(CLASSES):
        assert m[f"sens_{c}"] == pytest.approx(sens[k], abs=1e-6)
        assert m[f"spec_{c}"] == pytest.approx(spec[k], abs=1e-6)
        assert m[f"auroc_{c}"] == pytest.approx(aucs[k], abs=1e-6)
    acc = MediastinumMetrics()
    acc.update(p[:100], t[:100])
    acc.update(p[100:], t[100:])
    out = acc.compute()
    assert out["auroc_macro"] == pytest.approx(m["auroc_macro"])
    cm = np.array(out["confusion"])
    assert cm.sum() == 200 and all(cm[k, k] == ((pred == k) & (tn == k)).sum() for k in range(5))


def test_macro_auroc_skips_absent_classes() -> None:
    p = torch.tensor([[0.8, 0.1, 0.1, 0.0, 0.0], [0.2, 0.7, 0.1, 0.0, 0.0], [0.6, 0.3, 0.1, 0.0, 0.0]])
    m = classification_metrics(p, torch.tensor([0, 1, 1]))
    assert m["auroc_classes"] == 2 and m["auroc_macro"] == pytest.approx(1.0)
    assert np.isnan(m["sens_teratoma"]) and m["n_teratoma"] == 0


# -- predict and bad input ------------------------------------------------------------------------------------
def test_predict_returns_probabilities_summing_to_one(clf: mediastinum.MediastinumClassifier) -> None:
    case = generate_case("synth-x", 3)
    res = clf.predict(case.volume, spacing_mm=case.spacing, bbox=case.bbox)
    assert res.label in CLASSES and set(res.probabilities) == set(CLASSES)
    assert sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert res.label == max(res.probabilities, key=res.probabilities.get)
    by_mask = clf.predict(case.volume, spacing_mm=case.spacing, mask=case.mask)
    assert by_mask.bbox == case.bbox and by_mask.probabilities == pytest.approx(res.probabilities)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"volume_hu": np.zeros((32, 32)) - 500}, "3-D"),
    ({"spacing_mm": None}, "spacing is missing"),
    ({"spacing_mm": (2.0, 0.0, 1.0)}, "positive"),
    ({"spacing_mm": (2.0, 1.0)}, "three numbers"),
    ({"bbox": (0, 0, 0, 5, 5, 999)}, "outside the volume"),
    ({"bbox": (4, 10, 10, 4, 20, 20)}, "empty along z"),
    ({"bbox": None, "mask": np.zeros((6, 40, 40), bool)}, "mask is empty"),
    ({"bbox": None, "mask": np.ones((6, 40, 41), bool)}, "does not match"),
    ({"bbox": None}, "lesion location is missing"),
    ({"nan": True}, "NaN/inf"),
    ({"volume_hu": np.random.default_rng(0).random((6, 40, 40))}, "normalised"),
])
def test_bad_input_is_a_clear_error(clf: mediastinum.MediastinumClassifier, kwargs: dict, match: str) -> None:
    args = {"volume_hu": np.full((6, 40, 40), -800.0, np.float32), "spacing_mm": (3.0, 1.0, 1.0),
            "bbox": (1, 10, 10, 4, 20, 20)}
    if kwargs.pop("nan", False):
        args["volume_hu"][2, 5, 5] = np.nan
    args.update(kwargs)
    vol = args.pop("volume_hu")
    with pytest.raises(InputError, match=match):
        clf.predict(vol, **args)


# -- user layout, predict_files, protocol ---------------------------------------------------------------------
def test_write_site_reads_back_as_the_builtin_site(task: mediastinum.MediastinumTask, tmp_path: Path) -> None:
    assert task.write_site("synth-b", "test", tmp_path / "site", n=3) == 3
    assert "SYNTHETIC" in (tmp_path / "site" / "SYNTHETIC.txt").read_text()
    folder = task.build_dataset(tmp_path / "site", "test")
    builtin = task.build_dataset("synth-b", "test")
    assert len(folder) == 3  # type: ignore[arg-type]
    for i in range(3):
        a, b = folder[i], builtin[i]
        assert int(a["target"]) == int(b["target"])
        torch.testing.assert_close(a["image"], b["image"], atol=0.01, rtol=0)  # int16 rounding only
    with pytest.raises(InputError, match="no 'train' cases"):
        task.build_dataset(tmp_path / "site", "train")


def test_bad_site_folders(task: mediastinum.MediastinumTask, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither a built-in site"):
        task.build_dataset(tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no labels.csv"):
        task.build_dataset(tmp_path / "empty", "train")
    (tmp_path / "empty" / "labels.csv").write_text("case,file,label,z0,y0,x0,z1,y1,x1\na,a.nii.gz,thymoma,0,0,0,1,1,1\n")
    with pytest.raises(InputError, match="does not exist"):
        task.build_dataset(tmp_path / "empty", "all")


def test_predict_files_writes_one_json_per_input(task: mediastinum.MediastinumTask, clf: mediastinum.MediastinumClassifier,
                                                tmp_path: Path) -> None:
    case = generate_case("synth-a", 0)
    mediastinum.write_nifti(tmp_path / "c1.nii.gz", case.volume, case.spacing)
    mediastinum.write_nifti(tmp_path / "m1.nii.gz", case.mask.astype(np.float32), case.spacing, dtype=np.uint8)
    out = task.predict_files(clf, [tmp_path / "c1.nii.gz"], tmp_path / "out", bbox=list(case.bbox))
    assert [p.name for p in out] == ["c1.json"]
    js = json.loads(out[0].read_text())
    assert js["label"] in CLASSES and abs(sum(js["probabilities"].values()) - 1) < 1e-6 and js["synthetic"] is True
    res = clf.predict_path(tmp_path / "c1.nii.gz", mask=tmp_path / "m1.nii.gz")
    assert res.bbox == case.bbox and res.label == js["label"]
    with pytest.raises(InputError, match="do not apply"):
        task.predict_files(clf, [tmp_path / "c1.nii.gz"], tmp_path / "out", bbox=list(case.bbox), slice_index=3)


def test_protocol_conformance(task: mediastinum.MediastinumTask) -> None:
    assert isinstance(task, Task)
    s = task.spec
    assert (s.name, s.target_kind, s.classes, s.synthetic, s.primary_metric) == (
        "mediastinum", "label", CLASSES, True, "auroc_macro")
    assert "synth-x" in task.builtin_sites() and len(task.builtin_sites()) >= 4
    ds = task.build_dataset("synth-a", "test")
    res = task.evaluate(task.build_model(), torch.utils.data.Subset(ds, range(5)))
    assert set(res.per_sample) >= {"correct", "p_true"} and len(res.per_sample["p_true"]) == 5
    assert len(res.ids) == 5 and res.ids[0] == "synth-a/test/0000"


def test_input_modes_and_windows() -> None:
    from medzoo.tasks.mediastinum.preprocess import Preprocess, crop_hu, to_channels

    assert {m: Preprocess(mode=m).channels for m in ("windows", "slices", "slices+windows", "slices+soft")} == {
        "windows": 3, "slices": 3, "slices+windows": 9, "slices+soft": 9}
    with pytest.raises(ValueError, match="unknown input mode"):
        Preprocess(mode="3d")  # type: ignore[arg-type]
    case = generate_case(CLEAN, 0, label="cyst")
    cfg = Preprocess()
    hu = crop_hu(case.volume, case.spacing, case.bbox, cfg)
    assert hu.shape == (3, 64, 64) and abs(float(np.median(hu[1, 28:36, 28:36])) - 10) < 15  # fluid at the centre
    ch = to_channels(hu, cfg)
    assert ch.shape == (9, 64, 64) and 0 <= ch.min() and ch.max() <= 1
    np.testing.assert_allclose(ch[3], np.clip((hu[1] + 160) / 400, 0, 1), atol=1e-6)  # plane 1, mediastinal window


def test_shipped_weights_card_and_predict() -> None:
    from medzoo.weights import WeightsError, get_weights

    try:
        card = get_weights("mediastinum")
    except WeightsError:
        pytest.skip("weights/mediastinum.* not shipped in this checkout")
    assert card.synthetic and card.summary.startswith("SYNTHETIC") and len(card.sites) >= 3
    assert card.classes == list(CLASSES) and all("SYNTHETIC" in k for k in card.metrics)
    clf = mediastinum.pretrained()
    assert clf.net.architecture() == card.architecture
    case = generate_case("synth-x", 12345)
    res = clf.predict(case.volume, spacing_mm=case.spacing, bbox=case.bbox)
    assert res.synthetic and sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-9)


# -- values that are not Hounsfield units ---------------------------------------------------------------------
def _not_hu(case: mediastinum.generator.Case) -> dict[str, tuple[np.ndarray, str]]:
    window = np.clip((case.volume + 160.0) / 400.0 * 255.0, 0, 255)
    return {
        "zeros": (np.zeros_like(case.volume), "constant"),
        "stored values": (case.volume + 1024.0, "RescaleSlope/RescaleIntercept"),
        "8-bit export": (window.astype(np.uint8), "8-bit"),
        "8-bit as float": (window.astype(np.float32), "8-bit"),
        "no air": (np.clip(case.volume, -200.0, None), "no voxel below -500"),
    }


@pytest.mark.parametrize("kind", ["zeros", "stored values", "8-bit export", "8-bit as float", "no air"])
def test_values_not_in_hounsfield_units_are_refused(clf: mediastinum.MediastinumClassifier, kind: str) -> None:
    case = generate_case("synth-x", seed=3)
    vol, match = _not_hu(case)[kind]
    with pytest.raises(InputError, match=match):
        clf.predict(vol, spacing_mm=case.spacing, bbox=case.bbox)
    with pytest.raises(InputError, match=rf"^vol\.nii\.gz: .*{match}"):
        clf.predict(vol, spacing_mm=case.spacing, bbox=case.bbox, path="vol.nii.gz")


@pytest.mark.parametrize("site", sorted(SITES))
def test_generated_cases_pass_the_hounsfield_check(site: str) -> None:
    from medzoo.tasks.mediastinum.preprocess import check_volume

    for seed in range(4):
        case = generate_case(site, seed)
        check_volume(case.volume, f"{site}-{seed}")
        check_volume(np.round(case.volume).astype(np.int16))  # as written to a site folder


def test_non_hu_file_is_refused_naming_it(task: mediastinum.MediastinumTask, clf: mediastinum.MediastinumClassifier,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medzoo.cli.main import main

    case = generate_case("synth-x", seed=3)
    vol8 = np.clip((case.volume + 160.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
    mediastinum.write_nifti(tmp_path / "vol8bit.nii.gz", vol8.astype(np.float32), case.spacing, dtype=np.uint8)
    with pytest.raises(InputError, match=r"vol8bit\.nii\.gz: .*8-bit"):
        task.predict_files(clf, [tmp_path / "vol8bit.nii.gz"], tmp_path / "out", bbox=list(case.bbox))
    assert not (tmp_path / "out" / "vol8bit.json").exists()
    code = main(["predict", "mediastinum", str(tmp_path / "vol8bit.nii.gz"), "--bbox", *map(str, case.bbox),
                 "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code != 0 and "vol8bit.nii.gz" in err and "8-bit" in err


def test_site_folder_with_stored_values_is_refused(task: mediastinum.MediastinumTask, tmp_path: Path) -> None:
    assert task.write_site("synth-b", "test", tmp_path / "site", n=1) == 1
    ds = task.build_dataset(tmp_path / "site", "test")
    f = tmp_path / "site" / ds.rows[0]["file"]  # type: ignore[attr-defined]
    vol, spacing = mediastinum.read_volume(f)
    mediastinum.write_nifti(f, vol + 1024.0, spacing)
    with pytest.raises(InputError, match=rf"{f.name}: .*RescaleIntercept"):
        ds[0]
