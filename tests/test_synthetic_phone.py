"""Smartphone-photo simulator: contract, determinism, severity levels, EXIF orientation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

from as_ai.synthetic import pelvis
from as_ai.synthetic.phone import photograph, save_photo, to_display


def _checker(n=192, k=12):
    y, x = np.mgrid[0:n, 0:n]
    return (((x // k) + (y // k)) % 2).astype(np.float32) * 0.8 + 0.1


def _band_contrast(photo):
    g = photo.astype(np.float32).mean(-1) / 255.0
    n = g.shape[0]
    c = g[n // 4: 3 * n // 4, n // 4: 3 * n // 4]
    band = ndimage.gaussian_filter(c, 1.5) - ndimage.gaussian_filter(c, 6.0)
    return float(band.std())


def test_photo_contract_and_determinism():
    ph = pelvis.render(1, (3, 3), size=160)
    a = photograph(ph.image, level=2, seed=4)
    b = photograph(ph.image, level=2, seed=4)
    assert a.dtype == np.uint8 and a.shape == (160, 160, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, photograph(ph.image, level=2, seed=5))
    assert photograph(ph.image, level=1, seed=4, out_size=96).shape == (96, 96, 3)
    # the radiograph is still there: the photo correlates with the (bone-bright) image
    g = a.mean(-1)
    x = to_display(ph.image)
    assert np.corrcoef(g[40:120, 40:120].ravel(), x[40:120, 40:120].ravel())[0, 1] > 0.5


def test_levels_degrade_monotonically():
    img = _checker()
    per_level = np.array([[_band_contrast(photograph(img, level=lv, seed=s)) for lv in (1, 2, 3, 4)]
                          for s in range(5)])
    mean = per_level.mean(0)
    assert np.all(np.diff(mean) < 0), mean
    assert np.all(per_level[:, 3] < per_level[:, 0])
    assert mean[3] < 0.6 * mean[0]


@pytest.mark.parametrize("level", [0, 5, 2.5, "3"])
def test_invalid_level_is_refused(level):
    with pytest.raises(ValueError, match="level"):
        photograph(_checker(64), level=level)


def test_non_2d_image_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        photograph(np.zeros((8, 8, 3)), level=1)


def test_to_display_scales_by_bit_depth_and_inverts_monochrome1():
    a = np.array([[0, 4095]], dtype=np.uint16)
    assert np.allclose(to_display(a), [[0, 1]])
    assert np.allclose(to_display(np.array([[0, 1023]], np.uint16)), [[0, 1]])
    assert np.allclose(to_display(a, photometric="MONOCHROME1"), [[1, 0]])


def test_exif_orientation_round_trip(tmp_path):
    photo = photograph(_checker(96) * np.linspace(0.5, 1, 96)[None, :], level=1, seed=0)
    seen = set()
    for s in range(12):
        p = tmp_path / f"p{s}.jpg"
        orient = save_photo(photo, p, seed=s)
        seen.add(orient)
        im = Image.open(p)
        assert im.getexif().get(0x0112) == orient
        upright = np.asarray(ImageOps.exif_transpose(im)).astype(int)
        assert upright.shape == photo.shape
        assert np.abs(upright - photo).mean() < 3
    assert 1 in seen and len(seen) >= 2
