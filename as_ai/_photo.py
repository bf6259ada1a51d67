"""Photo-quality measures for smartphone pictures of a radiograph on a screen (private part of
:mod:`as_ai.quality`).

Each measure is computed on the grey image scaled to 384 px on its long side, so the thresholds
do not depend on the camera's resolution (about 0.1 s per image). The degradations are those a phone photo of a monitor
suffers (DOMAIN.md §4, CheXphoto): defocus / motion blur, glare from a light reflected on the
screen, moiré from the screen's pixel grid, perspective (phone not parallel to the screen) and
cropping. Thresholds were set on the project's phone simulator (``as_ai.synthetic.phone``) against
the phantoms it photographs: clean phantoms of all four centres raise no issue, while level 2-4
photos raise moiré and perspective issues and level 3-4 photos blur and crop issues (glare is only
caught when the reflection clips to white). The measures are heuristics with documented limits,
not a trained quality model.
"""
from __future__ import annotations

import numpy as np

WORK_SIZE = 384

# (value at which the issue is reported, value of a hopeless image): severity 0.5 at the first, 1 at the
# second. Set on the phone simulator's levels 1-4 against clean phantoms of all four centres (clean:
# sharpness 0.27-0.30, moiré 8-21, no long tilted edges; level 3-4 photos: sharpness 0.07-0.15, moiré
# 40-170, edges tilted 3-18 degrees, screen cut off on up to every side) and on Gaussian blur
# (sigma 2 px -> sharpness 0.15, sigma 4 px -> 0.085).
THRESHOLDS: dict[str, tuple[float, float]] = {
    "blur": (0.12, 0.06),          # edge sharpness: top gradient / intensity range (lower is worse)
    "glare": (0.01, 0.08),         # share of the picture that is clipped white and flat
    "moire": (50.0, 150.0),        # spectral peak / median at high frequencies
    "perspective": (4.0, 12.0),    # degrees: worst tilt of the long straight edges from the axes
    "crop": (0.5, 1.0),            # share of a frame side crossed by the screen's content
    "low_contrast": (0.25, 0.08),  # robust intensity range p99 - p1 (lower is worse)
    "low_resolution": (256.0, 96.0),   # shorter side in pixels of the original image (lower is worse)
}

ADVICE: dict[str, str] = {
    "blur": "The picture is blurred. Hold the phone steady (rest your elbows on the desk), tap the "
            "radiograph on the phone screen to focus, and retake.",
    "blur_digital": "The image is blurred. Use the original radiograph file (DICOM or a full-size PNG) rather "
                    "than a resized or re-compressed copy.",
    "glare": "A bright reflection covers part of the radiograph. Switch off or move away from the light "
             "behind you (e.g. the ceiling light), tilt the monitor slightly, and retake without the light "
             "reflecting on the screen.",
    "moire": "Wavy stripes (moiré) from the monitor's pixels are visible. Move the phone a little further "
             "back or closer until the stripes disappear, or export the image from the viewer instead of "
             "photographing it.",
    "perspective": "The picture is taken at an angle. Hold the phone parallel to the screen and centred on "
                   "the radiograph, so that the image edges look straight and square.",
    "crop": "Part of the radiograph seems cut off. Step back so that the whole pelvis, both hips and both "
            "sacroiliac joints fit in the frame.",
    "low_contrast": "The image has very little contrast. Raise the monitor's brightness or use the viewer's "
                    "default window, avoid photographing a dimmed screen, and retake (or use the original "
                    "file).",
    "low_resolution": "The image is too small to judge the sacroiliac joints. Use the original file (DICOM "
                      "or a full-size PNG) or a photo at least 1000 pixels across.",
}


def severity(name: str, value: float) -> float:
    """Map a measure to [0, 1]: 0.5 at its reporting threshold, 1 at its hopeless value, linear between,
    and falling linearly to 0 at the same distance on the good side."""
    warn, bad = THRESHOLDS[name]
    s = (value - warn) / (bad - warn)  # also right when lower is worse (bad < warn)
    return float(np.clip(0.5 + 0.5 * s, 0.0, 1.0))


def work_image(gray: np.ndarray) -> np.ndarray:
    """The grey image area-resized to ``WORK_SIZE`` on its long side (never enlarged), float32."""
    from skimage.transform import resize

    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    scale = WORK_SIZE / max(h, w)
    if scale < 1:
        g = resize(g, (max(1, round(h * scale)), max(1, round(w * scale))), order=1, anti_aliasing=True,
                   preserve_range=True).astype(np.float32)
    return g


def fast_view(gray: np.ndarray) -> np.ndarray:
    """The grey image shrunk (bilinear, antialiased, with torch) to ``WORK_SIZE`` on its long side.

    The one downscale a diagnosis makes besides the model's own: the photo check and the input gate's
    image descriptor both read this view, and torch shrinks a multi-megapixel radiograph several times
    faster than :func:`work_image`. Smaller images are returned as they are (float32).
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    scale = WORK_SIZE / max(h, w)
    if scale >= 1:
        return g
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    t = F.resize(torch.from_numpy(np.array(g))[None], size, interpolation=F.InterpolationMode.BILINEAR,
                 antialias=True)
    return t[0].clamp_(0, 1).numpy()


def blur(g: np.ndarray) -> float:
    """Edge sharpness: the 99.5th percentile of the gradient magnitude over the intensity range.

    A sharp radiograph has cortical edges that rise over a pixel or two; defocus and motion spread
    them, so the steepest gradients fall while the range stays. Lower is blurrier.
    """
    from scipy import ndimage

    s = ndimage.gaussian_filter(g, 0.7)
    gy, gx = np.gradient(s)
    top = float(np.quantile(np.hypot(gx, gy), 0.995))
    lo, hi = np.quantile(s, [0.01, 0.99])
    return top / max(float(hi - lo), 1e-3)


def glare(g: np.ndarray) -> float:
    """Share of the image that is clipped near-white and flat (a reflected light washes out the screen)."""
    from scipy import ndimage

    bright = g >= 0.97
    if not bright.any():
        return 0.0
    mean = ndimage.uniform_filter(g, 7)
    var = ndimage.uniform_filter(g * g, 7) - mean * mean
    flat = bright & (var < 1e-4)
    # keep blobs, not isolated pixels or thin text
    flat = ndimage.binary_opening(flat, structure=np.ones((5, 5), bool))
    return float(flat.mean())


def moire(g: np.ndarray) -> float:
    """Strength of periodic high-frequency patterns: spectral peak over the median, high band only."""
    from scipy import ndimage

    h, w = g.shape
    if min(h, w) < 64:
        return 0.0
    hp = g - ndimage.gaussian_filter(g, 2.0)
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(hp * win)))  # full spectrum: peaks may lie on any side
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    r = np.hypot(fy, fx)
    band = (r > 0.08) & (r < 0.48)
    vals = spec[band]
    # the median is the noise floor; a blurred image has almost none, so floor it at an amplitude of
    # 2e-5 (below the grain of any 8-bit picture) lest any faint leftover structure look like a peak
    floor = 2e-5 * float(win.sum()) / 2.0
    med = max(float(np.median(vals)), floor)
    # smooth a little so single noisy bins do not count; a moiré peak spans a few bins
    peak = float(ndimage.uniform_filter(spec, 3)[band].max())
    return peak / med


def perspective(g: np.ndarray) -> float:
    """Worst deviation (degrees) from horizontal / vertical of the long straight edges in the picture.

    A photo of a screen shows the screen's (or the radiograph's) edges as long straight lines; taken
    square-on they are horizontal and vertical, taken at an angle they tilt and converge.
    """
    from skimage.feature import canny
    from skimage.transform import probabilistic_hough_line

    h, w = g.shape
    edges = canny(g, sigma=2.0, low_threshold=0.05, high_threshold=0.15)
    min_len = int(0.35 * min(h, w))
    lines = probabilistic_hough_line(edges, threshold=10, line_length=min_len, line_gap=3,
                                     rng=np.random.default_rng(0))
    worst = 0.0
    for (x0, y0), (x1, y1) in lines:
        ang = np.degrees(np.arctan2(y1 - y0, x1 - x0)) % 180.0
        dev = min(ang % 90.0, 90.0 - ang % 90.0)
        if dev < 30:  # anatomy curves are not screen edges
            worst = max(worst, float(dev))
    return worst


def crop(g: np.ndarray) -> float:
    """Share of the frame border where the screen's content runs off the picture (0 .. 1).

    Only meaningful for photos with a dark surround (bezel / room): the content is what is brighter
    than the darkest tenth of the picture; if the content reaches the frame edge on a side where the
    rest of the border is dark, the radiograph is cut off there.
    """
    from scipy import ndimage

    s = ndimage.gaussian_filter(g, 2.0)
    dark = np.quantile(s, 0.05)
    span = float(np.quantile(s, 0.95) - dark)
    if span < 0.1:
        return 0.0
    content = s > dark + 0.25 * span
    sides = [content[0, :], content[-1, :], content[:, 0], content[:, -1]]
    dark_sides = sum(1 for side in sides if side.mean() < 0.05)
    if dark_sides == 0:  # no dark surround at all: a digital image filling the frame
        return 0.0
    return float(max(side.mean() for side in sides))


def contrast(g: np.ndarray) -> float:
    """Robust intensity range p99 - p1."""
    lo, hi = np.quantile(g, [0.01, 0.99])
    return float(hi - lo)
