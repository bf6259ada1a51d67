"""Phantom radiographs: determinism, frozen appearance, the locality contract, ROIs, validation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from as_ai.synthetic import Phantom, pelvis
from as_ai.synthetic.readers import new_york

SIZE = 160


def _roi_mask(meta, names, shape):
    m = np.zeros(shape, bool)
    for k in names:
        x0, y0, x1, y1 = meta["rois"][k]
        m[y0:y1, x0:x1] = True
    return m


def test_render_is_deterministic_and_bone_bright():
    a = pelvis.render(3, (3, 1), size=SIZE, center="C")
    b = pelvis.render(3, (3, 1), size=SIZE, center="C")
    assert isinstance(a, Phantom)
    assert a.image.dtype == np.uint16 and a.image.shape == (SIZE, SIZE)
    assert np.array_equal(a.image, b.image)
    assert a.meta == b.meta
    assert a.image.max() <= 2 ** a.meta["bits_stored"] - 1
    # bone bright: the femoral heads (inside the hip ROIs) are brighter than the image median
    x0, y0, x1, y1 = a.meta["rois"]["hip_left"]
    assert np.percentile(a.image[y0:y1, x0:x1], 90) > np.median(a.image)
    assert not np.array_equal(a.image, pelvis.render(4, (3, 1), size=SIZE, center="C").image)


# Block means (8x8) of three renders at 256 px, recorded when the appearance was frozen (v1):
# a model is trained on these images, so their look must not drift.
_FROZEN = [
    ((7, (3, 1), "A", None, False),
     [1651, 2190, 3032, 3480, 3519, 3087, 2293, 1782, 671, 1733, 3105, 3522, 3544, 3196, 1918, 1215, 686, 1841,
      3180, 3662, 3697, 3219, 1963, 1172, 685, 2283, 3242, 3612, 3618, 3247, 2300, 1153, 959, 2225, 3182, 3549,
      3552, 3221, 2249, 1353, 644, 1299, 2761, 2736, 2774, 2742, 1320, 1045, 480, 687, 2019, 960, 1020, 2007,
      668, 837, 977, 1077, 2140, 1318, 1396, 2107, 1069, 1305]),
    ((8, (0, 0), "B", "osteitis_condensans_ilii", False),
     [975, 1627, 2977, 3467, 3607, 3183, 1985, 1628, 545, 1344, 2897, 3648, 3744, 3180, 1819, 1177, 548, 1372,
      3008, 3693, 3741, 3234, 1903, 1207, 608, 1450, 3084, 3727, 3763, 3368, 2045, 1296, 727, 1688, 3363, 3578,
      3663, 3430, 2317, 1487, 697, 1655, 2979, 3354, 3300, 3175, 2069, 1381, 502, 1360, 2588, 2104, 1598, 2737,
      1726, 1058, 777, 1489, 2547, 2048, 1545, 2665, 1780, 1253]),
    ((9, (4, 4), "D", None, True),
     [474, 491, 692, 835, 848, 754, 542, 572, 153, 218, 572, 829, 863, 650, 288, 329, 160, 233, 626, 825, 845,
      690, 267, 328, 172, 279, 661, 869, 856, 703, 292, 327, 253, 394, 710, 799, 799, 696, 369, 325, 230, 322,
      682, 841, 838, 668, 314, 358, 154, 230, 636, 561, 643, 594, 176, 294, 444, 472, 694, 584, 671, 652, 423,
      527]),
]


@pytest.mark.parametrize("args,thumb", _FROZEN)
def test_appearance_is_frozen(args, thumb):
    seed, grades, center, mimic, hip = args
    im = pelvis.render(seed, grades, center=center, size=256, mimic=mimic, hip_involvement=hip).image
    got = im.reshape(8, 32, 8, 32).mean(axis=(1, 3))
    diff = np.abs(got - np.asarray(thumb, float).reshape(8, 8))
    assert diff.max() <= 6, f"phantom appearance changed (max block diff {diff.max():.1f}); see DESIGN: frozen v1"


GRADE_PAIRS = [((0, 0), (4, 4)), ((0, 0), (2, 0)), ((1, 1), (3, 2)), ((0, 4), (4, 0)), ((2, 2), (1, 3))]


@pytest.mark.parametrize("center", ["A", "B", "C", "D"])
def test_locality_contract_grades_change_only_the_sij_rois(center):
    changed_inside = 0
    for seed in range(8):
        for g1, g2 in GRADE_PAIRS:
            a = pelvis.render(seed, g1, size=SIZE, center=center)
            b = pelvis.render(seed, g2, size=SIZE, center=center)
            assert a.meta["rois"] == b.meta["rois"]
            diff = a.image != b.image
            inside = _roi_mask(a.meta, ("sij_left", "sij_right"), diff.shape)
            assert not diff[~inside].any(), f"seed {seed} {g1}->{g2}: pixels changed outside the SI ROIs"
            changed_inside += int(diff[inside].sum())
    assert changed_inside > 0


def test_each_side_changes_only_its_own_roi():
    a = pelvis.render(5, (0, 0), size=SIZE)
    left = pelvis.render(5, (4, 0), size=SIZE)   # patient left = image right
    right = pelvis.render(5, (0, 4), size=SIZE)
    xl = a.meta["rois"]["sij_left"]; xr = a.meta["rois"]["sij_right"]
    assert xl[0] > xr[0], "the patient's left SI joint must be on the image right"
    for changed, own, other in ((left, "sij_left", "sij_right"), (right, "sij_right", "sij_left")):
        d = changed.image != a.image
        assert d[_roi_mask(a.meta, [own], d.shape)].sum() > 20
        assert not d[~_roi_mask(a.meta, [own], d.shape)].any()


@pytest.mark.parametrize("mimic", pelvis.MIMICS)
def test_mimics_change_only_the_sij_rois_and_stay_non_as(mimic):
    for seed in (0, 1, 2):
        a = pelvis.render(seed, (0, 1), size=SIZE)
        b = pelvis.render(seed, (0, 1), size=SIZE, mimic=mimic)
        d = a.image != b.image
        assert d.any()
        assert not d[~_roi_mask(a.meta, ("sij_left", "sij_right"), d.shape)].any()
        assert b.meta["true_label"] == "non-AS" and b.meta["mimic"] == mimic


def test_hip_involvement_changes_only_the_hip_rois():
    for seed in (0, 3):
        a = pelvis.render(seed, (3, 3), size=SIZE)
        b = pelvis.render(seed, (3, 3), size=SIZE, hip_involvement=True)
        d = a.image != b.image
        assert d.any()
        assert not d[~_roi_mask(a.meta, ("hip_left", "hip_right"), d.shape)].any()
        assert b.meta["hip_involvement"] and b.meta["label"] == a.meta["label"]


def test_rois_contain_the_joints():
    """The lesion-free vs ankylosed difference (where the joint lines are) sits well inside each ROI,
    the ROIs lie in the image, the SI ROIs sit medial to the hip ROIs, and the hips below the SI joints."""
    for seed in range(6):
        a = pelvis.render(seed, (0, 0), size=SIZE)
        b = pelvis.render(seed, (4, 4), size=SIZE)
        d = np.abs(a.image.astype(int) - b.image.astype(int)) > 40
        for k in ("sij_left", "sij_right"):
            x0, y0, x1, y1 = a.meta["rois"][k]
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            sub = d[y0:y1, x0:x1]
            assert sub.sum() > 15, f"seed {seed}: no joint drawn in {k}"
            ys, xs = np.nonzero(sub)
            # the joint is inside, not cut by the box edge
            assert xs.min() > 0 and xs.max() < x1 - x0 - 1 and ys.min() > 0 and ys.max() < y1 - y0 - 1
        r = a.meta["rois"]
        assert r["hip_right"][0] < r["sij_right"][0] < r["sij_left"][0] < r["hip_left"][0]
        assert r["hip_left"][3] > r["sij_left"][3]


def test_meta_contract_and_json():
    ph = pelvis.render(2, (3, 0), size=SIZE, center="B", mimic=None)
    m = ph.to_dict()
    json.dumps(m)
    for key in ("grades", "reader_grades", "label", "true_label", "center", "mimic", "hip_involvement", "sex",
                "rois", "pixel_spacing_mm", "seed", "synthetic"):
        assert key in m
    assert m["grades"] == [3, 0] and m["true_label"] == "AS" and m["synthetic"] is True
    assert m["label"] == new_york(*m["reader_grades"])
    assert set(m["rois"]) == {"sij_left", "sij_right", "hip_left", "hip_right"}
    assert m["pixel_spacing_mm"] == pytest.approx(385.0 / SIZE, rel=1e-3)
    assert pelvis.describe(2, (3, 0), size=SIZE, center="B") == ph.meta


def test_sample_uses_the_population_model():
    ph = pelvis.sample(11, size=SIZE)
    case = pelvis.draw_case(11)
    assert ph.meta["grades"] == list(case["grades"])
    assert ph.meta["mimic"] == case["mimic"] and ph.meta["sex"] == case["sex"]
    assert np.array_equal(ph.image, pelvis.render(11, case["grades"], size=SIZE, mimic=case["mimic"],
                                                  hip_involvement=case["hip_involvement"]).image)


@pytest.mark.parametrize("kwargs,match", [
    (dict(seed=-1), "seed"),
    (dict(grades=(5, 0)), "grades"),
    (dict(grades=(1,)), "grades"),
    (dict(center="Z"), "center"),
    (dict(size=64), "size"),
    (dict(mimic="gout"), "mimic"),
])
def test_invalid_arguments_are_refused(kwargs, match):
    args = dict(seed=1, grades=(0, 0))
    args.update(kwargs)
    seed = args.pop("seed"); grades = args.pop("grades")
    with pytest.raises(ValueError, match=match):
        pelvis.render(seed, grades, **args)


@pytest.mark.parametrize("left,right,label", [
    (0, 0, "non-AS"), (1, 1, "non-AS"), (2, 1, "non-AS"), (2, 2, "AS"), (3, 0, "AS"), (0, 4, "AS"), (1, 2, "non-AS"),
])
def test_modified_new_york_criterion(left, right, label):
    assert new_york(left, right) == label
