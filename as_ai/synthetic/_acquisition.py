"""Image formation: exposure, scatter, quantum noise, detector blur, processing curve, collimation,
side marker (private).

Centre ``A`` is the training hospital; ``B``-``D`` are external centres that differ in field of
view (pixel spacing), dose (noise), detector sharpness, processing (contrast curve, edge
enhancement), collimation habits, side markers, bit depth and DICOM photometric interpretation.

Everything that depends on the whole image (scatter, the display window) is computed from the
*lesion-free* attenuation map, and every other step is local, so lesions change pixels only near
where they are drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._canvas import F


@dataclass(frozen=True)
class Centre:
    """Acquisition habits of one hospital."""

    name: str
    fov_mm: float          # detector field of view (square)
    dose: float            # photons per pixel behind ~soft tissue at 512 px (sets noise)
    blur_mm: float         # detector / focal-spot blur (Gaussian sigma, mm)
    gamma: float           # processing curve exponent
    slope: float           # processing curve contrast (logistic slope)
    unsharp: float         # edge-enhancement gain (0 = none)
    unsharp_mm: float      # edge-enhancement kernel sigma (mm)
    scatter: float         # scatter-to-primary ratio
    collim: tuple[float, float]  # collimation margin range (fraction of the field)
    marker: str            # side marker letter
    marker_pos: str        # "tl", "tr", "bl", "br", "ml"
    bits: int              # stored bit depth
    photometric: str       # DICOM photometric interpretation
    modality: str          # DICOM modality
    manufacturer: str
    window: tuple[float, float]  # display window percentiles
    eq: float = 0.65       # large-scale range compression (0 = none)
    eq_mm: float = 22.0    # its kernel sigma (mm)


CENTRES: dict[str, Centre] = {
    "A": Centre("A", 345.0, 2600.0, 0.45, 1.00, 5.0, 0.0, 3.0, 0.35, (0.01, 0.05), "R", "tl", 12,
                "MONOCHROME2", "DX", "Phantom Imaging A", (0.8, 99.8)),
    "B": Centre("B", 385.0, 1100.0, 0.60, 0.85, 4.0, 0.0, 3.0, 0.50, (0.00, 0.03), "L", "tr", 12,
                "MONOCHROME1", "CR", "Phantom Imaging B", (0.3, 99.9)),
    "C": Centre("C", 325.0, 3600.0, 0.35, 1.15, 6.5, 0.7, 2.4, 0.30, (0.03, 0.08), "R", "bl", 12,
                "MONOCHROME2", "DX", "Phantom Imaging C", (1.5, 99.6)),
    "D": Centre("D", 365.0, 750.0, 0.85, 1.05, 4.6, 0.25, 4.0, 0.45, (0.02, 0.06), "R", "ml", 10,
                "MONOCHROME1", "CR", "Phantom Imaging D", (0.5, 99.8)),
}

# 5x7 bitmap glyphs for the lead side markers (fixed here so the look never depends on fonts)
_GLYPHS = {
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
}


def blur_margin_px(centre: Centre, ps: float) -> int:
    """How far (pixels) a local change can spread through blur and edge enhancement."""
    s = centre.blur_mm / ps
    u = centre.unsharp_mm / ps if centre.unsharp else 0.0
    return int(np.ceil(4.0 * s + 4.0 * u)) + 2


def _gauss(x, sigma):
    if sigma < 0.15:
        return x
    return ndimage.gaussian_filter(x, sigma, truncate=4.0, mode="nearest")


def _coarse_blur(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a large sigma, done on an 8× coarser grid and upsampled bilinearly."""
    f = 8
    n0, n1 = x.shape
    small = x[f // 2::f, f // 2::f]
    sm = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    return (_interp_matrix(n0, sm.shape[0], f) @ sm @ _interp_matrix(n1, sm.shape[1], f).T).astype(F)


def _interp_matrix(n: int, m: int, f: int) -> np.ndarray:
    """Linear-interpolation matrix from m coarse samples (at f//2 + f*k) to n fine pixels."""
    pos = (np.arange(n) - f // 2) / f
    pos = np.clip(pos, 0, m - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, m - 1)
    w = (pos - i0).astype(F)
    M = np.zeros((n, m), F)
    M[np.arange(n), i0] += 1 - w
    M[np.arange(n), i1] += w
    return M


def acquire(A0: np.ndarray, dA: list, centre: Centre, ps: float, anat_ref: float,
            rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Turn attenuation into a stored detector image (uint16, bone bright).

    ``A0`` is the lesion-free attenuation, ``dA`` a list of (box, delta) local changes.
    Returns the image and acquisition facts for the metadata.
    """
    n = A0.shape[0]
    # per-image acquisition draws (always drawn in the same order)
    dose_f = float(rng.uniform(0.7, 1.4))
    heel = float(rng.uniform(-0.08, 0.08))
    win_j = rng.uniform(-0.07, 0.07, 2)
    gam_j = float(np.exp(rng.normal(0.0, 0.12)))
    cm = rng.uniform(*centre.collim, 4)
    c_ang = float(rng.normal(0, 0.006))
    mk_j = rng.uniform(-0.01, 0.01, 2)
    z = rng.standard_normal((n, n), dtype=F)
    # exposure: intensity relative to a reference soft-tissue path
    A = A0.copy()
    for (r0, r1, c0, c1), d in dA:
        A[r0:r1, c0:c1] += d
    rows = (np.arange(n, dtype=F) / n - 0.5)[:, None]
    heel_f = np.exp(heel * 2 * rows).astype(F)
    prim0 = np.exp(np.minimum(anat_ref - A0, 4.0)) * heel_f
    prim = np.exp(np.minimum(anat_ref - A, 4.0)) * heel_f
    scat = centre.scatter * _coarse_blur(prim0, 45.0 / ps)
    dose = centre.dose * dose_f * (ps / (345.0 / 512)) ** 2
    tot = prim + scat
    noisy = tot + np.sqrt(tot / dose) * z
    noisy = _gauss(noisy, centre.blur_mm / ps)
    L = -np.log(np.maximum(noisy, 1e-3))
    # multi-scale processing: compress the large-scale (soft-tissue) range, computed from the
    # lesion-free image so that lesions cannot change it
    L0f = -np.log(np.maximum(prim0 + scat, 1e-3))
    low = _coarse_blur(L0f, centre.eq_mm / ps)
    L = L - centre.eq * low
    L0 = (L0f - centre.eq * low)[::4, ::4]
    # display window from the lesion-free image (so lesions cannot move it)
    p_lo, p_soft, hi = np.percentile(L0, (centre.window[0], 35.0, centre.window[1]))
    hi = hi + 0.08 * (hi - p_soft)
    lo = max(p_lo, p_soft - 0.5 * (hi - p_soft))
    span = hi - lo
    lo += win_j[0] * span; hi += win_j[1] * span
    v = (L - lo) / (hi - lo)
    if centre.unsharp:
        v = v + centre.unsharp * (v - _gauss(v, centre.unsharp_mm / ps))
    v = np.clip(v, 0.0, 1.0)
    k = centre.slope
    sig = lambda t: 1.0 / (1.0 + np.exp(-k * (t - 0.5)))  # noqa: E731
    y = (sig(v) - sig(0.0)) / (sig(1.0) - sig(0.0))
    y = np.clip(y, 0, 1) ** (centre.gamma * gam_j)
    # collimation: unexposed borders read bright, with a soft penumbra
    ii = (np.arange(n, dtype=F) + 0.5) / n
    X, Y = np.meshgrid(ii, ii)
    Xr = X + c_ang * (Y - 0.5); Yr = Y - c_ang * (X - 0.5)
    pen = 1.2 / n
    inside = (_ramp(Xr - cm[0], pen) * _ramp(1 - cm[1] - Xr, pen) * _ramp(Yr - cm[2], pen)
              * _ramp(1 - cm[3] - Yr, pen))
    y = y * inside + (0.86 + 0.02 * z * 0.5) * (1 - inside)
    # lead side marker
    _marker(y, centre, cm, mk_j)
    y = np.clip(y, 0, 1)
    maxv = 2 ** centre.bits - 1
    img = np.round(y * maxv).astype(np.uint16)
    facts = dict(collimation=[float(x) for x in cm], dose_factor=dose_f)
    return img, facts


def _ramp(x, pen):
    return np.clip(0.5 + x / (2 * pen), 0.0, 1.0)


def _marker(y: np.ndarray, centre: Centre, cm, jit) -> None:
    n = y.shape[0]
    g = np.array([[c == "1" for c in row] for row in _GLYPHS[centre.marker]], dtype=F)
    cell = max(2, int(round(n / 110)))
    glyph = np.kron(g, np.ones((cell, cell), F))
    glyph = np.pad(glyph, cell, constant_values=0)
    glyph = ndimage.gaussian_filter(glyph, 0.5)
    h, w = glyph.shape
    pos = centre.marker_pos
    m = 0.035 + 0.0
    r = int((cm[2] + m + jit[0]) * n) if pos[0] in "t" else (
        int((1 - cm[3] - m + jit[0]) * n) - h if pos[0] == "b" else int((0.55 + jit[0]) * n))
    c = int((cm[0] + m + jit[1]) * n) if pos[1] in "l" else int((1 - cm[1] - m + jit[1]) * n) - w
    r = int(np.clip(r, 0, n - h)); c = int(np.clip(c, 0, n - w))
    y[r:r + h, c:c + w] = np.maximum(y[r:r + h, c:c + w], 0.97 * glyph)
