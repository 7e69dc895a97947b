"""Procedural SYNTHETIC axial head-CT slices at the level of the lateral ventricles, with known midline shift.

Why procedural: no public set of head CTs annotated with midline landmarks is available to medzoo. A generator
gives exact ground truth (the shift is a parameter of the anatomy, not a rater's estimate) and lets sites
differ in controlled ways. Everything made here is SYNTHETIC and is labelled so wherever it is reported.

The anatomy is drawn in a *head frame* in mm: ``x`` toward the patient's left, ``y`` toward posterior, origin
at the centre of the cranial cavity. It holds scalp, a three-layer skull (cortical tables, diploe), a CSF rim
with sulci, a grey-matter cortical ribbon, white matter, caudate heads and thalami, the frontal horns and atria
of the lateral ventricles, the third ventricle, the septum pellucidum and the falx with the interhemispheric
fissure. A space-occupying lesion (acute/chronic subdural haematoma or intraparenchymal haematoma with oedema)
on one side pushes the intracranial contents across the midline: the brain is resampled through a smooth
displacement field that is exactly ``shift_mm`` (flat-topped) at the septum and exactly zero at the falx
attachments and the skull, so the falx bows (subfalcine herniation) while its attachments stay, and the
ipsilateral ventricle is compressed, the contralateral one dilated. The ground-truth shift therefore equals
the perpendicular distance of the septum from the line joining the falx attachments, as radiologists measure.

The head frame is then placed in the image (radiological display: anterior at the top row, patient's right
on the image's left) with a site's pixel spacing, field of view, head rotation, tilt, reconstruction kernel,
noise, HU calibration and padding value (:data:`SITES`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import cv2
import numpy as np

from medzoo.tasks.midline.geometry import midline_shift_mm

AIR = -1000.0


@dataclass(frozen=True)
class SiteProfile:
    """Acquisition settings of a SYNTHETIC site (ranges are sampled per slice).

    Attributes:
        spacing_mm: (low, high) in-plane pixel size; rows and columns share it unless ``aniso`` > 0.
        fov_mm: (low, high) reconstruction field of view (square).
        kernel_sigma_mm: (low, high) Gaussian blur of the reconstruction kernel (small = sharp).
        noise_hu: (low, high) noise standard deviation in HU.
        noise_grain_mm: spatial correlation of the noise (kernel texture).
        hu_offset: (low, high) calibration offset added to every HU value.
        hu_scale: (low, high) calibration slope.
        rotation_deg: max absolute in-plane head rotation (yaw).
        tilt_deg: max gantry tilt / head flexion (foreshortens the AP axis, changes ventricle appearance).
        offset_mm: max head displacement from the FOV centre.
        pad_value: value outside the reconstruction circle (scanner padding), or None for air.
        clip: (low, high) stored value range (e.g. a 12-bit store clips bone at 3071).
        aniso: max relative difference between row and column spacing.
        n_train, n_test: slices in the site's splits.
    """

    spacing_mm: tuple[float, float]
    fov_mm: tuple[float, float]
    kernel_sigma_mm: tuple[float, float]
    noise_hu: tuple[float, float]
    noise_grain_mm: float
    hu_offset: tuple[float, float]
    hu_scale: tuple[float, float]
    rotation_deg: float
    tilt_deg: float
    offset_mm: float
    pad_value: float | None
    clip: tuple[float, float]
    aniso: float = 0.0
    n_train: int = 480
    n_test: int = 120


SITES: dict[str, SiteProfile] = {
    "synth-a": SiteProfile((0.45, 0.5), (220, 240), (0.5, 0.7), (3, 5), 0.6, (-2, 2), (1.0, 1.0), 6, 5, 8,
                           -2048.0, (-2048, 3071)),
    "synth-b": SiteProfile((0.55, 0.65), (230, 260), (0.8, 1.1), (2, 4), 1.0, (3, 8), (0.98, 1.02), 12, 10, 12,
                           -1024.0, (-1024, 3071)),
    "synth-c": SiteProfile((0.4, 0.45), (200, 215), (0.3, 0.45), (6, 10), 0.4, (-8, -2), (1.0, 1.04), 10, 8, 10,
                           -3024.0, (-3024, 3071)),
    "synth-d": SiteProfile((0.7, 0.8), (240, 260), (0.7, 0.9), (4, 7), 0.8, (-4, 4), (0.97, 1.0), 15, 12, 15,
                           None, (-1024, 2000), aniso=0.05),
    # Unseen at training time: spacing, FOV, kernel, noise, calibration, rotation and tilt outside the others.
    "synth-x": SiteProfile((0.85, 0.95), (210, 230), (0.6, 1.3), (5, 12), 0.7, (6, 12), (1.03, 1.06), 20, 15, 18,
                           -2000.0, (-1024, 1800), aniso=0.08),
}
TRAIN_SITES: tuple[str, ...] = ("synth-a", "synth-b", "synth-c", "synth-d")
UNSEEN_SITE = "synth-x"


@dataclass(frozen=True)
class SyntheticSlice:
    """One SYNTHETIC slice and its ground truth.

    Attributes:
        hu: ``(H, W)`` float32 HU image, radiological display.
        spacing_mm: ``(row_mm, col_mm)``.
        points: ``(3, 2)`` float (x, y) pixel coordinates: anterior falx, septum, posterior falx.
        shift_mm: signed midline shift, positive toward the patient's left.
        lesion: ``"none"``, ``"sdh"`` or ``"ich"``.
        lesion_side: ``-1`` patient's right, ``+1`` patient's left, 0 none.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float]
    points: np.ndarray
    shift_mm: float
    lesion: str
    lesion_side: int


def case_seed(site: str, split: str, index: int) -> int:
    """Deterministic seed of slice ``index`` of ``site``/``split`` (independent of Python's hash salt)."""
    return int.from_bytes(hashlib.sha256(f"midline/{site}/{split}/{index}".encode()).digest()[:8], "little")


def sample_shift(rng: np.random.Generator) -> float:
    """Signed shift: 30% exactly zero, else magnitude uniform in (0, 20] mm with a random side."""
    if rng.random() < 0.3:
        return 0.0
    return float(rng.uniform(0.0, 20.0) * rng.choice((-1.0, 1.0)))


def _cos2(t: np.ndarray) -> np.ndarray:
    """Flat-topped bump: 1 at 0, 0 for |t| >= 1, zero slope at both ends."""
    return np.cos(0.5 * np.pi * np.clip(np.abs(t), 0.0, 1.0)) ** 2


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def generate(seed: int, site: str | SiteProfile = "synth-a", *, shift_mm: float | None = None,
             lesion: str | None = None) -> SyntheticSlice:
    """Render one SYNTHETIC axial head-CT slice.

    Args:
        seed: random seed; the same seed and site give the same slice (bit-identical).
        site: a name in :data:`SITES` or a :class:`SiteProfile`.
        shift_mm: signed midline shift to impose (positive toward the patient's left); sampled when None.
        lesion: ``"none"``, ``"sdh"`` or ``"ich"``; sampled when None (a shift needs a lesion; a small lesion
            without shift also occurs so that lesion presence alone does not tell the shift).

    Returns:
        A :class:`SyntheticSlice`.

    Example:
        >>> s = generate(0, "synth-a", shift_mm=8.0)
        >>> round(s.shift_mm, 3)
        8.0
    """
    prof = SITES[site] if isinstance(site, str) else site
    rng = np.random.default_rng(seed)
    # Draw the case-level choices first, always all of them, so that the anatomy drawn below is the same for a
    # given seed whatever shift or lesion the caller imposes (tests compare shifted and unshifted renderings).
    drawn_shift = sample_shift(rng)
    u_lesion, drawn_kind, drawn_side = rng.random(), str(rng.choice(["sdh", "ich"])), int(rng.choice((-1, 1)))
    shift = drawn_shift if shift_mm is None else float(shift_mm)
    if lesion is None:
        lesion = drawn_kind if abs(shift) > 0 or u_lesion < 0.4 else "none"
    if lesion not in ("none", "sdh", "ich"):
        raise ValueError(f"lesion must be 'none', 'sdh' or 'ich', got {lesion!r}")
    side = (-1 if shift > 0 else 1) if shift != 0 else drawn_side  # the lesion pushes away from itself
    if lesion == "none":
        side = 0

    # ---- acquisition geometry -------------------------------------------------------------------------------
    sp = float(rng.uniform(*prof.spacing_mm))
    aniso = 1.0 + rng.uniform(-prof.aniso, prof.aniso)
    sr, sc = sp * aniso, sp
    fov = float(rng.uniform(*prof.fov_mm))
    h, w = int(round(fov / sr)), int(round(fov / sc))
    phi = np.deg2rad(rng.uniform(-prof.rotation_deg, prof.rotation_deg))
    k_tilt = np.cos(np.deg2rad(rng.uniform(0, prof.tilt_deg)))
    cx, cy = rng.uniform(-prof.offset_mm, prof.offset_mm, 2)

    # ---- anatomy parameters (head frame, mm) ---------------------------------------------------------------
    a = rng.uniform(60, 69)                      # inner-table half width
    b_ant, b_post = rng.uniform(76, 86), rng.uniform(78, 90)
    skull_t, scalp_t = rng.uniform(4.5, 8.0), rng.uniform(3.0, 7.0)
    atrophy = rng.uniform(0, 1)
    csf_rim = 0.6 + 2.0 * atrophy
    gm_hu, wm_hu, csf_hu = rng.uniform(34, 42), rng.uniform(23, 30), rng.uniform(2, 10)
    ys = -rng.uniform(14, 28)                    # septum landmark row
    gap = rng.uniform(0.9, 1.6)                  # septum half thickness
    wfh = rng.uniform(3.0, 6.5) * (1 + 0.4 * atrophy)
    lfh = rng.uniform(10, 15)
    roll = rng.uniform(-0.12, 0.12) * prof.tilt_deg / 10
    compress = min(0.75, 0.035 * abs(shift))
    scale_side = {s: (1 + roll * s) * (1 - compress if s == side else 1 + 0.5 * compress if side else 1) for s in (-1, 1)}
    harm = rng.normal(0, 0.012, 3)

    # ---- pixel grid -> head frame ----------------------------------------------------------------------------
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    X = (xx - (w - 1) / 2) * sc - cx
    Y = (yy - (h - 1) / 2) * sr - cy
    c, s_ = np.float32(np.cos(phi)), np.float32(np.sin(phi))
    x = c * X + s_ * Y
    y = (-s_ * X + c * Y) / np.float32(k_tilt)
    th = np.arctan2(y, x)
    bb = np.where(y < 0, np.float32(b_ant), np.float32(b_post))
    rho = np.sqrt((x / a) ** 2 + (y / bb) ** 2) * (1 + harm[0] * np.cos(2 * th) + harm[1] * np.cos(4 * th)
                                                    + harm[2] * np.sin(th))
    r = np.sqrt(x * x + y * y)
    dist = r * (1 - 1 / np.maximum(rho, 1e-3))   # signed radial distance to the inner table (+ outside)

    hu = np.full((h, w), AIR, np.float32)
    inside_head = dist < skull_t + scalp_t
    hu[inside_head] = rng.uniform(15, 45)
    fat = inside_head & (dist > skull_t + 0.5) & (dist < skull_t + 0.5 + 0.4 * scalp_t)
    hu[fat] = rng.uniform(-90, -50)
    bone = (dist >= 0) & (dist < skull_t)
    tfrac = dist / skull_t
    table_hu = rng.uniform(1200, 1700)
    hu[bone] = np.where(np.abs(tfrac[bone] - 0.5) < 0.2, rng.uniform(450, 800), table_hu)

    # ---- brain, resampled through the mass-effect displacement -----------------------------------------------
    icv = dist < 0
    xi, yi, di, thi = x[icv], y[icv], -dist[icv], th[icv]
    la, lp, lx = (ys + b_ant) * 0.92, (b_post - ys) * 0.92, rng.uniform(45, 58)
    v = yi - ys
    g = _cos2(np.where(v < 0, v / la, v / lp)) * _cos2((xi - shift) / lx)
    x0 = xi - shift * g                           # where each displayed brain point came from
    y0 = yi
    b = np.full(xi.shape, wm_hu, np.float32)
    # cortex follows the inner table; sulci as radial clefts
    gyri = np.cos(rng.uniform(34, 46) * thi + 2.5 * _smooth_noise(rng, (h, w), 6)[icv])
    depth = rng.uniform(8, 14)
    sulcus = (di < depth) & (np.abs(gyri) < 0.12 + 0.1 * atrophy)
    b[(di < csf_rim + rng.uniform(2.5, 3.5)) | ((di < depth + 3) & (np.abs(gyri) < 0.35))] = gm_hu
    b[(di < csf_rim) | sulcus] = csf_hu
    # deep grey: caudate heads, thalami
    ax0 = np.abs(x0)
    caud = ((ax0 - gap - 1.6 * wfh - 4) / 5.0) ** 2 + ((y0 - ys) / 9.0) ** 2 < 1
    thal = ((ax0 - 9.5) / 8.0) ** 2 + ((y0 - ys - 24) / 11.0) ** 2 < 1
    b[caud | thal] = gm_hu - 2
    # ventricles (per side, scaled by compression / dilation)
    vent = np.zeros(xi.shape, bool)
    for sd in (-1, 1):
        k = scale_side[sd]
        u = sd * x0 - gap
        vv = (y0 - ys) / (lfh * (0.7 + 0.3 * k))
        width = wfh * k * np.sqrt(np.clip(1 - vv**2, 0, 1)) * (1 - 0.35 * vv)
        vent |= (u >= 0) & (u <= width)
        ax, ay = sd * x0 - rng.uniform(19, 25), y0 - ys - rng.uniform(40, 50)
        ca, sa = np.cos(sd * 0.5), np.sin(sd * 0.5)
        vent |= ((ca * ax + sa * ay) / (rng.uniform(3, 6) * k + 0.5)) ** 2 + ((-sa * ax + ca * ay) / rng.uniform(7, 11)) ** 2 < 1
    vent |= (ax0 < rng.uniform(1.0, 2.5)) & (y0 > ys + 12) & (y0 < ys + 32)       # third ventricle
    b[vent] = csf_hu
    # interhemispheric fissure and falx (in the undeformed frame, so the falx bows with the shift)
    y_af, y_pf = ys - rng.uniform(14, 22), ys + rng.uniform(58, 70)
    fiss = (y0 < y_af) | (y0 > y_pf)
    b[fiss & (ax0 < 1.6)] = csf_hu
    b[fiss & (ax0 < 0.45)] = rng.uniform(55, 90)
    # lesion
    if lesion == "sdh" and side:
        thick = (0.9 * abs(shift) + rng.uniform(2, 6)) * rng.uniform(0.9, 1.2)
        ang = np.arctan2(yi, side * xi)           # 0 = lateral on the lesion side
        centre = rng.uniform(-0.3, 0.3)
        prof_ = _cos2((ang - centre) / 1.5)
        b[(side * xi > 0) & (di < thick * prof_)] = rng.uniform(55, 80) if rng.random() < 0.7 else rng.uniform(12, 22)
    elif lesion == "ich" and side:
        rad = 6 + 0.7 * abs(shift) * rng.uniform(0.8, 1.2)
        ex, ey = side * (rng.uniform(14, 20) + rad), ys + rng.uniform(0, 30)
        dd = np.sqrt((xi - ex) ** 2 + ((yi - ey) / 1.2) ** 2)
        b[dd < rad + rng.uniform(3, 7)] = rng.uniform(12, 20)
        b[dd < rad] = rng.uniform(55, 85)
    b += 1.5 * _smooth_noise(rng, (h, w), 20)[icv]
    hu[icv] = b

    # ---- reconstruction: kernel blur, correlated noise, calibration, FOV padding, storage range -------------
    ks = float(rng.uniform(*prof.kernel_sigma_mm))
    hu = cv2.GaussianBlur(hu, (0, 0), sigmaX=ks / sc, sigmaY=ks / sr)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    gs = prof.noise_grain_mm / sp
    noise = cv2.GaussianBlur(noise, (0, 0), gs) * np.float32(np.sqrt(4 * np.pi) * gs)
    hu += noise * np.float32(rng.uniform(*prof.noise_hu))
    hu = hu * np.float32(rng.uniform(*prof.hu_scale)) + np.float32(rng.uniform(*prof.hu_offset))
    if prof.pad_value is not None:
        rr = ((xx - (w - 1) / 2) * sc) ** 2 + ((yy - (h - 1) / 2) * sr) ** 2
        hu[rr > (fov / 2) ** 2] = prof.pad_value
    hu = np.clip(hu, *prof.clip).astype(np.float32)

    # ---- ground truth in pixels ------------------------------------------------------------------------------
    def to_px(px: float, py: float) -> tuple[float, float]:
        py *= k_tilt
        X_ = c * px - s_ * py + cx
        Y_ = s_ * px + c * py + cy
        return X_ / sc + (w - 1) / 2, Y_ / sr + (h - 1) / 2

    def table(sign: int) -> float:                # inner-table y on the midline (solves rho(0, y) = 1)
        bb_ = b_ant if sign < 0 else b_post
        lo, hi = 0.5 * bb_, 1.5 * bb_
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            t = np.arctan2(sign * mid, 0.0)
            rh = mid / bb_ * (1 + harm[0] * np.cos(2 * t) + harm[1] * np.cos(4 * t) + harm[2] * np.sin(t))
            lo, hi = (mid, hi) if rh < 1 else (lo, mid)
        return sign * 0.5 * (lo + hi)

    pts = np.array([to_px(0.0, table(-1)), to_px(shift, ys), to_px(0.0, table(1))], np.float64)
    return SyntheticSlice(hu=hu, spacing_mm=(sr, sc), points=pts, shift_mm=midline_shift_mm(pts, (sr, sc)),
                          lesion=lesion, lesion_side=side)


def site_slice(site: str, split: str, index: int) -> SyntheticSlice:
    """Slice ``index`` of a built-in SYNTHETIC site's split (deterministic)."""
    return generate(case_seed(site, split, index), site)


def with_size(profile: SiteProfile, n_train: int, n_test: int) -> SiteProfile:
    """A copy of ``profile`` with other split sizes."""
    return replace(profile, n_train=n_train, n_test=n_test)
