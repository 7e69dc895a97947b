"""Fundus data: built-in real sites, the generic folder layout, and every bad-input case (InputError naming the file)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medzoo.errors import InputError
from medzoo.tasks import fundus
from medzoo.tasks.fundus.sources import builtin_records, folder_records, resolve
from medzoo.tasks.fundus.transforms import derive_fov


def _fundus_like(h: int = 72, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 2 - 2, (150, 80, 40), -1)
    return np.clip(img.astype(int) + rng.integers(0, 20, img.shape) * (img > 0), 0, 255).astype(np.uint8)


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), arr[..., ::-1] if arr.ndim == 3 and arr.shape[2] == 3 else arr)


def _vessel_folder(root: Path, n: int = 2, h: int = 72, w: int = 80) -> Path:
    for i in range(n):
        _write(root / "images" / f"a{i}.png", _fundus_like(h, w, i))
        m = np.zeros((h, w), np.uint8)
        m[h // 2, :] = 255
        _write(root / "masks" / f"a{i}_manual1.png", m)
    return root


def _disc_folder(root: Path, n: int = 2) -> Path:
    for i in range(n):
        _write(root / "images" / f"d{i}.png", _fundus_like(60, 70, i))
        od = np.zeros((60, 70), np.uint8)
        cv2.circle(od, (35, 30), 15, 255, -1)
        cup = np.zeros((60, 70), np.uint8)
        cv2.circle(cup, (35, 30), 7, 191, -1)
        _write(root / "masks_od" / f"d{i}.png", od)
        _write(root / "masks_cup" / f"d{i}.png", cup)
    return root


# --- built-in real sites --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("site", "split", "n"), [("drive", "train", 20), ("drive", "test", 20), ("stare", "train", 10),
                                                  ("stare", "test", 8), ("hrf", "train", 15), ("hrf", "test", 27),
                                                  ("drishti", "train", 50), ("drishti", "test", 51)])
def test_builtin_split_sizes(data_root: Path, site: str, split: str, n: int) -> None:
    recs = builtin_records(site, split)
    assert len(recs) == n
    assert all(r.image.is_file() for r in recs)
    train_ids = {r.id for r in builtin_records(site, "train")}
    assert not train_ids & {r.id for r in builtin_records(site, "test")}  # no leakage between splits


def test_real_drive_and_stare_samples(data_root: Path) -> None:
    task = fundus.VesselTask()
    s = task.build_dataset("stare", "test")[0]  # STARE: FOV derived from the red channel
    assert s["image"].shape[0] == 1 and s["image"].shape[1] % 32 == 0 and s["image"].shape[2] % 32 == 0
    assert s["target"].shape[-2:] == (605, 700)
    fov, tgt = s["fov"][0].numpy(), s["target"][0].numpy()
    assert 0.6 < fov.mean() < 0.99 and (tgt * (1 - fov)).sum() == 0  # every vessel pixel lies inside the derived FOV
    p = task.build_dataset("drive", "train", augment=True, patches_per_image=1)[3]
    assert p["image"].shape == (1, 256, 256) and set(np.unique(p["target"].numpy())) <= {0.0, 1.0}


def test_derived_fov_matches_drive_fov(data_root: Path) -> None:
    from medzoo.io import read_mask, read_rgb
    from medzoo.tasks.fundus.metric import dice

    rec = builtin_records("drive", "test")[0]
    assert dice(derive_fov(read_rgb(rec.image)), read_mask(rec.fov)) > 0.98


def test_real_drishti_sample(data_root: Path) -> None:
    ds = fundus.DiscCupTask().build_dataset("drishti", "test")
    s = ds[0]
    assert s["image"].shape[0] == 3 and max(s["image"].shape[1:]) == 384
    t = s["target"].numpy()
    assert t.shape[0] == 2 and (t[1] <= t[0]).all()  # cup inside disc
    assert 0.3 < s["cdr_experts"] < 1.0


# --- generic folder layout -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("site", "n_fit", "n_val"), [("drive", 16, 4), ("stare", 8, 2), ("hrf", 12, 3)])
def test_fit_and_val_divide_the_training_split(data_root: Path, site: str, n_fit: int, n_val: int) -> None:
    train = [r.id for r in builtin_records(site, "train")]
    fit = [r.id for r in resolve(site, "fit", kind="vessels")[1]]
    val = [r.id for r in resolve(site, "val", kind="vessels")[1]]
    assert (len(fit), len(val)) == (n_fit, n_val)
    assert sorted(fit + val) == sorted(train) and not set(fit) & set(val)  # a partition of train; test untouched
    task = fundus.VesselTask()
    assert len(task.build_dataset(site, "fit", augment=True)) == 8 * n_fit  # patches, like train
    assert task.build_dataset(site, "val")[0]["id"] == val[0]  # whole images, like test


def test_vessel_folder_layout(tmp_path: Path) -> None:
    root = _vessel_folder(tmp_path / "site")
    task = fundus.VesselTask()
    test = task.build_dataset(root, "test")
    assert len(test) == 2
    s = test[1]
    assert s["id"] == "a1" and s["target"].shape == (1, 72, 80) and s["image"].shape == (1, 96, 96)
    assert s["target"][0, 36].sum() > 0
    train = task.build_dataset(root, "train", augment=True)
    assert len(train) == 2 * 8 and train[0]["image"].shape == (1, 256, 256)


def test_folder_split_csv_and_fov(tmp_path: Path) -> None:
    root = _vessel_folder(tmp_path / "site", n=3)
    for i in range(3):
        _write(root / "fov" / f"a{i}_mask.png", np.full((72, 80), 255, np.uint8))
    (root / "split.csv").write_text("id,split\na0,train\na1,test\na2,test\n")
    assert [r.id for r in folder_records(root, "test", kind="vessels")] == ["a1", "a2"]
    assert [r.id for r in folder_records(root, "train", kind="vessels")] == ["a0"]
    assert folder_records(root, "all", kind="vessels")[0].fov is not None


def test_disc_folder_layout(tmp_path: Path) -> None:
    ds = fundus.DiscCupTask().build_dataset(_disc_folder(tmp_path / "d"), "train")
    s = ds[0]
    assert s["image"].shape == (3, 352, 384) and s["target"].shape == (2, 352, 384)
    assert s["target"][1].sum() > 0 and (s["target"][1] <= s["target"][0]).all()


def test_pairing_rule_is_not_a_prefix_match(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _write(root / "images" / "1.png", _fundus_like())
    _write(root / "masks" / "10.png", np.zeros((72, 80), np.uint8))
    with pytest.raises(InputError, match="no mask for this image") as e:
        folder_records(root, "all", kind="vessels")
    assert "1.png" in str(e.value)


# --- bad inputs: each raises InputError naming the file ---------------------------------------------------------

def test_empty_images_folder(tmp_path: Path) -> None:
    (tmp_path / "s" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="images"):
        fundus.VesselTask().build_dataset(tmp_path / "s", "test")


def test_unknown_site_or_missing_folder() -> None:
    with pytest.raises(InputError, match="nosuchsite"):
        fundus.VesselTask().build_dataset("nosuchsite", "test")


def test_unpaired_mask(tmp_path: Path) -> None:
    root = _vessel_folder(tmp_path / "s")
    _write(root / "masks" / "zz_manual1.png", np.zeros((72, 80), np.uint8))
    with pytest.raises(InputError, match="zz_manual1.png"):
        fundus.VesselTask().build_dataset(root, "test")


def test_size_mismatch(tmp_path: Path) -> None:
    root = _vessel_folder(tmp_path / "s")
    _write(root / "masks" / "a1_manual1.png", np.zeros((50, 80), np.uint8))
    with pytest.raises(InputError, match="a1_manual1.png") as e:
        fundus.VesselTask().build_dataset(root, "test")
    assert "80x50" in str(e.value)


@pytest.mark.parametrize("bad", ["gray", "rgba", "16bit", "truncated"])
def test_bad_image_files(tmp_path: Path, bad: str) -> None:
    root = _vessel_folder(tmp_path / "s")
    p = root / "images" / "a1.png"
    if bad == "gray":
        _write(p, _fundus_like()[..., 1])
    elif bad == "rgba":
        rgba = np.dstack([_fundus_like(), np.full((72, 80), 100, np.uint8)])
        cv2.imwrite(str(p), rgba)
    elif bad == "16bit":
        cv2.imwrite(str(p), (_fundus_like().astype(np.uint16) * 256))
    else:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        fundus.VesselTask().build_dataset(root, "test")
    assert "a1.png" in str(e.value)


def test_derive_fov_on_synthetic_disc() -> None:
    img = _fundus_like(100, 120)
    fov = derive_fov(img)
    assert fov[50, 60] == 1 and fov[0, 0] == 0 and 0.4 < fov.mean() < 0.8


def test_augment_levels(tmp_path: Path) -> None:
    """``augment="strong"`` (domain randomisation) varies a patch's intensity more than the standard recipe, keeps
    the image in [0, 1] and the masks binary; an unknown level is refused with its name."""
    from medzoo.tasks.fundus.transforms import train_augment

    flat = np.full((64, 64, 1), 0.5, np.float32)
    masks = [np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8)]

    def spread(level: str) -> float:
        aug = train_augment("vessels", level)
        aug.set_random_seed(0)  # type: ignore[attr-defined]
        means = [float(np.clip(aug(image=flat, masks=masks)["image"], 0, 1).mean()) for _ in range(300)]  # type: ignore[operator]
        return float(np.std(means))

    assert spread("strong") > 1.5 * spread("standard")
    train = fundus.VesselTask().build_dataset(_vessel_folder(tmp_path / "site"), "train", augment="strong")
    for i in range(4):
        s = train[i]
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        assert set(np.unique(s["target"].numpy())) <= {0.0, 1.0}
    with pytest.raises(InputError, match="'extreme'"):
        fundus.VesselTask().build_dataset(_vessel_folder(tmp_path / "other"), "train", augment="extreme")


@pytest.mark.parametrize("task", [fundus.VesselTask(), fundus.DiscCupTask()], ids=["vessels", "disc"])
def test_perturb_batch_is_a_seeded_strong_view_of_the_batch(task) -> None:  # type: ignore[no-untyped-def]
    """LwF's ``distill_inputs="perturbed"`` view: the batch through the strong augmentation, image and masks moved
    together (same shapes and dtypes, image in [0, 1], masks binary), the same for the same seed, the input untouched."""
    import torch

    g = torch.Generator().manual_seed(0)
    c, k = task.spec.in_chans, task.spec.num_outputs
    target = (torch.rand(3, k, 64, 64, generator=g) > 0.7).float()
    image = target[:, :1].expand(3, c, 64, 64) * 0.6 + 0.2  # bright where the first target channel is 1
    batch = {"image": image.contiguous(), "target": target, "fov": torch.ones(3, 1, 64, 64), "id": ["a", "b", "c"]}
    before = {n: batch[n].clone() for n in ("image", "target", "fov")}
    a, b, other = (task.perturb_batch(batch, seed=s) for s in (1, 1, 2))
    for n in ("image", "target", "fov"):
        assert a[n].shape == batch[n].shape and a[n].dtype == batch[n].dtype and torch.equal(a[n], b[n])
        assert torch.equal(batch[n], before[n])
    assert a["id"] == batch["id"] and not torch.equal(a["image"], other["image"])
    assert 0 <= float(a["image"].min()) and float(a["image"].max()) <= 1 and not torch.equal(a["image"], batch["image"])
    assert set(a["target"].unique().tolist()) <= {0.0, 1.0}
    # the masks follow the image's geometry: the view is still bright where its own target is 1
    on = a["target"][:, :1].expand_as(a["image"]) == 1
    assert float(a["image"][on].mean()) > float(a["image"][~on].mean()) + 0.2


@pytest.mark.parametrize("task", [fundus.VesselTask(), fundus.DiscCupTask()], ids=["vessels", "disc"])
def test_distillation_where_the_teacher_agrees_with_the_label(task) -> None:  # type: ignore[no-untyped-def]
    """LwF's ``distill_where="teacher_agrees"``: the distillation term pulls the student only on the pixels where the
    teacher's mask equals the label (no gradient elsewhere), as hard per pixel as the plain term, and equals the plain
    term when the teacher is right everywhere."""
    import torch

    g = torch.Generator().manual_seed(0)
    k = task.spec.num_outputs
    target = (torch.rand(2, k, 16, 16, generator=g) > 0.7).float()
    teacher = torch.randn(2, k, 16, 16, generator=g) * 3
    student = torch.randn(2, k, 16, 16, generator=g, requires_grad=True)
    agree = (teacher >= 0) == (target == 1)
    assert 0 < int(agree.sum()) < agree.numel()
    loss = task.distill_loss_where_teacher_agrees(student, teacher, target)
    loss.backward()
    assert student.grad is not None and torch.all(student.grad[~agree] == 0) and torch.all(student.grad[agree] != 0)
    plain_grad = torch.autograd.grad(task.distill_loss(student, teacher), student)[0]
    assert torch.allclose(student.grad[agree], plain_grad[agree])  # a kept pixel pulls as hard as without the mask
    right = (teacher >= 0).float()  # a teacher that is right everywhere
    assert torch.allclose(task.distill_loss_where_teacher_agrees(student, teacher, right), task.distill_loss(student, teacher))
