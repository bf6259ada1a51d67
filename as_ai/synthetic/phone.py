"""Smartphone photos of a radiograph shown on a monitor (the reference study's phone test set).

``photograph(image, level, seed)`` simulates, in order: the monitor (display gamma, sub-pixel
grid, bezel), the camera pose (perspective/keystone, rotation, framing), optics (defocus, motion
blur), the scene (glare, colour cast, exposure), the sensor (noise, moiré with the pixel grid) and
the phone's JPEG encoding (sometimes twice). ``level`` 1-4 sets the severity (CheXphoto-style);
the same (image, level, seed) always gives the same photo.

Example::

    >>> import numpy as np
    >>> from as_ai.synthetic.phone import photograph
    >>> photo = photograph(np.linspace(0, 1, 256 * 256).reshape(256, 256), level=2, seed=1)
    >>> photo.shape, photo.dtype
    ((256, 256, 3), dtype('uint8'))
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

LEVELS = (1, 2, 3, 4)


def to_display(image: np.ndarray, *, photometric: str = "MONOCHROME2") -> np.ndarray:
    """A radiograph as the viewer shows it: float32 in [0, 1], bone bright.

    Integer images are scaled by their bit depth (the smallest of 8, 10, 12, 14, 16 bits that holds
    the maximum); MONOCHROME1 images are inverted.
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be a 2-D grey-level array; got shape {a.shape}.")
    if np.issubdtype(a.dtype, np.integer):
        top = int(a.max()) if a.size else 0
        bits = next((b for b in (8, 10, 12, 14, 16) if top < 2 ** b), 16)
        x = a.astype(np.float32) / float(2 ** bits - 1)
    else:
        x = np.clip(a.astype(np.float32), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        x = 1.0 - x
    return x


def photograph(image: np.ndarray, level: int = 1, seed: int = 0, *, out_size: int | None = None) -> np.ndarray:
    """Simulate a smartphone photo of ``image`` displayed on a monitor; returns uint8 H×W×3.

    ``image`` is a 2-D grey radiograph, bone bright (float in [0, 1], or integers scaled by their
    bit depth, see :func:`to_display`). ``level`` 1 (careful photo) .. 4 (poor photo). The random
    draws depend on ``seed`` only and ``level`` scales them, so for one seed a higher level is a
    worse photo of the same scene. The output is square, ``out_size`` (default: the image size).

    Raises:
        ValueError: ``level`` not in 1-4, or ``image`` not 2-D.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}; got {level!r}.")
    x = to_display(image)
    h, w = x.shape
    H = W = int(out_size or max(h, w))
    rng = np.random.default_rng([int(seed), 77])
    u = rng.random(24)                       # all scene draws, level-independent
    lv = float(level)
    # monitor: display gamma and black level, the image letter-boxed on the panel, in a bezel
    gamma = 0.85 + 0.4 * u[0]
    black = 0.02 + 0.03 * u[1] + 0.025 * lv
    panel = black + (0.93 - black) * x ** gamma
    if h != w:  # letter-box to square
        s = max(h, w)
        panel = np.pad(panel, (((s - h) // 2, s - h - (s - h) // 2), ((s - w) // 2, s - w - (s - w) // 2)),
                       constant_values=black)
    pad, bez, S, src, dst = _pose(u, lv, panel.shape[0])
    scr = np.pad(np.pad(panel, pad, constant_values=black), bez, constant_values=0.03)
    photo = _warp(scr, src, dst * (H / S), (H, W), fill=0.04)
    # optics: defocus, and motion blur from level 2 on (more likely and longer with level)
    photo = ndimage.gaussian_filter(photo, 0.35 + 0.22 * lv * (0.6 + 0.4 * u[14]))
    if u[15] < 0.2 * (lv - 1):
        L = int(round(0.8 * lv * (0.5 + u[16])))
        if L >= 1:
            th = np.pi * u[17]
            kern = np.zeros((2 * L + 1, 2 * L + 1), np.float32)
            for t in np.linspace(-L, L, 4 * L + 1):
                kern[int(round(L + t * np.sin(th))), int(round(L + t * np.cos(th)))] = 1
            photo = ndimage.convolve(photo, kern / kern.sum(), mode="nearest")
    # glare: a broad white highlight (sigma grows with level)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    gy, gx = (0.1 + 0.8 * u[18]) * H, (0.1 + 0.8 * u[19]) * W
    sg = 0.08 * H * lv
    glare = np.exp(-((yy - gy) ** 2 + (xx - gx) ** 2) / (2 * sg * sg)) * (0.05 + 0.05 * u[20]) * lv
    photo = photo + glare * (1 - photo)
    # exposure / contrast (CheXphoto: ×(1+0.2f) brighter or ÷(1+0.4f) darker)
    e = (u[21] - 0.5) * 2 * lv / 4
    photo = np.clip(photo * (1 + 0.2 * e) if e > 0 else photo / (1 - 0.4 * e), 0, 1)
    # sub-pixel RGB structure beating with the sensor grid: coloured moire
    th = np.deg2rad(90 + (u[22] - 0.5) * 2)
    period = (20.0, 4.5, 2.5, 1.8)[level - 1]
    opac = (0.02, 0.04, 0.06, 0.09)[level - 1]
    phase = 2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period
    rows = np.cos(2 * np.pi * yy / (period * 1.07))
    rgb = np.stack([photo * (1 + opac * np.cos(phase + k * 2 * np.pi / 3) * rows) for k in range(3)], -1)
    # colour cast, sensor noise
    crng = np.random.default_rng([int(seed), 78])
    cast = 1 + crng.normal(0, 1, 3) * (0.015 + 0.015 * lv)
    rgb = np.clip(rgb * cast, 0, 1)
    rgb = rgb + crng.standard_normal(rgb.shape).astype(np.float32) * (0.004 + 0.005 * lv)
    out = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    # JPEG, sometimes twice (sent through a messaging app)
    q = int(96 - 10 * lv + round(4 * (u[23] - 0.5)))
    out = _jpeg(out, q)
    if crng.random() < 0.15 * lv:
        out = _jpeg(out, q - 12)
    return out


def image_points(points: np.ndarray, shape: tuple[int, int], level: int = 1, seed: int = 0, *,
                 out_size: int | None = None) -> np.ndarray:
    """Where ``points`` (N×2 (x, y) pixel positions in an image of ``shape``) land in
    ``photograph(image, level, seed, out_size=...)``: float64 N×2 in photo pixels. The ground truth for
    anything located on the radiograph (its corners, a joint's box) once it has been photographed."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}; got {level!r}.")
    h, w = int(shape[0]), int(shape[1])
    n = max(h, w)
    H = int(out_size or n)
    u = np.random.default_rng([int(seed), 77]).random(24)
    pad, bez, S, src, dst = _pose(u, float(level), n)
    off = np.array([pad + bez + (n - w) // 2, pad + bez + (n - h) // 2], float)   # on the screen (letter-box)
    pts = np.asarray(points, float).reshape(-1, 2) + off
    q = _homography(src, dst * (H / S)) @ np.vstack([pts.T, np.ones(len(pts))])   # screen -> photo
    return (q[:2] / q[2]).T


def image_corners(shape: tuple[int, int], level: int = 1, seed: int = 0, *, out_size: int | None = None
                  ) -> np.ndarray:
    """Where the radiograph's four corners land in ``photograph(image, level, seed, out_size=...)`` of an
    image of ``shape``: float64 4×2 (x, y) in photo pixels, clockwise from the top left. The ground truth
    for finding the radiograph in a photo (the corners of the image itself, not of the screen's bezel)."""
    h, w = int(shape[0]), int(shape[1])
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)   # corner pixels' centres
    return image_points(corners, shape, level, seed, out_size=out_size)


def _pose(u: np.ndarray, lv: float, n: int) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """The screen around an n-pixel panel (black margin ``pad``, bezel ``bez``, side ``S``) and the camera
    pose: keystone (corners move inward by up to 4 %·level), rotation, framing; ``src`` -> ``dst`` corners."""
    pad = int(round(n * (0.02 + 0.03 * u[2])))
    bez = int(round(n * (0.03 + 0.04 * u[3])))
    S = n + 2 * (pad + bez)
    src = np.array([[0, 0], [S, 0], [S, S], [0, S]], dtype=np.float64)
    jit = u[4:12].reshape(4, 2) * 0.04 * lv * S
    dst = src + np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * jit
    ang = np.deg2rad((u[12] - 0.5) * 2.5 * lv)
    c = dst.mean(0)
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = (dst - c) @ R.T + c
    dst = (dst - c) * (1.0 + 0.08 * (u[13] - 0.3)) + c
    return pad, bez, S, src, dst


def save_photo(photo: np.ndarray, path, *, seed: int = 0, quality: int = 92, exif_p: float = 0.25) -> int:
    """Save a photo as JPEG; with probability ``exif_p`` (by ``seed``) store it rotated, as phones do,
    with the EXIF Orientation tag that turns it upright. Returns the Orientation written (1 = none)."""
    rng = np.random.default_rng([int(seed), 79])
    orient = 1
    im = Image.fromarray(photo)
    if rng.random() < exif_p:
        orient = int(rng.choice([3, 6, 8]))
        # pixels as the sensor stored them; viewers apply the inverse to show the photo upright
        stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orient]
        im = im.transpose(stored)
    exif = Image.Exif()
    exif[0x0112] = orient
    exif[0x010F] = "as-ai phone simulator"
    im.save(path, format="JPEG", quality=int(quality), exif=exif.tobytes())
    return orient


def _warp(img, src, dst, shape, fill):
    """Projective warp mapping ``src`` corners of ``img`` onto ``dst`` corners in the output."""
    Hm = _homography(dst, src)  # output -> input
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    q = Hm @ pts
    qx = (q[0] / q[2]).reshape(H, W); qy = (q[1] / q[2]).reshape(H, W)
    return ndimage.map_coordinates(img, [qy, qx], order=1, mode="constant", cval=fill).astype(np.float32)


def _homography(a, b):
    A = []
    for (x, y), (u, v) in zip(a, b):
        A.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        A.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, Vt = np.linalg.svd(np.asarray(A))
    return Vt[-1].reshape(3, 3)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(np.clip(quality, 30, 98)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))
