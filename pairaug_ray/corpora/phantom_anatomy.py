"""Rendering of phantom PA chest radiographs: a persistent per-patient anatomy plus findings.

Convention: images are PA views as a radiologist reads them, so the patient's RIGHT is on the
image's LEFT. `side_sign("left") == +1` means "towards the image's right". Intensities are in
[0, 1] with bright = dense (bone and fluid white, air black), like a displayed radiograph.

The anatomy (habitus, lung fields, heart, ribs, spine, diaphragm, vessels) is drawn once per patient
and reused for each of the patient's studies; findings, exposure and noise are drawn per study.
Each finding is placed where a radiologist looks for it: effusion fills the costophrenic angle on
its side with a meniscus; cardiomegaly widens the heart so the cardiothoracic ratio (CTR) passes
0.5; atelectasis is a plate-like band at a lung base with some volume loss; consolidation is a
dense patch with air bronchograms in its zone; edema is a bilateral perihilar haze with Kerley B
lines; pneumothorax is a lucent rim without vessels behind a thin pleural line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

SIDES = ("right", "left")


def side_sign(side: str) -> int:
    """+1 when the patient's `side` is on the image's right (the patient's left, in a PA view)."""
    return {"left": 1, "right": -1}[side]


@dataclass(frozen=True)
class Anatomy:
    """Geometry in normalised image coordinates (u: 0 left -> 1 right, v: 0 top -> 1 bottom)."""

    cx: float  # midline
    half_width: float  # inner thoracic half-width at the diaphragm (CTR denominator / 2)
    apex: float  # top of the lung apices
    dome_right: float  # hemidiaphragm dome heights (the right one usually sits higher)
    dome_left: float
    cp_depth: float  # how far below the dome the costophrenic angles reach
    mediastinum: float  # upper mediastinal half-width
    heart_cy: float
    heart_ctr: float  # the patient's baseline cardiothoracic ratio
    rib_spacing: float
    rib_offset: float
    soft_tissue: float  # habitus: brightness of the chest wall and abdomen
    vessel_seed: int


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    dome_right = rng.uniform(0.63, 0.70)
    return Anatomy(
        cx=0.5 + rng.normal(0, 0.008),
        half_width=rng.uniform(0.35, 0.41),
        apex=rng.uniform(0.10, 0.15),
        dome_right=dome_right,
        dome_left=dome_right + rng.uniform(0.015, 0.045),
        cp_depth=rng.uniform(0.06, 0.09),
        mediastinum=rng.uniform(0.055, 0.075),
        heart_cy=dome_right - rng.uniform(0.06, 0.09),
        heart_ctr=rng.uniform(0.40, 0.47),
        rib_spacing=rng.uniform(0.052, 0.060),
        rib_offset=rng.uniform(0.0, 0.02),
        soft_tissue=rng.uniform(0.42, 0.55),
        vessel_seed=int(rng.integers(0, 2**31 - 1)),
    )


def shaped_by(an: Anatomy, sex: str, age: int) -> Anatomy:
    """The anatomy of this sex and age (corpus.phantom.demographic_anatomy): a female thorax about 6%
    narrower with a slimmer mediastinum and more soft tissue; past 50, lower diaphragm domes (the
    hyperinflation of the aging lung) and thinner soft tissue. None of it changes a finding's label:
    the heart is drawn at its cardiothoracic ratio of the thorax it sits in."""
    from dataclasses import replace

    over = max(0, age - 50)
    female = sex == "F"
    return replace(
        an,
        half_width=an.half_width * (0.94 if female else 1.0),
        mediastinum=an.mediastinum * (0.95 if female else 1.0),
        dome_right=an.dome_right + 0.0015 * over,
        dome_left=an.dome_left + 0.0015 * over,
        heart_cy=an.heart_cy + 0.0015 * over,
        soft_tissue=an.soft_tissue + (0.03 if female else 0.0) - 0.001 * over,
    )


def _sig(x: np.ndarray, edge: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x / edge, -40, 40)))


class Grid:
    """Pixel-centre coordinates of a square image, shared by every drawing function."""

    def __init__(self, size: int):
        self.size = size
        self.v, self.u = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
        self.edge = 1.2 / size  # soft edges about one pixel wide


def dome(an: Anatomy, side: str) -> float:
    return an.dome_left if side == "left" else an.dome_right


def lung_wall(an: Anatomy, v: np.ndarray | float, side: str) -> np.ndarray | float:
    """Distance from the midline to the inner chest wall at height v."""
    t = np.clip((np.asarray(v) - an.apex) / (dome(an, side) + an.cp_depth - an.apex), 0, 1)
    return an.half_width * (0.45 + 0.55 * np.sqrt(t))


def diaphragm_v(an: Anatomy, du: np.ndarray, side: str) -> np.ndarray:
    """Height of the hemidiaphragm at lateral distance du: a dome that dips into the CP angle."""
    peak = 0.45 * an.half_width
    t = (du - peak) / (an.half_width - peak)
    lateral = an.cp_depth * np.clip(t, 0, None) ** 2
    medial = 0.25 * an.cp_depth * np.clip(-(du - peak) / peak, 0, None) ** 2
    return dome(an, side) + lateral + medial


def lung_mask(g: Grid, an: Anatomy, side: str) -> np.ndarray:
    du = (g.u - an.cx) * side_sign(side)
    wall = lung_wall(an, g.v, side)
    mid = 0.5 * (an.mediastinum + an.half_width)
    top = an.apex + 0.55 * ((du - mid) / an.half_width) ** 2
    bottom = diaphragm_v(an, du, side)
    e = g.edge
    return _sig(g.v - top, e) * _sig(bottom - g.v, e) * _sig(wall - du, e) * _sig(du - an.mediastinum, e)


def heart_geometry(an: Anatomy, ctr: float) -> tuple[float, float, float, float]:
    """(centre u, centre v, half-width, half-height) of the cardiac silhouette for a given CTR."""
    hw = ctr * an.half_width
    # The heart lies about two thirds to the patient's left (the image's right).
    return an.cx + 0.3 * hw, an.heart_cy, hw, 0.78 * hw


def heart_mask(g: Grid, an: Anatomy, ctr: float) -> np.ndarray:
    hcx, hcy, hw, hh = heart_geometry(an, ctr)
    r = ((g.u - hcx) / hw) ** 2 + ((g.v - hcy) / hh) ** 2
    return _sig(1.0 - r, 4 * g.edge / hw)


def cp_angle_roi(an: Anatomy, side: str, size: int) -> tuple[slice, slice]:
    """Rows/columns of a box just above the costophrenic angle of `side` (where effusion shows first)."""
    u = an.cx + side_sign(side) * (an.half_width - 0.07)
    v = dome(an, side) + an.cp_depth - 0.05
    r = 0.035
    rows = slice(int((v - r) * size), int((v + r) * size))
    cols = slice(int((u - r) * size), int((u + r) * size))
    return rows, cols


def _splat_lines(size: int, segments: list[tuple[float, float, float, float, float]]) -> np.ndarray:
    """Rasterise (u0, v0, u1, v1, weight) segments by dense point sampling, then blur."""
    canvas = np.zeros((size, size), np.float32)
    for u0, v0, u1, v1, w in segments:
        n = max(2, int(np.hypot(u1 - u0, v1 - v0) * size * 2))
        t = np.linspace(0, 1, n)
        x = np.clip(((u0 + (u1 - u0) * t) * size).astype(int), 0, size - 1)
        y = np.clip(((v0 + (v1 - v0) * t) * size).astype(int), 0, size - 1)
        np.add.at(canvas, (y, x), w)
    return canvas


def vessel_map(g: Grid, an: Anatomy) -> np.ndarray:
    """Branching pulmonary vessels radiating from each hilum, fading towards the periphery."""
    rng = np.random.default_rng(an.vessel_seed)
    segments = []
    for side in SIDES:
        s = side_sign(side)
        hu, hv = an.cx + s * (an.mediastinum + 0.05), an.heart_cy - 0.16
        for _ in range(14):
            ang = rng.uniform(-1.2, 1.3)  # radians from horizontal, fanning up and down
            length = rng.uniform(0.12, 0.28)
            u0, v0, w = hu, hv, 1.0
            for _ in range(3):  # each vessel branches twice, thinning as it goes
                u1 = u0 + s * np.cos(ang) * length / 3
                v1 = v0 + np.sin(ang) * length / 3 + rng.normal(0, 0.01)
                segments.append((u0, v0, u1, v1, w))
                if rng.random() < 0.6:
                    a2 = ang + rng.choice([-1, 1]) * rng.uniform(0.3, 0.7)
                    segments.append(
                        (u1, v1, u1 + s * np.cos(a2) * length / 4, v1 + np.sin(a2) * length / 4, 0.5 * w)
                    )
                u0, v0, w = u1, v1, 0.7 * w
    canvas = _splat_lines(g.size, segments)
    canvas = ndimage.gaussian_filter(canvas, sigma=max(0.6, g.size / 300))
    return np.clip(canvas / (np.percentile(canvas[canvas > 0], 95) + 1e-6), 0, 1.5)


def parenchyma(g: Grid, an: Anatomy) -> np.ndarray:
    """Low-frequency mottling of the lung fields (overlapping small vessels and interstitium)."""
    rng = np.random.default_rng(an.vessel_seed + 1)
    noise = rng.standard_normal((g.size, g.size)).astype(np.float32)
    tex = ndimage.gaussian_filter(noise, g.size / 128) + 0.5 * ndimage.gaussian_filter(noise, g.size / 40)
    return tex / (np.abs(tex).max() + 1e-6)


def rib_map(g: Grid, an: Anatomy) -> np.ndarray:
    """Posterior ribs: arcs that run down and out from the spine, with bright cortical edges."""
    out = np.zeros_like(g.u)
    thick = 0.011
    for side in SIDES:
        s = side_sign(side)
        du = (g.u - an.cx) * s
        inside = _sig(du - 0.03, g.edge) * _sig(an.half_width + 0.035 - du, g.edge)
        for i in range(10):
            v0 = an.apex + an.rib_offset + i * an.rib_spacing
            centre = v0 + 0.9 * du**2 + 0.05 * du
            d = np.abs(g.v - centre)
            band = np.exp(-((d / thick) ** 2))
            cortex = np.exp(-(((d - thick) / (0.35 * thick)) ** 2))
            out += inside * (0.55 * band + 0.45 * cortex)
    return out


def base_image(g: Grid, an: Anatomy) -> dict[str, np.ndarray]:
    """The patient's anatomy without heart or findings; the heart is drawn per study (its size may change)."""
    u, v, e = g.u, g.v, g.edge
    body = _sig(an.half_width + 0.08 - np.abs(u - an.cx), 3 * e) * _sig(v - 0.04, 3 * e)
    shoulders = _sig(0.2 - v, 6 * e) * _sig(an.half_width + 0.14 - np.abs(u - an.cx), 4 * e)
    img = 0.04 + an.soft_tissue * np.maximum(body, shoulders)
    lungs = lung_mask(g, an, "right") + lung_mask(g, an, "left")
    img = img - 0.36 * lungs * an.soft_tissue / 0.5
    img += 0.15 * vessel_map(g, an) * lungs
    img += 0.05 * parenchyma(g, an) * lungs
    img += 0.07 * rib_map(g, an) * body
    mediastinum = _sig(an.mediastinum - np.abs(u - an.cx), e) * _sig(an.heart_cy - v, e) * _sig(v - 0.05, e)
    knob = np.exp(-(((u - (an.cx + an.mediastinum + 0.01)) / 0.03) ** 2 + ((v - 0.30) / 0.035) ** 2))
    medi = np.clip(mediastinum + 0.8 * knob, 0, 1)
    img = img * (1 - medi) + 0.68 * medi
    spine = _sig(0.042 - np.abs(u - an.cx), e) * body
    img += 0.04 * spine * (0.85 + 0.15 * np.cos(v * 2 * np.pi / 0.045))
    trachea = _sig(0.016 - np.abs(u - an.cx), e) * _sig(0.31 - v, e) * _sig(v - 0.05, e)
    img -= 0.16 * trachea
    for s in (-1, 1):  # clavicles, from the sternal notch out to the shoulders
        du = (u - an.cx) * s
        centre = 0.185 - 0.22 * (du - 0.04)
        clav = np.exp(-(((v - centre) / 0.012) ** 2)) * _sig(du - 0.04, e) * _sig(0.34 - du, e)
        img += 0.16 * clav
    return {"image": img.astype(np.float32), "lungs": lungs.astype(np.float32)}


# --- findings ------------------------------------------------------------------------------------------


def _opacify(img: np.ndarray, density: np.ndarray, target: float = 0.66) -> np.ndarray:
    """Blend towards soft-tissue density where `density` (0..1) says so: fluid and consolidated lung."""
    return img + np.clip(density, 0, 1) * (target - img)


def _blob(g: Grid, rng: np.random.Generator, cu: float, cv: float, r: float) -> np.ndarray:
    """An irregular patch: a Gaussian whose edge is roughened by smoothed noise."""
    d = np.sqrt(((g.u - cu) / r) ** 2 + ((g.v - cv) / (0.8 * r)) ** 2)
    noise = ndimage.gaussian_filter(rng.standard_normal(g.u.shape).astype(np.float32), g.size / 60)
    noise /= np.abs(noise).max() + 1e-6
    return np.clip(1.4 * np.exp(-(d**2) * 1.6) + 0.35 * noise - 0.2, 0, 1)


def draw_effusion(g: Grid, an: Anatomy, img: np.ndarray, side: str, severity: int) -> np.ndarray:
    """Fluid layering in the pleural space at the lung base.

    A small effusion only fills the lateral costophrenic recess (blunting); larger ones rise over the
    hemidiaphragm. The surface is a meniscus, higher against the chest wall, with a hazy upper edge.
    """
    s = side_sign(side)
    du = (g.u - an.cx) * s
    height = (0.055, 0.12, 0.22)[severity - 1]
    cp_v = dome(an, side) + an.cp_depth
    lateral = np.clip(du / an.half_width, 0, 1)
    surface = cp_v - height - 0.07 * lateral**3
    fluid = _sig(g.v - surface, 5 * g.edge) * lung_mask(g, an, side)
    return _opacify(img, 0.92 * fluid, 0.68)


# Each band's half-thickness and lateral extent (fractions of the image and of the hemithorax). Real plate
# atelectasis is a few millimetres thick, a hundredth of the film: at the 32 px the study's generator draws,
# that is a third of a pixel, and a mild case changed 6 pixels (bench/phantom_signal.py). The phantom draws
# it thick enough to be seen at 32 px (30 pixels when mild, like a mild effusion's 41); docs/phantom.md.
BAND_WIDTH = 0.035
BAND_SPAN = (0.1, 0.8)


def draw_atelectasis(g: Grid, an: Anatomy, img: np.ndarray, side: str, severity: int, rng) -> np.ndarray:
    """Plate-like bands above the hemidiaphragm (one more per severity); severe collapse adds a basal wedge."""
    s = side_sign(side)
    du = (g.u - an.cx) * s
    base = dome(an, side)
    dens = np.zeros_like(img)
    for k in range(severity + 1):
        centre = base - 0.07 - 0.04 * k + 0.15 * (du - 0.2 * an.half_width) * rng.uniform(0.3, 0.8)
        band = np.exp(-(((g.v - centre) / BAND_WIDTH) ** 2))
        span = _sig(du - BAND_SPAN[0] * an.half_width, g.edge) * _sig(
            BAND_SPAN[1] * an.half_width - du, 3 * g.edge
        )
        dens = np.maximum(dens, band * span)
    if severity == 3:
        wedge = _sig(g.v - (base - 0.12 + 0.2 * (du / an.half_width - 0.3) ** 2), 3 * g.edge)
        dens = np.maximum(
            dens, 0.8 * wedge * _sig(du - an.mediastinum, g.edge) * _sig(base + 0.02 - g.v, g.edge)
        )
    return _opacify(img, 0.85 * dens * lung_mask(g, an, side))


ZONE_V = {"upper": 0.25, "middle": 0.42, "lower": 0.55}
# The patch's radius by severity: at 0.06 a mild patch was two pixels across at 32 px (docs/phantom.md).
PATCH_RADIUS = (0.12, 0.14, 0.16)


def draw_consolidation(g: Grid, an: Anatomy, img, side: str, zone: str, severity: int, rng) -> np.ndarray:
    s = side_sign(side)
    cu = an.cx + s * an.half_width * rng.uniform(0.45, 0.7)
    cv = an.apex + (dome(an, side) - an.apex) * ZONE_V[zone] / 0.62
    patch = _blob(g, rng, cu, cv, PATCH_RADIUS[severity - 1]) * lung_mask(g, an, side)
    # Air bronchograms: lucent branching lines kept open inside the dense patch.
    segs = []
    for _ in range(4):
        a = rng.uniform(-0.8, 0.8)
        segs.append((cu - s * 0.05, cv, cu + s * 0.06 * np.cos(a), cv + 0.06 * np.sin(a), 1.0))
    bronchi = ndimage.gaussian_filter(_splat_lines(g.size, segs), 0.6) * patch
    out = _opacify(img, 0.9 * patch, 0.72)
    return out - 0.12 * np.clip(bronchi, 0, 1)


def draw_edema(g: Grid, an: Anatomy, img, severity: int, rng) -> np.ndarray:
    """Perihilar 'bat-wing' haze and, from moderate on, Kerley B lines at the lateral bases."""
    lungs = lung_mask(g, an, "right") + lung_mask(g, an, "left")
    haze = np.zeros_like(img)
    for side in SIDES:
        s = side_sign(side)
        hu, hv = an.cx + s * (an.mediastinum + 0.06), an.heart_cy - 0.12
        haze += np.exp(
            -(((g.u - hu) / (0.09 + 0.03 * severity)) ** 2 + ((g.v - hv) / (0.12 + 0.03 * severity)) ** 2)
        )
    out = _opacify(img, (0.22 + 0.2 * severity) * haze * lungs)
    if severity >= 2:
        segs = []
        for side in SIDES:
            s = side_sign(side)
            for _ in range(5 * severity):
                v0 = dome(an, side) - rng.uniform(0.02, 0.12)
                u0 = an.cx + s * (an.half_width - 0.005)
                segs.append((u0, v0, u0 - s * rng.uniform(0.02, 0.035), v0, 1.0))
        lines = ndimage.gaussian_filter(_splat_lines(g.size, segs), 0.5)
        out = out + 0.35 * np.clip(lines, 0, 1) * lungs
    return out


def draw_pneumothorax(g: Grid, an: Anatomy, img, side: str, severity: int) -> np.ndarray:
    """A lucent apicolateral rim without lung markings, behind a thin visceral pleural line."""
    s = side_sign(side)
    du = (g.u - an.cx) * s
    wall = lung_wall(an, g.v, side)
    gap = (0.025, 0.05, 0.09)[severity - 1] * _sig(dome(an, side) - 0.1 - g.v, 8 * g.edge)
    lung = lung_mask(g, an, side)
    rim = lung * _sig(du - (wall - gap), g.edge)
    line = lung * np.exp(-(((du - (wall - gap)) / (1.3 * g.edge)) ** 2)) * (gap > 0.01)
    vessels = 0.10 * vessel_map(g, an)
    out = img - rim * (vessels + 0.05 + 0.05 * img)  # no lung markings beyond the pleural line
    return out + 0.18 * line


def draw_nodule(g: Grid, an: Anatomy, img, side: str, zone: str, rng) -> np.ndarray:
    s = side_sign(side)
    cu = an.cx + s * an.half_width * rng.uniform(0.4, 0.75)
    cv = an.apex + (dome(an, side) - an.apex) * ZONE_V[zone] / 0.62
    r = rng.uniform(0.012, 0.022)
    d = np.sqrt((g.u - cu) ** 2 + (g.v - cv) ** 2)
    return _opacify(img, 0.85 * _sig(r - d, g.edge))


def draw_devices(g: Grid, an: Anatomy, img, devices: list[str]) -> np.ndarray:
    """Radio-opaque tubes and lines as thin bright curves."""
    segs = []
    if "endotracheal tube" in devices:
        segs.append((an.cx, 0.0, an.cx, 0.26, 1.0))
    if "nasogastric tube" in devices:
        d = dome(an, "left")
        segs += [(an.cx - 0.01, 0.0, an.cx - 0.005, d, 1.0), (an.cx - 0.005, d, an.cx + 0.12, 0.86, 1.0)]
    if "central venous catheter" in devices:
        segs += [(an.cx - 0.22, 0.16, an.cx - 0.06, 0.22, 1.0), (an.cx - 0.06, 0.22, an.cx - 0.03, 0.36, 1.0)]
    if not segs:
        return img
    lines = ndimage.gaussian_filter(_splat_lines(g.size, segs), 0.5)
    return img + 0.5 * np.clip(lines * 1.5, 0, 1)


def render_study(
    g: Grid, an: Anatomy, base: dict[str, np.ndarray], findings: dict[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Draw one study: heart at this study's size, findings, then exposure and quantum noise.

    Returns the image in [0, 1] and measurements of what was drawn (e.g. the true CTR).
    """
    img = base["image"].copy()
    ctr = findings.get("cardiomegaly", {}).get("ctr", an.heart_ctr)
    heart = heart_mask(g, an, ctr)
    img = img * (1 - heart) + 0.70 * heart
    if "edema" in findings:
        img = draw_edema(g, an, img, findings["edema"]["severity"], rng)
    for name in ("consolidation", "atelectasis", "lung lesion"):
        if name in findings:
            f = findings[name]
            if name == "consolidation":
                img = draw_consolidation(g, an, img, f["side"], f["zone"], f["severity"], rng)
            elif name == "atelectasis":
                img = draw_atelectasis(g, an, img, f["side"], f["severity"], rng)
            else:
                img = draw_nodule(g, an, img, f["side"], f["zone"], rng)
    if "pleural effusion" in findings:
        f = findings["pleural effusion"]
        for side in SIDES if f["side"] == "bilateral" else (f["side"],):
            img = draw_effusion(g, an, img, side, f["severity"])
    if "pneumothorax" in findings:
        f = findings["pneumothorax"]
        img = draw_pneumothorax(g, an, img, f["side"], f["severity"])
    if "support devices" in findings:
        img = draw_devices(g, an, img, findings["support devices"]["devices"])
    # Exposure differs from study to study; quantum noise is stronger where the film is darker.
    gain, gamma = rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)
    img = np.clip(img * gain, 0, 1) ** gamma
    img = ndimage.gaussian_filter(img, sigma=max(0.4, g.size / 512))
    img += rng.normal(0, rng.uniform(0.008, 0.02), img.shape).astype(np.float32) * (1.2 - img)
    return np.clip(img, 0, 1), {"ctr": float(ctr)}
