"""Fundus metrics against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medzoo.tasks.fundus import loss, metrics


def _auc_numpy(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    pos = label.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _vessel_numpy(prob: np.ndarray, target: np.ndarray, fov: np.ndarray, thr: float) -> dict[str, float]:
    f = fov > 0
    p, t = prob[f], target[f] > 0
    pr = p >= thr
    tp, fp = np.sum(pr & t), np.sum(pr & ~t)
    fn, tn = np.sum(~pr & t), np.sum(~pr & ~t)
    return {"dice": 2 * tp / (2 * tp + fp + fn), "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / f.sum(), "auc": _auc_numpy(p.astype(np.float64), t)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vessel_metrics_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = (rng.random((40, 50)) < 0.2).astype(np.uint8)
    prob = np.clip(target * 0.4 + rng.random((40, 50)) * 0.7, 0, 1).round(2).astype(np.float32)  # ties on purpose
    fov = np.zeros((40, 50), np.uint8)
    fov[5:35, 5:45] = 1
    prob[fov == 0] = 1.0  # outside the FOV must not count
    got = metrics.vessel_metrics(prob, target, fov, threshold=0.5)
    ref = _vessel_numpy(prob, target, fov, 0.5)
    for k in metrics.VESSEL_KEYS:
        assert got[k] == pytest.approx(ref[k], abs=1e-6), k


def test_vessel_metrics_accept_tensors_and_edge_cases() -> None:
    t = torch.zeros(8, 8)
    m = metrics.vessel_metrics(torch.zeros(8, 8), t)
    assert m["dice"] == 1.0 and np.isnan(m["auc"]) and m["accuracy"] == 1.0
    t[2:4] = 1
    assert metrics.vessel_metrics(torch.zeros(8, 8), t)["dice"] == 0.0


def test_disc_metrics_and_vcdr() -> None:
    true = np.zeros((40, 40), np.uint8)
    true[10:30, 10:30] = 1
    true[15:25, 15:25] = 2
    pred = np.zeros_like(true)
    pred[10:30, 12:30] = 1
    pred[15:23, 15:25] = 2
    m = metrics.disc_metrics(pred, true)
    assert m["dice_disc"] == pytest.approx(2 * 360 / (360 + 400))
    assert m["dice_cup"] == pytest.approx(2 * 80 / (80 + 100))
    assert m["vcdr_abs_err"] == pytest.approx(abs(8 / 20 - 10 / 20))
    assert np.isnan(metrics.vcdr(np.zeros((5, 5), np.uint8)))
    assert metrics.vcdr(true) == 0.5
    lab = metrics.target_labels(np.stack([true >= 1, true == 2]).astype(np.float32))
    assert np.array_equal(lab, true)


def test_mean_metrics_ignores_nan() -> None:
    out = metrics.mean_metrics({"a": [1.0, float("nan"), 3.0], "b": [float("nan")]})
    assert out["a"] == 2.0 and np.isnan(out["b"])


def test_dice_bce_loss_orders_predictions() -> None:
    t = torch.zeros(2, 1, 16, 16)
    t[..., 4:8, :] = 1
    good, bad = loss.dice_bce_loss(t * 12 - 6, t), loss.dice_bce_loss(-(t * 12 - 6), t)
    assert float(good) < 0.1 < float(bad)
    assert float(loss.DiceBCELoss()(t * 12 - 6, t)) == pytest.approx(float(good))


def test_distill_loss_is_minimal_at_the_teacher() -> None:
    teacher = torch.randn(1, 2, 8, 8)
    same = float(loss.sigmoid_distill_loss(teacher.clone(), teacher))
    other = float(loss.sigmoid_distill_loss(teacher + torch.randn_like(teacher), teacher))
    assert same < other


def _disc_probs() -> np.ndarray:
    """A round disc (radius 30) and cup (radius 12) with a one-pixel-wide spur above the cup and a stray blob."""
    import cv2

    disc = np.zeros((100, 100), np.float32)
    cup = disc.copy()
    cv2.circle(disc, (50, 50), 30, 1.0, -1)
    cv2.circle(cup, (50, 50), 12, 1.0, -1)
    cup[28:40, 50] = 1.0  # spur: lengthens the cup's vertical extent by 10 rows
    disc[2:6, 2:6] = 1.0  # blob outside the disc
    return np.stack([disc, cup], axis=-1)


@pytest.mark.parametrize("shape", ["components", "hull", "ellipse"])
def test_disc_labels_outline_post_processing(shape: str) -> None:
    from medzoo.tasks.fundus.predict import disc_labels

    lab = disc_labels(_disc_probs(), 0.5, shape=shape)
    assert set(np.unique(lab)) == {0, 1, 2}
    assert lab[:10, :10].max() == 0  # stray blob dropped (largest component only)
    assert not ((lab == 2) & (lab < 1)).any()
    cup_rows = np.flatnonzero((lab == 2).any(axis=1))
    span = cup_rows[-1] - cup_rows[0] + 1
    if shape == "components":
        assert span == 12 + 12 + 1 + 10  # the spur counts
    elif shape == "ellipse":
        assert span < 12 + 12 + 1 + 10  # the least-squares fit shrinks the spur's influence
    else:
        assert span == 12 + 12 + 1 + 10 and (lab == 2).sum() >= (disc_labels(_disc_probs(), 0.5) == 2).sum()


def test_disc_labels_rejects_unknown_shape() -> None:
    from medzoo.tasks.fundus.predict import disc_labels

    with pytest.raises(ValueError, match="unknown disc shape"):
        disc_labels(_disc_probs(), shape="square")


def test_metric_classes_accumulate_per_image_means() -> None:
    rng = np.random.default_rng(3)
    meter = metrics.VesselMetrics(threshold=0.4)
    per = []
    for _ in range(3):
        prob, target = rng.random((16, 16)).astype(np.float32), (rng.random((16, 16)) > 0.7).astype(np.float32)
        fov = np.ones((16, 16), np.float32)
        fov[:2] = 0
        meter.update(torch.from_numpy(prob), torch.from_numpy(target), torch.from_numpy(fov))
        per.append(metrics.vessel_metrics(prob, target, fov, threshold=0.4))
    got = meter.compute()
    for k in metrics.VESSEL_KEYS:
        assert got[k] == pytest.approx(np.mean([p[k] for p in per]))
        assert meter.per_image()[k] == pytest.approx([p[k] for p in per])
    meter.reset()
    assert meter.per_image()["dice"] == []
    disc = metrics.DiscCupMetrics()
    a = np.zeros((20, 20), np.uint8)
    a[2:12, 5:15] = 1
    a[4:9, 8:12] = 2
    b = a.copy()
    b[4:11, 8:12] = 2
    disc.update(a, a)
    disc.update(b, a)
    assert disc.compute()["vcdr_abs_err"] == pytest.approx((0 + abs(0.7 - 0.5)) / 2)


def test_disc_is_the_roundest_large_component_not_a_larger_rim_artefact() -> None:
    """A bright rim flash segmented as an irregular blob larger than the disc must not be taken for the disc."""
    import cv2

    from medzoo.tasks.fundus.predict import disc_labels

    p = np.zeros((120, 160, 2), np.float32)
    disc, cup = p[..., 0].copy(), p[..., 1].copy()
    cv2.circle(disc, (50, 70), 20, 1.0, -1)
    cv2.circle(cup, (50, 70), 8, 1.0, -1)
    cv2.fillPoly(disc, [np.array([[110, 0], [159, 0], [159, 60], [140, 20], [120, 45]], np.int32)], 1.0)
    p = np.stack([disc, cup], axis=-1)
    n, lab = cv2.connectedComponents((disc >= 0.5).astype(np.uint8))
    assert n == 3 and max((lab == 1).sum(), (lab == 2).sum()) > (np.hypot(*np.indices((41, 41)) - 20) <= 20).sum()
    out = disc_labels(p)
    assert out[:, 100:].max() == 0 and out[70, 50] == 2 and out[70, 35] == 1
