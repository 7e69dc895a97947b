"""Procedural chest-CT-like volumes with one mediastinal mass (SYNTHETIC data, not patient images).

Anatomy is defined in millimetres in patient coordinates and sampled on each site's own grid, so sites that
differ in pixel spacing, slice thickness and field of view image the *same kind* of patient differently.

Conventions (the same as :mod:`medzoo.tasks.mediastinum.dataset` reads from files): a volume is a float32
array ``(D, H, W)`` in Hounsfield units; axis 0 runs inferior -> superior, rows run anterior -> posterior
(anterior at the top) and columns run from the patient's right to left (the patient's right on the image's
left), i.e. axial slices as a radiologist reads them. Internally ``x`` (mm) grows to the patient's left,
``y`` posteriorly and ``z`` superiorly, with the body centred on (0, 0, 0).

Mass classes follow the radiology of mediastinal masses:

* thymoma: anterior (prevascular), soft tissue 45-75 HU (mild enhancement), smooth or lobulated, may calcify.
* lymphoma: anterior or middle, large, lobulated, homogeneous 38-55 HU, wrapping (encasing) the vessels.
* teratoma: anterior, heterogeneous: fluid, fat (about -100 HU), soft tissue and calcification.
* neurogenic: posterior paravertebral, round/oval, well defined, 20-45 HU with low-density areas.
* cyst: middle mediastinum, fluid 0-20 HU, thin enhancing wall, no internal enhancement.

Example:
    >>> from medzoo.tasks.mediastinum.generator import generate_case
    >>> case = generate_case("synth-a", seed=1)
    >>> case.volume.ndim, case.label in CLASSES
    (3, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

CLASSES: tuple[str, ...] = ("thymoma", "lymphoma", "teratoma", "neurogenic", "cyst")
Z_EXTENT_MM = 100.0  # cranio-caudal coverage: aortic arch (top) to the heart (bottom)


@dataclass(frozen=True)
class Site:
    """Acquisition settings and case mix of one synthetic site.

    Attributes:
        name: site name, e.g. ``"synth-a"``.
        noise_hu: standard deviation of image noise (HU), before the kernel shapes its texture.
        kernel: reconstruction kernel sharpness: < 0 soft (smoothing, blotchy noise), 0 standard, > 0 sharp
            (edge-enhancing, grainy noise).
        slice_mm: slice thickness = slice spacing (mm).
        pixel_mm: in-plane pixel spacing (mm).
        fov_mm: reconstruction field of view (mm); the matrix is ``round(fov / pixel)``.
        hu_offset: calibration offset added to every voxel (HU).
        class_mix: case proportions of :data:`CLASSES`.
        n_train: training cases.
        n_test: test cases.
        seed: base seed of the site's cases.
        description: one line, for docs.
    """

    name: str
    noise_hu: float
    kernel: float
    slice_mm: float
    pixel_mm: float
    fov_mm: float
    hu_offset: float
    class_mix: tuple[float, float, float, float, float]
    n_train: int
    n_test: int
    seed: int
    description: str = ""


SITES: dict[str, Site] = {
    "synth-a": Site("synth-a", 14.0, -1.0, 5.0, 2.8, 360.0, 0.0, (0.35, 0.15, 0.25, 0.10, 0.15), 300, 150, 1000,
                    "soft kernel, 5 mm slices; thymoma/teratoma-rich (thoracic surgery referrals)"),
    "synth-b": Site("synth-b", 20.0, 1.0, 2.5, 2.5, 320.0, 8.0, (0.10, 0.35, 0.05, 0.15, 0.35), 300, 150, 2000,
                    "sharp kernel, 2.5 mm slices, +8 HU offset; lymphoma/cyst-rich (haematology centre)"),
    "synth-c": Site("synth-c", 10.0, 0.0, 3.0, 3.1, 400.0, -10.0, (0.05, 0.40, 0.05, 0.40, 0.10), 300, 150, 3000,
                    "standard kernel, large FOV, -10 HU offset; lymphoma/neurogenic-rich, few thymomas/teratomas"),
    "synth-d": Site("synth-d", 16.0, 0.0, 2.0, 2.7, 345.0, 4.0, (0.20, 0.20, 0.20, 0.20, 0.20), 300, 150, 4000,
                    "standard kernel, 2 mm slices, balanced case mix"),
    "synth-x": Site("synth-x", 26.0, 1.5, 4.0, 2.2, 280.0, 15.0, (0.20, 0.20, 0.20, 0.20, 0.20), 0, 300, 9000,
                    "UNSEEN acquisition: very sharp kernel, noisiest, small FOV (clips the body), +15 HU offset; "
                    "balanced mix; test only"),
}


@dataclass
class Case:
    """One synthetic case.

    Attributes:
        volume: ``(D, H, W)`` float32, Hounsfield units (radiological axial display).
        spacing: ``(z, y, x)`` voxel spacing in mm.
        label: the mass class, one of :data:`CLASSES`.
        bbox: ``(z0, y0, x0, z1, y1, x1)``, voxel indices, half-open, of the mass.
        mask: ``(D, H, W)`` bool mass mask.
        params: the drawn parameters (site, seed, mass centre and size in mm, ...).
    """

    volume: np.ndarray
    spacing: tuple[float, float, float]
    label: str
    bbox: tuple[int, int, int, int, int, int]
    mask: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label_index(self) -> int:
        return CLASSES.index(self.label)


class _Canvas:
    """A volume with its mm coordinate axes; painters touch only the bounding sub-box of a shape."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float], fill: float) -> None:
        self.vol = np.full(shape, fill, np.float32)
        self.axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
        self.spacing = spacing

    def _range(self, axis: int, lo: float, hi: float) -> slice:
        a, s = self.axes[axis], self.spacing[axis]
        i0 = int(np.clip(np.floor((lo - a[0]) / s), 0, len(a)))
        i1 = int(np.clip(np.ceil((hi - a[0]) / s) + 1, 0, len(a)))
        return slice(i0, max(i0, i1))

    def box(self, center: tuple[float, float, float], half: tuple[float, float, float]) -> tuple[slice, slice, slice]:
        return tuple(self._range(i, center[i] - half[i], center[i] + half[i]) for i in range(3))  # type: ignore[return-value]

    def grids(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, y, x = (self.axes[i][sl[i]] for i in range(3))
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def ellipsoid_mask(self, sl: tuple[slice, slice, slice], c: tuple[float, float, float],
                       a: tuple[float, float, float]) -> np.ndarray:
        z, y, x = self.grids(sl)
        return ((z - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((x - c[2]) / a[2]) ** 2 <= 1.0

    def ellipsoid(self, c: tuple[float, float, float], a: tuple[float, float, float], value: float) -> None:
        sl = self.box(c, a)
        sub = self.vol[sl]
        sub[self.ellipsoid_mask(sl, c, a)] = value

    def tube(self, p0: tuple[float, float], p1: tuple[float, float], r: float, z0: float, z1: float,
             value: float) -> None:
        """A tube of radius ``r`` along the in-plane segment p0-p1 (y, x), over slices z0..z1 (a cylinder when
        p0 == p1)."""
        zs = self.axes[0]
        iz = np.nonzero((zs >= min(z0, z1)) & (zs <= max(z0, z1)))[0]
        c = (0.0, 0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]))
        half = (0.0, 0.5 * abs(p1[0] - p0[0]) + r, 0.5 * abs(p1[1] - p0[1]) + r)
        _, sly, slx = self.box(c, half)
        if len(iz) == 0 or sly.stop <= sly.start or slx.stop <= slx.start:
            return
        y, x = self.axes[1][sly][:, None], self.axes[2][slx][None, :]
        d = np.array(p1, np.float32) - np.array(p0, np.float32)
        t = np.clip(((y - p0[0]) * d[0] + (x - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
        m2 = (y - p0[0] - t * d[0]) ** 2 + (x - p0[1] - t * d[1]) ** 2 <= r * r
        self.vol[iz[0] : iz[-1] + 1, sly, slx][:, m2] = value


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _anatomy(cv: _Canvas, rng: np.random.Generator) -> dict[str, Any]:
    """Paint body wall, lungs, mediastinal fat, heart, vessels, airway, oesophagus, sternum, ribs and spine."""
    s = _u(rng, 0.9, 1.08)
    bx, by = 160 * s, 112 * s
    z_lo, z_hi = -Z_EXTENT_MM, Z_EXTENT_MM
    fat, mus = _u(rng, 8, 20), _u(rng, 8, 13)
    cav = (bx - fat - mus, by - fat - mus)
    blood = _u(rng, 160, 230)  # contrast-enhanced vessels (arterial/portal phase)
    cv.ellipsoid((0, 0, 0), (1e4, by, bx), -100.0)  # subcutaneous fat
    cv.ellipsoid((0, 0, 0), (1e4, by - fat, bx - fat), 45.0)  # chest wall muscle
    cv.ellipsoid((0, 0, 0), (1e4, cav[1], cav[0]), -860.0)  # thoracic cavity (lungs)
    for k in range(16):  # ribs: bone cross-sections along the cavity wall, shifting with z
        ang = np.pi * (k / 8.0) + 0.15
        ry, rx = (cav[1] + 4) * np.sin(ang), (cav[0] + 4) * np.cos(ang)
        cv.tube((ry, rx), (ry, rx), 5.5, z_lo + (k % 3) * 12, z_hi - (k % 2) * 20, 550.0)
    for side in (-1, 1):  # lung vessels
        for _ in range(7):
            vy, vx = _u(rng, -0.6, 0.6) * cav[1], side * _u(rng, 0.45, 0.8) * cav[0]
            cv.tube((vy, vx), (vy, vx), _u(rng, 1.5, 3.5), z_lo, z_hi, _u(rng, 20, 60))
    spine_y = cav[1] - 22
    med = (_u(rng, 34, 44), cav[1] * 0.96)
    cv.ellipsoid((0, 2.0, 6.0), (1e4, med[1], med[0]), -95.0)  # mediastinal fat
    cv.ellipsoid((-55, -20 * s, 18), (48, 62 * s, 70 * s), 120.0)  # heart (lower slices)
    cv.ellipsoid((-55, -20 * s, 18), (40, 50 * s, 58 * s), blood * 0.8)  # cardiac blood pool
    cv.tube((-cav[1] + 6, 0), (-cav[1] + 6, 0), 9.0, z_lo, z_hi, 380.0)  # sternum
    cv.tube((spine_y, 0), (spine_y, 0), 18.0, z_lo, z_hi, 700.0)  # vertebral body cortex
    cv.tube((spine_y, 0), (spine_y, 0), 15.5, z_lo, z_hi, 240.0)  # cancellous bone
    cv.tube((spine_y + 26, 0), (spine_y + 26, 0), 8.0, z_lo, z_hi, 15.0)  # spinal canal (CSF)
    cv.tube((spine_y + 40, -14), (spine_y + 40, 14), 5.0, z_lo, z_hi, 600.0)  # lamina
    for side in (-1, 1):
        cv.tube((spine_y + 22, side * 38), (spine_y + 22, side * 38), 16.0, z_lo, z_hi, 50.0)  # paraspinal muscle
    desc = (spine_y - 24, 24.0)
    asc = (-22.0 * s, -10.0)
    cv.tube(desc, desc, 12.0, z_lo, z_hi, blood)  # descending aorta
    cv.tube(asc, asc, 15.0, -45, 35, blood)  # ascending aorta
    cv.tube(asc, desc, 12.0, 35, z_hi, blood)  # aortic arch
    cv.tube((-14.0, -32.0), (-14.0, -32.0), 10.0, -20, z_hi, blood * 1.15)  # superior vena cava
    cv.tube((-18.0, 18.0), (-18.0, 18.0), 14.0, -30, 12, blood)  # pulmonary trunk
    cv.tube((-12.0, 18.0), (2.0, 60.0), 9.0, 0, 12, blood)  # left pulmonary artery
    cv.tube((-12.0, 10.0), (-4.0, -60.0), 9.0, -6, 6, blood)  # right pulmonary artery
    trach = (spine_y - 48, 0.0)
    cv.tube(trach, trach, 10.0, 8, z_hi, 40.0)
    cv.tube(trach, trach, 8.0, 8, z_hi, -1000.0)  # trachea
    for side in (-1, 1):  # main bronchi below the carina
        cv.tube(trach, (trach[0] + 5, side * 22.0), 6.0, -12, 8, -1000.0)
    cv.tube((spine_y - 30, 8.0), (spine_y - 30, 8.0), 7.0, z_lo, z_hi, 40.0)  # oesophagus
    return {"scale": s, "spine_y": spine_y, "trachea": trach, "asc_aorta": asc, "desc_aorta": desc, "blood": blood}


def _noise_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    n = rng.standard_normal(shape, dtype=np.float32)
    n = ndimage.gaussian_filter(n, sigma)
    return n / max(float(n.std()), 1e-6)


def _mass(cv: _Canvas, rng: np.random.Generator, label: str, anat: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Paint the mass; return its mask and parameters. Class sets compartment, density, texture and shape."""
    sy = anat["spine_y"]
    if label == "thymoma":
        c = (_u(rng, -5, 30), _u(rng, -58, -42), _u(rng, -12, 22))
        r = _u(rng, 14, 28)
        lobes = int(rng.integers(1, 3))
    elif label == "lymphoma":
        mid = rng.random() < 0.45
        c = (_u(rng, -5, 25), _u(rng, -12, 5) if mid else _u(rng, -50, -35), _u(rng, -15, 15))
        r = _u(rng, 20, 34)
        lobes = int(rng.integers(4, 7))
    elif label == "teratoma":
        c = (_u(rng, -10, 25), _u(rng, -56, -42), _u(rng, -10, 25))
        r = _u(rng, 17, 32)
        lobes = 1
    elif label == "neurogenic":
        side = 1 if rng.random() < 0.5 else -1
        c = (_u(rng, -40, 40), sy + _u(rng, -6, 6), side * _u(rng, 34, 42))
        r = _u(rng, 12, 24)
        lobes = 1
    else:  # cyst: subcarinal, paratracheal or pericardial, middle mediastinum
        c = (_u(rng, -20, 15), _u(rng, -5, 12) + anat["trachea"][0] * 0.3, _u(rng, -14, 14))
        r = _u(rng, 11, 24)
        lobes = 1
    elong = _u(rng, 0.85, 1.35) if label != "neurogenic" else _u(rng, 1.1, 1.6)
    axes = (r * elong, r * _u(rng, 0.75, 1.0), r * _u(rng, 0.8, 1.15))
    half = tuple(a * 1.9 for a in axes)
    sl = cv.box(c, half)  # type: ignore[arg-type]
    mask = cv.ellipsoid_mask(sl, c, axes)
    for _ in range(lobes - 1):  # lobulation: overlapping satellite blobs on the surface
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        lc = tuple(c[i] + d[i] * axes[i] * 0.75 for i in range(3))
        la = tuple(a * _u(rng, 0.45, 0.7) for a in axes)
        mask |= cv.ellipsoid_mask(sl, lc, la)  # type: ignore[arg-type]
    sub = cv.vol[sl]
    shape = mask.shape
    tex = _noise_field(rng, shape, 1.2)
    if label == "thymoma":
        vals = _u(rng, 45, 75) + 7 * tex
        if rng.random() < 0.35:  # punctate or curvilinear calcification
            for _ in range(int(rng.integers(1, 4))):
                cc = tuple(c[i] + _u(rng, -0.5, 0.5) * axes[i] for i in range(3))
                vals = np.where(cv.ellipsoid_mask(sl, cc, (3.0, 2.5, 2.5)), _u(rng, 250, 600), vals)  # type: ignore[arg-type]
    elif label == "lymphoma":
        vals = _u(rng, 38, 55) + 3 * tex
    elif label == "teratoma":
        vals = _u(rng, 5, 25) + 4 * tex  # fluid-filled
        for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.92 else 0):  # fat components
            fc = tuple(c[i] + _u(rng, -0.45, 0.45) * axes[i] for i in range(3))
            vals = np.where(cv.ellipsoid_mask(sl, fc, tuple(a * _u(rng, 0.3, 0.5) for a in axes)), _u(rng, -110, -70), vals)  # type: ignore[arg-type]
        nc = tuple(c[i] + _u(rng, -0.4, 0.4) * axes[i] for i in range(3))  # soft-tissue (Rokitansky) nodule
        vals = np.where(cv.ellipsoid_mask(sl, nc, tuple(a * 0.3 for a in axes)), _u(rng, 35, 60), vals)  # type: ignore[arg-type]
        if rng.random() < 0.65:
            cc = tuple(c[i] + _u(rng, -0.4, 0.4) * axes[i] for i in range(3))
            vals = np.where(cv.ellipsoid_mask(sl, cc, (4.0, 3.5, 3.5)), _u(rng, 300, 800), vals)  # type: ignore[arg-type]
    elif label == "neurogenic":
        vals = _u(rng, 28, 45) + 6 * tex
        vals = np.where(_noise_field(rng, shape, 2.0) > 1.0, vals - _u(rng, 10, 25), vals)  # cystic/Antoni B areas
    else:
        vals = _u(rng, 0, 20) + 1.5 * tex
        wall = mask & ~ndimage.binary_erosion(mask, iterations=1)
        vals = np.where(wall, _u(rng, 35, 55), vals)
    sub[mask] = vals[mask]
    if label == "lymphoma":  # encasement: vessels run through the mass, undisplaced
        blood = anat["blood"]
        asc, desc = anat["asc_aorta"], anat["desc_aorta"]
        cv.tube(asc, asc, 15.0, -45, 35, blood)
        cv.tube(asc, desc, 12.0, 35, Z_EXTENT_MM, blood)
        cv.tube((-14.0, -32.0), (-14.0, -32.0), 10.0, -20, Z_EXTENT_MM, blood * 1.15)
        cv.tube((-18.0, 18.0), (-18.0, 18.0), 14.0, -30, 12, blood)
        mask &= cv.vol[sl] < 120  # the vessels are not part of the mass
    full = np.zeros(cv.vol.shape, bool)
    full[sl] = mask
    return full, {"center_mm": [round(v, 2) for v in c], "radius_mm": round(r, 2), "lobes": lobes}


def _acquire(vol: np.ndarray, site: Site, rng: np.random.Generator) -> np.ndarray:
    """Partial-volume blur, reconstruction kernel, correlated noise, calibration offset, 12-bit clipping."""
    blur = 0.55 if site.kernel < 0 else 0.4
    vol = ndimage.gaussian_filter(vol, (0.35, blur, blur))
    if site.kernel > 0:  # edge enhancement (sharp kernel)
        vol = vol + 0.6 * site.kernel * (vol - ndimage.gaussian_filter(vol, (0, 1.0, 1.0)))
    noise = rng.standard_normal(vol.shape, dtype=np.float32)
    if site.kernel < 0:  # soft kernels give low-frequency ("blotchy") noise
        noise = ndimage.gaussian_filter(noise, (0, 0.9, 0.9))
        noise /= max(float(noise.std()), 1e-6)
    vol = vol + site.noise_hu * noise + site.hu_offset
    return np.clip(vol, -1024.0, 3071.0).astype(np.float32)


def generate_case(site: str | Site, seed: int, label: str | None = None) -> Case:
    """Generate one case of ``site`` deterministically from ``seed``.

    Args:
        site: a name in :data:`SITES` or a :class:`Site`.
        seed: any integer; the same (site, seed, label) gives the same case, bit for bit.
        label: force the mass class; default: drawn from the site's class mix.

    Returns:
        A :class:`Case` (SYNTHETIC).
    """
    st = SITES[site] if isinstance(site, str) else site
    rng = np.random.default_rng([st.seed, seed])
    if label is None:
        label = CLASSES[int(rng.choice(len(CLASSES), p=np.asarray(st.class_mix) / sum(st.class_mix)))]
    elif label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; classes: {', '.join(CLASSES)}")
    n_xy = int(round(st.fov_mm / st.pixel_mm))
    n_z = int(round(Z_EXTENT_MM / st.slice_mm))
    spacing = (st.slice_mm, st.pixel_mm, st.pixel_mm)
    cv = _Canvas((n_z, n_xy, n_xy), spacing, -1000.0)
    cv.axes[1] = cv.axes[1] + _u(rng, -8, 8)  # table height / centring varies
    cv.axes[2] = cv.axes[2] + _u(rng, -8, 8)
    anat = _anatomy(cv, rng)
    mask, params = _mass(cv, rng, label, anat)
    vol = _acquire(cv.vol, st, rng)
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:  # mass fell outside the field of view: redraw with the next seed
        return generate_case(st, seed + 1_000_003, label)
    bbox = tuple(int(i.min()) for i in idx) + tuple(int(i.max()) + 1 for i in idx)
    params.update(site=st.name, seed=seed, synthetic=True)
    return Case(vol, spacing, label, bbox, mask, params)  # type: ignore[arg-type]


def site_labels(site: str | Site, split: str) -> list[str]:
    """Mass classes of a site's split, in case order: exact class mix (largest remainder), interleaved so that
    any prefix of the list is close to the mix."""
    st = SITES[site] if isinstance(site, str) else site
    n = st.n_train if split == "train" else st.n_test
    mix = np.asarray(st.class_mix, float) / sum(st.class_mix)
    counts = np.floor(mix * n).astype(int)
    for i in np.argsort(-(mix * n - counts))[: n - counts.sum()]:
        counts[i] += 1
    keyed = [((j + 0.5) / c, k, CLASSES[k]) for k, c in enumerate(counts) for j in range(c)]
    return [lab for _, _, lab in sorted(keyed)]


def case_seed(split: str, index: int) -> int:
    """The seed of case ``index`` of ``split`` (train and test never share a seed)."""
    return index * 2 + (0 if split == "train" else 1)
