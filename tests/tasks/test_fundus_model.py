"""Fundus models: Task protocol conformance, predict round-trip, saving/loading, shipped weights, predict_files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import medzoo
from medzoo.core import StepOutput, Task
from medzoo.errors import InputError, WeightsError
from medzoo.tasks import fundus

TINY = {"encoder": "tu-mobilenetv3_small_050", "decoder_channels": [16, 16, 8, 8, 8]}


def _rgb(h: int = 70, w: int = 90, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 2 - 2, (160, 90, 40), -1)
    return np.clip(img + rng.integers(0, 30, img.shape) * (img > 0), 0, 255).astype(np.uint8)


@pytest.fixture(params=["fundus-vessels", "fundus-disc"])
def task(request: pytest.FixtureRequest) -> Task:
    return medzoo.get_task(request.param)


def test_protocol_conformance(task: Task) -> None:
    assert isinstance(task, Task)
    assert task.spec.family == "fundus" and not task.spec.synthetic
    assert task.builtin_sites() == (("drive", "stare", "hrf") if task.spec.name == "fundus-vessels" else ("drishti",))
    net = task.build_model(**TINY)
    assert task.architecture(net) == TINY
    c = task.spec.in_chans
    batch = {"image": torch.rand(2, c, 64, 64), "target": (torch.rand(2, task.spec.num_outputs, 64, 64) > 0.8).float(),
             "id": ["a", "b"]}
    out = task.step(net.train(), batch)
    assert isinstance(out, StepOutput) and out.loss.ndim == 0 and out.logits.shape == batch["target"].shape
    out.loss.backward()
    packed = task.replay_pack(batch, 32)
    assert packed.shape == (2, c + task.spec.num_outputs, 32, 32) and 0 <= float(packed.min()) <= float(packed.max()) <= 1
    un = task.replay_unpack(packed)
    assert un["image"].shape == (2, c, 32, 32) and un["target"].shape == (2, task.spec.num_outputs, 32, 32)
    assert task.step(net, un).loss.isfinite()
    d = task.distill_loss(out.logits.detach(), out.logits.detach())
    assert d.ndim == 0 and d.isfinite()


def test_vessel_predict_round_trip() -> None:
    task = fundus.VesselTask()
    m = task.wrap(task.build_model(**TINY))
    assert isinstance(m, fundus.FundusModel)
    rgb = _rgb(70, 90)
    p = m.predict_proba(rgb)
    assert p.shape == (70, 90) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    assert p[0, 0] == 0  # outside the derived field of view
    lab = m.predict(rgb)
    assert lab.shape == (70, 90) and lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1}
    assert np.array_equal(m.predict(rgb, threshold=0.0), (p >= 0).astype(np.uint8))
    big = m.predict(_rgb(40, 1010))  # longer side > 1000: reduced, predicted, resized back
    assert big.shape == (40, 1010)


def test_disc_predict_round_trip_and_vcdr() -> None:
    task = fundus.DiscCupTask()
    m = task.wrap(task.build_model(**TINY))
    rgb = _rgb(61, 77)
    p = m.predict_proba(rgb)
    assert p.shape == (61, 77, 2) and p.dtype == np.float32
    lab = m.predict(rgb)
    assert lab.shape == (61, 77) and lab.dtype == np.uint8 and set(np.unique(lab)) <= {0, 1, 2}
    v = m.vcdr(lab)
    assert np.isnan(v) or 0 <= v <= 1
    lab2 = np.zeros((30, 30), np.uint8)
    lab2[5:25, 5:25] = 1
    lab2[10:15, 10:20] = 2
    assert m.vcdr(lab2) == 0.25 == fundus.vcdr(lab2)


def test_disc_predict_follows_the_cards_post_processing(monkeypatch: pytest.MonkeyPatch) -> None:
    from medzoo.tasks.fundus import predict as P

    task = fundus.DiscCupTask()
    net = task.build_model(**TINY)
    seen = []
    real = P.disc_labels
    monkeypatch.setattr(P, "disc_labels", lambda p, t=0.5, *, shape="components": seen.append((t, shape)) or real(p, t, shape=shape))
    task.wrap(net, {"extra": {"disc_shape": "ellipse", "threshold": 0.4}}).predict(_rgb(61, 77))
    task.wrap(net).predict(_rgb(61, 77))
    assert seen == [(0.4, "ellipse"), (0.5, P.DEFAULT_DISC_SHAPE)]


@pytest.mark.parametrize("bad", [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 4), np.uint8),
                                 np.zeros((50, 50, 3), np.uint16), np.zeros((50, 50, 3), np.float32),
                                 np.zeros((10, 50, 3), np.uint8)])
def test_predict_rejects_bad_arrays(bad: np.ndarray) -> None:
    task = fundus.VesselTask()
    with pytest.raises(InputError):
        task.wrap(task.build_model(**TINY)).predict(bad)


def test_save_and_load(tmp_path: Path) -> None:
    task = fundus.DiscCupTask()
    m = task.wrap(task.build_model(**TINY), {"note": "test"})
    path = m.save(tmp_path / "d.safetensors", half=True)
    back = fundus.load(path)
    assert isinstance(back, fundus.FundusModel) and back.task.spec.name == "fundus-disc"
    assert back.meta["note"] == "test"
    rgb = _rgb()
    assert np.abs(back.predict_proba(rgb) - m.predict_proba(rgb)).max() < 0.05  # same network, fp16-rounded
    net2 = task.build_model(weights=path)
    assert task.architecture(net2) == TINY


def test_predict_files_writes_outputs(tmp_path: Path) -> None:
    for name in ("fundus-vessels", "fundus-disc"):
        task = medzoo.get_task(name)
        m = task.wrap(task.build_model(**TINY))
        src = tmp_path / "in" / "eye1.png"
        src.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(src), _rgb()[..., ::-1])
        out = tmp_path / name
        written = task.predict_files(m, [src], out)
        names = sorted(p.name for p in written)
        expect = ["eye1_mask.png", "eye1_overlay.png"] + (["eye1_vcdr.json"] if name == "fundus-disc" else [])
        assert names == sorted(expect)
        mask = cv2.imread(str(out / "eye1_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (70, 90) and set(np.unique(mask)) <= {0, 128, 255}
        assert not list(out.glob("*.part"))
        if name == "fundus-disc":
            assert "vcdr" in json.loads((out / "eye1_vcdr.json").read_text())
        gray = tmp_path / "in" / "gray.png"
        cv2.imwrite(str(gray), _rgb()[..., 1])
        with pytest.raises(InputError, match="gray.png"):
            task.predict_files(m, [gray], out)
        assert not (out / "gray_mask.png").exists()


def test_train_site_runs_on_a_user_folder(tmp_path: Path) -> None:
    from medzoo.relay.trainer import TrainConfig, train_site

    root = tmp_path / "site"
    for i in range(2):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "images" / f"x{i}.png"), _rgb(64, 64, i)[..., ::-1])
        m = np.zeros((64, 64), np.uint8)
        m[30:33] = 255
        cv2.imwrite(str(root / "masks" / f"x{i}.png"), m)
    task = fundus.VesselTask()
    net = task.build_model(**TINY)
    ds = task.build_dataset(root, "train", augment=True, patches_per_image=2)
    stats = train_site(task, net, ds, TrainConfig(epochs=1, batch_size=2), progress=False)
    assert stats["steps"] == 2 and np.isfinite(stats["loss"])
    res = task.evaluate(net, task.build_dataset(root, "test"))
    assert set(res.metrics) == {"dice", "sensitivity", "specificity", "accuracy", "auc"}
    assert res.ids == ("x0", "x1") and len(res.per_sample["dice"]) == 2


def _shipped(name: str) -> None:
    from medzoo.weights import weights_dir

    if not (weights_dir() / f"{name}.json").is_file():
        pytest.skip(f"shipped weights {name} not built yet")


@pytest.mark.parametrize(("short", "name"), [("vessels", "fundus-vessels"), ("disc", "fundus-disc")])
def test_pretrained_loads_sha256_checked(short: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medzoo.weights as W

    _shipped(name)
    m = fundus.pretrained(short)
    assert isinstance(m, fundus.FundusModel) and m.meta["sha256"] == W.get_weights(name).sha256
    assert m.meta["num_params"] == sum(p.numel() for p in m.net.parameters())
    assert not m.meta["synthetic"] and m.meta["metrics"]
    out = m.predict(_rgb(80, 96))
    assert out.shape == (80, 96)
    # a corrupted copy is refused
    bad = tmp_path / "w"
    bad.mkdir()
    shutil.copy(W.weights_dir() / f"{name}.json", bad)
    raw = bytearray((W.weights_dir() / f"{name}.safetensors").read_bytes())
    raw[-100] ^= 0xFF
    (bad / f"{name}.safetensors").write_bytes(bytes(raw))
    monkeypatch.setattr(W, "weights_dir", lambda: bad)
    with pytest.raises(WeightsError, match="sha256"):
        fundus.pretrained(short)


def test_pretrained_unknown_name() -> None:
    with pytest.raises(ValueError, match="vessels"):
        fundus.pretrained("retina")


def test_too_small_image_error_names_the_file(tmp_path: Path) -> None:
    from medzoo.tasks.fundus.model import check_rgb

    with pytest.raises(InputError, match=r"^tiny\.png: image is too small \(8x8\)"):
        check_rgb(np.zeros((8, 8, 3), np.uint8), "tiny.png")
    with pytest.raises(InputError, match=r"^image is too small"):
        check_rgb(np.zeros((8, 8, 3), np.uint8))
    task = fundus.DiscCupTask()
    m = task.wrap(task.build_model(**TINY))
    with pytest.raises(InputError, match=r"^eye\.png: expected an H x W x 3"):
        m.predict(np.zeros((50, 50), np.uint8), path="eye.png")
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), _rgb()[..., ::-1])
    cv2.imwrite(str(src / "tiny.png"), _rgb(8, 8)[..., ::-1])
    with pytest.raises(InputError, match=r"tiny\.png: image is too small \(8x8\)"):
        task.predict_files(m, [src / "good.png", src / "tiny.png"], tmp_path / "out")
    assert not (tmp_path / "out" / "tiny_mask.png").exists()


def test_disc_model_needs_a_minimum_size_and_vcdr_needs_the_disc_model() -> None:
    from medzoo.tasks.fundus.model import DISC_MIN_LONG_SIDE, check_rgb

    disc, vessels = fundus.DiscCupTask(), fundus.VesselTask()
    d, v = disc.wrap(disc.build_model(**TINY)), vessels.wrap(vessels.build_model(**TINY))
    small = _rgb(40, 40)
    with pytest.raises(InputError, match=r"^x\.png: image is too small \(40x40\) for the optic disc model"):
        d.predict(small, path="x.png")
    with pytest.raises(InputError, match="optic disc model"):
        d.vcdr(small)
    with pytest.raises(InputError, match="optic disc model"):
        check_rgb(small, kind="disc")
    assert v.predict(small).shape == (40, 40)  # the vessel model keeps its 32 px minimum
    assert d.predict(_rgb(40, DISC_MIN_LONG_SIDE)).shape == (40, DISC_MIN_LONG_SIDE)
    with pytest.raises(InputError, match=r"vcdr\(\) needs the optic disc/cup model.*fundus-vessels"):
        v.vcdr(_rgb())
    with pytest.raises(InputError, match=r"vcdr\(\) needs the optic disc/cup model"):
        v.vcdr(np.zeros((30, 30), np.uint8))
