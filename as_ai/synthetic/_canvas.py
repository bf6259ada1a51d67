"""Pixel grid and shape primitives for the phantom renderer (private).

The renderer works in *anatomical millimetres* (x to the image right = patient left, y down, origin
between the acetabular roofs). A :class:`Canvas` maps them to detector pixels through a similarity
transform (patient size, in-plane rotation, positioning offset) and a pixel spacing. Shapes are
evaluated only inside their pixel bounding box, so each costs in proportion to its area.

Projected thickness: a body whose boundary lies ``D`` mm away (measured inwards) and whose
half-depth is ``R`` projects a chord of ``2*sqrt(D*(2R-D))`` (exact for a sphere or cylinder).
Differences of such chords give cortical shells that are bright where the beam runs tangentially,
as on a real radiograph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

F = np.float32
Box = tuple[int, int, int, int]  # (r0, r1, c0, c1) pixel slice bounds


def chord(D: np.ndarray, R: float | np.ndarray) -> np.ndarray:
    """Projected thickness of a rounded body at inner distance ``D`` (mm) with half-depth ``R``."""
    d = np.clip(D, 0.0, R)
    return 2.0 * np.sqrt(d * (2.0 * R - d))


def shell(D: np.ndarray, R: float | np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(outer chord, inner chord) of a body with a cortex of thickness ``c``."""
    outer = chord(D, R)
    inner = chord(D - c, np.maximum(np.asarray(R) - c, 0.5))
    return outer, inner


def catmull_rom_closed(points: np.ndarray, n_per: int = 12) -> np.ndarray:
    """A smooth closed curve through ``points`` (k×2), sampled ``n_per`` times per segment."""
    p = np.asarray(points, dtype=np.float64)
    k = len(p)
    t = np.linspace(0.0, 1.0, n_per, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    out = []
    for i in range(k):
        p0, p1, p2, p3 = p[(i - 1) % k], p[i], p[(i + 1) % k], p[(i + 2) % k]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    return np.concatenate(out, axis=0)


@dataclass
class Canvas:
    """Detector grid of ``size``×``size`` pixels of ``ps`` mm, with the patient's pose."""

    size: int
    ps: float            # pixel spacing (mm)
    scale: float         # anatomical mm -> detector mm (patient size, magnification)
    angle: float         # in-plane rotation (radians)
    tx: float            # positioning offset on the detector (mm)
    ty: float

    def __post_init__(self) -> None:
        c, s = np.cos(self.angle), np.sin(self.angle)
        self._rot = np.array([[c, -s], [s, c]])

    # --- coordinates ---------------------------------------------------------------------------
    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Anatomical mm (…×2, x,y) -> pixel (…×2, col,row)."""
        uv = np.asarray(uv, dtype=np.float64)
        xy = self.scale * uv @ self._rot.T + np.array([self.tx, self.ty])
        return xy / self.ps + self.size / 2.0 - 0.5

    def box_for(self, uv: np.ndarray, margin_mm: float = 0.0) -> Box | None:
        """Pixel box covering anatomical points ``uv`` plus a margin; None if off the image."""
        px = self.to_px(np.asarray(uv).reshape(-1, 2))
        m = margin_mm * self.scale / self.ps + 1.0
        c0 = int(np.floor(px[:, 0].min() - m)); c1 = int(np.ceil(px[:, 0].max() + m)) + 1
        r0 = int(np.floor(px[:, 1].min() - m)); r1 = int(np.ceil(px[:, 1].max() + m)) + 1
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, self.size), min(r1, self.size)
        if c1 <= c0 or r1 <= r0:
            return None
        return (r0, r1, c0, c1)

    def uv(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical coordinates (U, V) in mm of the pixels of ``box``."""
        r0, r1, c0, c1 = box
        cols = (np.arange(c0, c1, dtype=np.float64) + 0.5 - self.size / 2.0) * self.ps - self.tx
        rows = (np.arange(r0, r1, dtype=np.float64) + 0.5 - self.size / 2.0) * self.ps - self.ty
        X, Y = np.meshgrid(cols, rows)
        c, s = np.cos(self.angle), np.sin(self.angle)
        U = (c * X + s * Y) / self.scale
        V = (-s * X + c * Y) / self.scale
        return U.astype(F), V.astype(F)

    @property
    def mm_per_px(self) -> float:
        """Anatomical mm per pixel."""
        return self.ps / self.scale

    # --- distance fields (inner distance D in anatomical mm, negative outside) -------------------
    def capsule(self, box: Box, a, b, r: float) -> np.ndarray:
        U, V = self.uv(box)
        return capsule_D(U, V, a, b, r)

    def polygon_D(self, box: Box, outline_uv: np.ndarray) -> np.ndarray:
        """Inner distance (mm) to a closed outline, via a Euclidean distance transform on the box."""
        r0, r1, c0, c1 = box
        px = self.to_px(outline_uv)
        mask = fill_polygon(px[:, 0] - c0, px[:, 1] - r0, (r1 - r0, c1 - c0))
        inside = ndimage.distance_transform_edt(mask)
        return (inside.astype(F) - 0.5) * F(self.mm_per_px)


def fill_polygon(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Even-odd scanline fill of a closed polygon; pixel (r, c) is inside if its centre (c, r) is."""
    x0, y0 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    rows = np.arange(shape[0], dtype=np.float64)[:, None]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    cross = (rows >= lo) & (rows < hi)
    dy = np.where(y1 != y0, y1 - y0, 1.0)
    xi = x0 + (rows - y0) * (x1 - x0) / dy
    col = np.clip(np.ceil(xi), 0, shape[1]).astype(np.int64)
    r_idx, e_idx = np.nonzero(cross)
    tog = np.zeros((shape[0], shape[1] + 1), np.int32)
    np.add.at(tog, (r_idx, col[r_idx, e_idx]), 1)
    return (np.cumsum(tog, axis=1)[:, :-1] & 1).astype(bool)


def capsule_D(U: np.ndarray, V: np.ndarray, a, b, r: float) -> np.ndarray:
    """Inner distance to a capsule (segment a-b inflated by r)."""
    ax, ay = a; bx, by = b
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((U - ax) * dx + (V - ay) * dy) / L2, 0.0, 1.0)
    ex = U - (ax + t * dx); ey = V - (ay + t * dy)
    return (r - np.sqrt(ex * ex + ey * ey)).astype(F)


def ellipse_D(U: np.ndarray, V: np.ndarray, cx: float, cy: float, a: float, b: float,
              theta: float = 0.0, p: float = 2.0) -> np.ndarray:
    """Approximate inner distance to a (super)ellipse; ``p`` > 2 squares the corners."""
    c, s = np.cos(theta), np.sin(theta)
    x = (U - cx) * c + (V - cy) * s
    y = -(U - cx) * s + (V - cy) * c
    if p == 2.0:
        rho = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    else:
        rho = (np.abs(x / a) ** p + np.abs(y / b) ** p) ** (1.0 / p)
    return ((1.0 - rho) * min(a, b)).astype(F)


def bandpass_noise(rng: np.random.Generator, shape: tuple[int, int], s1: float, s2: float) -> np.ndarray:
    """Unit-variance band-pass noise (difference of Gaussians at ``s1`` < ``s2`` pixels)."""
    z = rng.standard_normal(shape, dtype=F)
    t = ndimage.gaussian_filter(z, s1, truncate=3.0) - ndimage.gaussian_filter(z, s2, truncate=3.0)
    sd = float(t.std()) or 1.0
    return (t / sd).astype(F)
