"""Inference on whole photographs (pre-processing, network, post-processing) and writing result files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from medzoo.io import atomic_path, atomic_write_json, output_stem, read_rgb
from medzoo.tasks.fundus import transforms as T

if TYPE_CHECKING:
    from medzoo.core import TaskModel

#: a derived FOV covering less than this fraction of the image is ignored (not a usual fundus photograph).
MIN_FOV_FRACTION = 0.2


def _forward(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities of ``net`` on an ``H x W x C`` float input (padded here, cropped back): H x W x K."""
    xp, (h, w) = T.pad_to_multiple(x)
    dev = next(net.parameters()).device
    t = torch.from_numpy(np.ascontiguousarray(xp.transpose(2, 0, 1)))[None].to(dev)
    with torch.inference_mode():
        out = torch.sigmoid(net.eval()(t))[0, :, :h, :w]
    return out.permute(1, 2, 0).float().cpu().numpy()


def vessel_proba(net: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Vessel probability map (``H x W`` float32) of an RGB photograph, at the input's size.

    Large images (longer side > 1000 px) are reduced to 876 px first; the FOV is derived from the red channel
    (:func:`~medzoo.tasks.fundus.transforms.derive_fov`) and probabilities outside it are 0.
    """
    h, w = rgb.shape[:2]
    s = T.vessel_scale(h, w)
    small = rgb if s == 1.0 else T.resize(rgb, (round(h * s), round(w * s)))
    fov = T.derive_fov(small)
    if fov.mean() < MIN_FOV_FRACTION:
        fov = np.ones_like(fov)
    p = _forward(net, T.vessel_input(small, fov))[..., 0] * fov
    return T.resize(p.astype(np.float32), (h, w)) if s != 1.0 else p.astype(np.float32)


def disc_proba(net: nn.Module, rgb: np.ndarray) -> np.ndarray:
    """Disc and cup probabilities (``H x W x 2`` float32) of an RGB photograph, at the input's size."""
    from medzoo.tasks.fundus.dataset import disc_network_size

    h, w = rgb.shape[:2]
    x = T.disc_input(T.resize(rgb, disc_network_size(h, w)))
    return T.resize(_forward(net, x), (h, w)).astype(np.float32)


def _largest(mask: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


#: disc/cup outline post-processing choices of :func:`disc_labels`.
DISC_SHAPES = ("components", "hull", "ellipse")
#: the post-processing used when a model card names none (chosen on a validation split: docs/fundus.md).
DEFAULT_DISC_SHAPE = "components"


def _shape(mask: np.ndarray, shape: str) -> np.ndarray:
    """``mask`` (one component) as itself, its convex hull or its least-squares ellipse (OpenCV), filled."""
    if shape == "components" or not mask.any():
        return mask
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = max(contours, key=cv2.contourArea)
    out = np.zeros(mask.shape, np.uint8)
    if shape == "hull":
        cv2.fillPoly(out, [cv2.convexHull(pts)], 1)
    elif shape == "ellipse":
        if len(pts) < 5:  # too small to fit an ellipse
            return mask
        cv2.ellipse(out, cv2.fitEllipse(pts), 1, thickness=-1)
    else:
        raise ValueError(f"unknown disc shape {shape!r}; expected one of {DISC_SHAPES}")
    return out.astype(bool)


def disc_labels(prob: np.ndarray, threshold: float = 0.5, *, shape: str = "components") -> np.ndarray:
    """Label map from disc/cup probabilities: the disc is the roundest large component (see
    :func:`_disc_component`); the cup is its largest component inside the disc.

    Args:
        prob: ``H x W x 2`` (disc incl. cup, cup).
        threshold: probability threshold.
        shape: ``"components"`` (the largest connected components as they are), ``"hull"`` (their convex hulls)
            or ``"ellipse"`` (a least-squares ellipse fitted to each outline, as in much of the disc/cup
            literature); the cup is always clipped to the disc.

    Returns:
        ``H x W`` uint8: 0 background, 1 disc outside the cup, 2 cup.
    """
    if shape not in DISC_SHAPES:
        raise ValueError(f"unknown disc shape {shape!r}; expected one of {DISC_SHAPES}")
    disc = _shape(_disc_component((prob[..., 0] >= threshold) | (prob[..., 1] >= threshold)), shape)
    cup = _shape(_largest((prob[..., 1] >= threshold) & disc), shape) & disc
    lab = np.zeros(disc.shape, np.uint8)
    lab[disc] = 1
    lab[cup] = 2
    return lab


def _disc_component(mask: np.ndarray) -> np.ndarray:
    """The roundest component of ``mask`` (circularity 4 pi area / perimeter^2) among those at least a quarter the
    area of the largest. The optic disc is close to round; a bright rim flash or lesion segmented as a second
    "disc" can be as large as the real one but is irregular (seen on a validation image, docs/fundus.md)."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    best, best_c = int(np.argmax(areas)), -1.0
    for k in np.flatnonzero(areas >= areas.max() / 4):
        contours, _ = cv2.findContours((lab == k + 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        perim = sum(cv2.arcLength(c, True) for c in contours)
        circ = 4 * np.pi * areas[k] / perim**2 if perim > 0 else 0.0
        if circ > best_c:
            best, best_c = int(k), circ
    return lab == best + 1


def overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The photograph with the segmentation outlined: class 1 green, class 2 blue (disc) / vessels green fill."""
    out = rgb.copy()
    colours = {1: (0, 255, 0), 2: (0, 128, 255)}
    for c, col in colours.items():
        m = (labels == c).astype(np.uint8)
        if not m.any():
            continue
        if labels.max() <= 1:  # vessels: tint the pixels
            out[m > 0] = (0.4 * out[m > 0] + 0.6 * np.array(col)).astype(np.uint8)
        else:
            contours, _ = cv2.findContours((labels >= c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, col, 2)
    return out


def _write_png(path: Path, arr: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", arr if arr.ndim == 2 else arr[..., ::-1])
        if not ok:  # pragma: no cover - OpenCV failure
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(buf.tobytes())
    return path


def predict_files(model: TaskModel, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
    """Segment image files and write ``<stem>_mask.png`` (vessels 0/255; disc 0/128/255 = bg/disc/cup),
    ``<stem>_overlay.png``, and for the disc task ``<stem>_vcdr.json``; every file is written atomically.

    Args:
        model: a :class:`~medzoo.tasks.fundus.FundusModel`.
        paths: image files (8-bit RGB).
        out_dir: output folder (created).
        **options: ``threshold`` (float) overrides the model's probability threshold; others are ignored.

    Returns:
        the written paths.

    Raises:
        InputError: an unreadable, grayscale, RGBA, 16-bit, truncated or too small input, naming the file (before
            anything is written for it; outputs of earlier inputs are already written).
    """
    from medzoo.tasks.fundus.metric import vcdr
    from medzoo.tasks.fundus.model import check_rgb

    out_dir = Path(out_dir)
    thr = options.get("threshold")
    written: list[Path] = []
    for p in paths:
        p = Path(p)
        is_disc = model.task.spec.name == "fundus-disc"
        rgb = check_rgb(read_rgb(p), p, kind="disc" if is_disc else "vessels")
        lab = model.predict(rgb, threshold=thr, path=p)  # type: ignore[attr-defined]
        mask = (lab * 127.5).round().astype(np.uint8) if is_disc else (lab * 255).astype(np.uint8)
        written.append(_write_png(out_dir / f"{output_stem(p)}_mask.png", mask))
        written.append(_write_png(out_dir / f"{output_stem(p)}_overlay.png", overlay(rgb, lab)))
        if is_disc:
            v = vcdr(lab)
            written.append(atomic_write_json(out_dir / f"{output_stem(p)}_vcdr.json", json.loads(json.dumps(
                {"image": str(p), "vcdr": None if np.isnan(v) else round(v, 4), "disc_found": bool((lab >= 1).any()),
                 "definition": "cup height / disc height in pixel rows"}))))
    return written
