"""Find the radiograph in a phone photo of a screen or film, and undo the camera's perspective.

A photo of a radiograph shows it as a bright quadrilateral (the displayed image, or the lit film) on a
darker surround (the screen's black margin and bezel, the room), tilted and foreshortened by the camera.
:func:`find_radiograph` finds that quadrilateral: the largest bright region of the photo (Otsu's threshold
on a smoothed grey copy about 256 px across, so moiré and sensor noise do not matter), its outline's four
sides fitted as straight lines, the corners where they meet. :func:`rectify` maps the quadrilateral onto an
upright rectangle by a homography at the photo's own resolution, so that nothing is read at less detail
than the camera caught.

Limits, stated rather than hidden: the radiograph must be brighter than its surround along most of its
border (a film on a light box, or an image that fills the screen, as the reference study's photos did); a
radiograph whose borders are as dark as the screen around it is found as its bright content only, and a
photo in which no plausible quadrilateral is found (too small in the frame, cut off, not four straight
sides) is reported as not found, with the reason, and read as it is.

Example:
    >>> import numpy as np
    >>> photo = np.full((300, 400), 0.05, np.float32)
    >>> photo[50:250, 100:300] = 0.8                       # a bright square on a dark screen
    >>> quad = find_radiograph(photo)
    >>> quad.found, np.allclose(quad.corners, [(100, 50), (299, 50), (299, 249), (100, 249)], atol=1.5)
    (True, True)
    >>> upright = rectify(photo, quad)                    # about 200 x 200: the photo's own pixels
    >>> abs(upright.shape[0] - 200) <= 2, round(float(upright[5:-5, 5:-5].min()), 3)
    (True, 0.8)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["Quadrilateral", "find_radiograph", "rectify", "homography"]

WORK_SIZE = 256              # the grey copy the outline is found on (long side, px)
MIN_COVERAGE = 0.08          # the radiograph fills at least this share of the photo
MIN_EDGE_STEP = 0.02         # median step down across each side, outward (grey levels in [0, 1])
EDGE_GAP = 2.0               # px (at WORK_SIZE) either side of a line where its step is measured
MIN_FILL = 0.5               # share of the quadrilateral the bright region covers
MAX_CORNER_ANGLE = 35.0      # degrees a corner's angle may differ from 90


@dataclass(frozen=True)
class Quadrilateral:
    """Where the radiograph is in a photo: corners (x, y) in the photo's pixels, clockwise from top left.

    ``found`` is False when no plausible quadrilateral was found; ``reason`` then says why (in words a user
    can act on) and ``corners`` is the whole frame. ``coverage`` is the share of the photo it fills,
    ``residual`` how far the outline strays from four straight sides (share of the side), ``fill`` the share
    of the quadrilateral that is bright, ``max_corner_angle`` the worst corner's departure from 90 degrees.
    """

    corners: tuple[tuple[float, float], ...]
    found: bool
    coverage: float
    residual: float
    fill: float
    max_corner_angle: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels of the upright rectangle :func:`rectify` makes: the mean of opposite
        sides (corners are pixel centres, so a side of length L spans L + 1 pixels)."""
        c = np.asarray(self.corners, float)
        side = lambda a, b: float(np.hypot(*(c[a] - c[b])))  # noqa: E731
        w = 0.5 * (side(0, 1) + side(3, 2))
        h = 0.5 * (side(0, 3) + side(1, 2))
        return max(1, round(h) + 1), max(1, round(w) + 1)


def _grey(photo: np.ndarray) -> np.ndarray:
    a = np.asarray(photo)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f"photo must be a grey (H, W) or colour (H, W, 3) image of at least 16 px; got {a.shape}.")
    a = a.astype(np.float32)
    if np.issubdtype(np.asarray(photo).dtype, np.integer):
        a /= float(np.iinfo(np.asarray(photo).dtype).max)
    return a


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256, range=(float(values.min()), float(values.max()) + 1e-6))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    m = np.cumsum(p * centres)
    between = (m[-1] * w0 - m) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centres[int(np.argmax(between))])


def _refine_side(small: np.ndarray, p0: np.ndarray, direction: np.ndarray, outward: np.ndarray, length: float
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """The radiograph's border near a rough side (a point, its direction, the outward normal).

    Candidates are straight lines within 12 degrees of the rough side, from a little inside it (a tilted
    side's middle lies inside the box) to well outside (searched at 2 px and 1 degree, then refined twice); each is scored by the median step down across it (brighter inside than outside) along its
    whole length, and the best is the border: the rough side (the bright region's bounding box) may follow
    the body rather than the film, but only the film's border steps down all along. (Taking the innermost
    strong candidate instead, to avoid a screen panel's weaker edge further out, found the body's own
    straight soft-tissue edge: corner error 3 % of the side at every level.) Returns (point, direction, step)."""
    t = np.linspace(-0.42, 0.42, 32) * length
    p1, d1, _ = _best_line(small, p0, direction, outward, t, np.arange(-0.12 * length, 0.2 * length, 2.0),
                           np.arange(-12.0, 12.01, 1.0))
    p2, d2, _ = _best_line(small, p1, d1, outward, t, np.arange(-2.0, 2.01, 0.5), np.arange(-2.0, 2.01, 0.5))
    return _best_line(small, p2, d2, outward, np.linspace(-0.42, 0.42, 64) * length, np.arange(-0.5, 0.51, 0.25),
                      np.arange(-0.5, 0.51, 0.25))


def _best_line(small: np.ndarray, p0: np.ndarray, direction: np.ndarray, outward: np.ndarray, t: np.ndarray,
               offsets: np.ndarray, degrees: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Of the lines through ``p0`` moved by ``offsets`` along the outward normal and turned by ``degrees``,
    the one with the largest median step down across it (inside minus outside, ``EDGE_GAP`` px away)."""
    angles = np.radians(degrees)
    cos, sin = np.cos(angles), np.sin(angles)
    dirs = np.stack([direction[0] * cos - direction[1] * sin, direction[0] * sin + direction[1] * cos], axis=1)
    normals = np.stack([-dirs[:, 1], dirs[:, 0]], axis=1)
    normals *= np.sign(normals @ outward)[:, None]
    base = (p0[None, None, None, :] + offsets[None, :, None, None] * normals[:, None, None, :]
            + t[None, None, :, None] * dirs[:, None, None, :])                            # (A, O, T, 2)
    gap = normals[:, None, None, :] * EDGE_GAP
    vi = ndimage.map_coordinates(small, [(base - gap)[..., 1].ravel(), (base - gap)[..., 0].ravel()], order=1,
                                 mode="nearest")
    vo = ndimage.map_coordinates(small, [(base + gap)[..., 1].ravel(), (base + gap)[..., 0].ravel()], order=1,
                                 mode="nearest")
    step = np.median((vi - vo).reshape(len(angles), len(offsets), len(t)), axis=2)     # (A, O)
    a, k = np.unravel_index(int(np.argmax(step)), step.shape)
    return p0 + offsets[k] * normals[a], dirs[a], float(step[a, k])


def _fit_line(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Total least squares: (a point on the line, its unit direction, mean absolute distance)."""
    mean = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    direction = vt[0]
    normal = np.array([-direction[1], direction[0]])
    return mean, direction, float(np.abs((points - mean) @ normal).mean())


def _intersect(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray | None:
    m = np.array([d1, -d2]).T
    if abs(np.linalg.det(m)) < 1e-9:
        return None
    t = np.linalg.solve(m, p2 - p1)
    return p1 + t[0] * d1


def _not_found(shape: tuple[int, int], reason: str, **measures: float) -> Quadrilateral:
    h, w = shape
    frame = ((0.0, 0.0), (w - 1.0, 0.0), (w - 1.0, h - 1.0), (0.0, h - 1.0))
    values = dict(coverage=0.0, residual=float("nan"), fill=0.0, max_corner_angle=float("nan")) | measures
    return Quadrilateral(corners=frame, found=False, reason=reason, **values)


def find_radiograph(photo: np.ndarray) -> Quadrilateral:
    """The radiograph's quadrilateral in ``photo`` (grey H×W or colour H×W×3; integers or floats in [0, 1]).

    Raises:
        ValueError: ``photo`` is not an image (wrong shape, smaller than 16 px).
    """
    g = _grey(photo)
    h, w = g.shape
    f = min(1.0, WORK_SIZE / max(h, w))
    small = ndimage.zoom(g, f, order=1) if f < 1 else g
    small = ndimage.gaussian_filter(small, 1.5)
    if float(np.ptp(small)) < 0.02:
        return _not_found((h, w), "the photo shows no radiograph: it is almost uniform")
    mask = small > _otsu(small)
    labels, n = ndimage.label(mask)
    if n == 0:
        return _not_found((h, w), "no bright radiograph was found in the photo")
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    region = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    sh, sw = region.shape
    coverage = float(region.sum()) / float(sh * sw)
    if coverage < MIN_COVERAGE:
        return _not_found((h, w), "the radiograph is too small in the frame: move the phone closer so that it "
                                  "fills most of the picture", coverage=coverage)
    # rough sides: the bright region's bounding box (the body lies inside the film, so the film's border
    # lies on or outside it); each side is then moved to the straight edge the photo steps down across
    ys, xs = np.nonzero(region)
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    centre = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1)])
    rough = [(np.array([centre[0], y0]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), x1 - x0),   # top
             (np.array([x1, centre[1]]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), y1 - y0),    # right
             (np.array([centre[0], y1]), np.array([-1.0, 0.0]), np.array([0.0, 1.0]), x1 - x0),   # bottom
             (np.array([x0, centre[1]]), np.array([0.0, -1.0]), np.array([-1.0, 0.0]), y1 - y0)]  # left
    lines, steps = [], []
    for p0, direction, outward, length in rough:
        if length < 8:
            return _not_found((h, w), "the radiograph's outline is not a quadrilateral", coverage=coverage)
        p1, d1, step = _refine_side(small, p0, direction, outward, length)
        lines.append((p1, d1))
        steps.append(step)
    corners = []
    for k in range(4):
        c = _intersect(*lines[k - 1], *lines[k])
        if c is None:
            return _not_found((h, w), "the radiograph's outline is not a quadrilateral", coverage=coverage)
        corners.append(c)
    quad = np.array(corners)
    angles = []
    for k in range(4):
        v1, v2 = quad[k - 1] - quad[k], quad[(k + 1) % 4] - quad[k]
        cos = float(v1 @ v2 / max(np.linalg.norm(v1) * np.linalg.norm(v2), 1e-9))
        angles.append(abs(np.degrees(np.arccos(np.clip(cos, -1, 1))) - 90.0))
    area = 0.5 * abs(float(np.dot(quad[:, 0], np.roll(quad[:, 1], 1)) - np.dot(quad[:, 1], np.roll(quad[:, 0], 1))))
    fill = float(region.sum()) / max(area, 1.0)
    measures = dict(coverage=area / float(sh * sw), residual=float(min(steps)), fill=min(fill, 1.0),
                    max_corner_angle=float(max(angles)))
    inside = (quad[:, 0] > -0.02 * sw) & (quad[:, 0] < 1.02 * sw) & (quad[:, 1] > -0.02 * sh) & (quad[:, 1] < 1.02 * sh)
    reason = ""
    if not inside.all():
        reason = "a corner of the radiograph is outside the picture: step back so that all of it is in the frame"
    elif measures["max_corner_angle"] > MAX_CORNER_ANGLE:
        reason = ("the radiograph is photographed at too steep an angle: hold the phone parallel to the screen")
    elif min(steps) < MIN_EDGE_STEP or fill < MIN_FILL:
        reason = "the radiograph's outline is not a clear quadrilateral (glare, a cut-off edge, or clutter around it)"
    full = (quad + 0.5) / f - 0.5   # back to the photo's pixel grid (pixel centres)
    if reason:
        return _not_found((h, w), reason, **measures)
    return Quadrilateral(corners=tuple((float(x), float(y)) for x, y in full), found=True, **measures)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3×3 projective map taking the four ``src`` points (x, y) onto the four ``dst`` points."""
    rows = []
    for (x, y), (u, v) in zip(np.asarray(src, float), np.asarray(dst, float)):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    m = vt[-1].reshape(3, 3)
    return m / m[2, 2]


def rectify(photo: np.ndarray, quad: Quadrilateral, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """The radiograph cut out of ``photo`` and made upright: float32 grey, ``size`` (H, W) or
    :attr:`Quadrilateral.size` (the photo's own resolution), bilinear. A quadrilateral that was not found
    gives the photo unchanged (grey)."""
    g = _grey(photo)
    if not quad.found:
        return g
    oh, ow = size or quad.size
    target = np.array([[0, 0], [ow - 1, 0], [ow - 1, oh - 1], [0, oh - 1]], float)
    m = homography(target, np.asarray(quad.corners, float))   # output pixel -> photo pixel
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    q = m @ np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    qx, qy = (q[0] / q[2]).reshape(oh, ow), (q[1] / q[2]).reshape(oh, ow)
    return ndimage.map_coordinates(g, [qy, qx], order=1, mode="nearest").astype(np.float32)
