"""The joint reader (issue 20): the modified New York rule, the ordinal grader's probabilities, saving and loading,
the bundled phantom-trained reader on fresh phantoms, the phone photo's box geometry, and bad input."""
from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch

from as_ai.errors import InvalidImageError, ModelLoadError, SyntheticModelWarning
from as_ai.joints import criteria
from as_ai.joints._view import box_iou, joint_crop
from as_ai.joints.grader import GraderConfig, JointGrader, OrdinalGraderNet, ordinal_probabilities
from as_ai.joints.localiser import JointLocaliser, LocaliserConfig, LocaliserNet
from as_ai.joints.reader import DEFAULT_PATH, JointReader, load_joint_reader
from as_ai.synthetic import pelvis
from as_ai.synthetic.readers import new_york

# ------------------------------------------------------------------------------------------- the rule
RULE = [  # (left, right, AS?) by the modified New York criterion: both >= 2, or one >= 3
    (0, 0, False), (1, 1, False), (2, 1, False), (1, 2, False), (2, 0, False), (2, 2, True), (3, 0, True),
    (0, 3, True), (4, 0, True), (0, 4, True), (3, 1, True), (2, 3, True), (4, 4, True), (1, 0, False),
]


@pytest.mark.parametrize("left,right,expected", RULE)
def test_the_rule_on_integer_grades(left, right, expected):
    assert criteria.mny_positive(left, right) is expected
    assert criteria.mny_label(left, right) == ("AS" if expected else "non-AS")


def test_the_rule_agrees_with_the_phantoms_readers_on_every_pair():
    for left, right in itertools.product(range(5), repeat=2):
        assert criteria.mny_label(left, right) == new_york(left, right)


@pytest.mark.parametrize("left,right", [(5, 0), (-1, 2), (1.5, 2), (True, 2), ("2", 2)])
def test_a_grade_outside_0_to_4_is_refused(left, right):
    with pytest.raises(ValueError, match="grade 0-4"):
        criteria.mny_positive(left, right)


def test_the_probability_of_point_masses_is_the_rule():
    eye = np.eye(5)
    for left, right in itertools.product(range(5), repeat=2):
        assert criteria.mny_probability(eye[left], eye[right]) == float(criteria.mny_positive(left, right))


def test_the_probability_known_answers():
    u = np.full(5, 0.2)
    # negative cells: both <= 2 but not both 2 -> 3*3 - 1 = 8 of 25 equally likely cells
    assert criteria.mny_probability(u, u) == pytest.approx(17 / 25, abs=1e-12)
    assert criteria.mny_probability([0, 0, 1, 0, 0], [0, 0.5, 0.5, 0, 0]) == pytest.approx(0.5, abs=1e-12)
    assert criteria.mny_probability([0.5, 0, 0, 0.5, 0], [1, 0, 0, 0, 0]) == pytest.approx(0.5, abs=1e-12)


def test_the_probability_equals_the_sum_over_the_table_and_works_on_batches():
    rng = np.random.default_rng(0)
    pl, pr = rng.dirichlet(np.ones(5), size=50), rng.dirichlet(np.ones(5), size=50)
    brute = np.array([sum(a[i] * b[j] for i in range(5) for j in range(5) if criteria.mny_positive(i, j))
                      for a, b in zip(pl, pr)])
    got = criteria.mny_probability(pl, pr)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, brute, atol=1e-12)
    assert isinstance(criteria.mny_probability(pl[0], pr[0]), float)


@pytest.mark.parametrize("bad,match", [([0.5, 0.5, 0, 0], "5 grade probabilities"), ([0.5, 0.6, 0, 0, 0], "sum to 1"),
                                       ([1.5, -0.5, 0, 0, 0], "non-negative"), ([np.nan, 1, 0, 0, 0], "finite")])
def test_a_bad_distribution_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        criteria.mny_probability(bad, [1, 0, 0, 0, 0])


# -------------------------------------------------------------------------------------- ordinal output
def test_ordinal_probabilities_sum_to_one_and_their_cumulative_is_monotone():
    torch.manual_seed(0)
    net = OrdinalGraderNet(8).eval()
    with torch.no_grad():
        net.gaps.copy_(torch.tensor([-3.0, 0.5, 2.0]))   # uneven gaps: still ordered
        score, th = net(torch.rand(16, 1, 64, 48))
    assert (th[1:] > th[:-1]).all()
    for t in (0.5, 1.0, 3.0):
        p = ordinal_probabilities(score * 5, th, t)
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(1), torch.ones(16), atol=1e-6, rtol=0)
        cum = p.flip(1).cumsum(1).flip(1)            # P(grade >= k), k = 0..4
        assert (cum[:, 1:] <= cum[:, :-1] + 1e-7).all()
    hi, lo = ordinal_probabilities(torch.tensor([5.0, -5.0]), th)
    assert hi.argmax() == 4 and lo.argmax() == 0


def test_a_mirrored_crop_is_the_crop_flipped():
    px = torch.rand(200, 160)
    a = joint_crop(px, (40, 30, 100, 120), size=(56, 40), margin=0.1, mirror=False)
    b = joint_crop(px, (40, 30, 100, 120), size=(56, 40), margin=0.1, mirror=True)
    assert a.shape == (1, 56, 40)
    torch.testing.assert_close(b, a.flip(-1))
    edge = joint_crop(px, (-50, -50, 10, 10), size=(56, 40), margin=0.0, mirror=False)   # outside reads air (0)
    assert float(edge[0, 0, 0]) == 0.0 and float(edge.max()) > 0.0


# ---------------------------------------------------------------------------------------- save / load
def _small_reader() -> JointReader:
    torch.manual_seed(1)
    loc = JointLocaliser(LocaliserNet(8), LocaliserConfig(width=8, intensity_reference=(0.05, 0.95, 0.5)))
    grader = JointGrader(OrdinalGraderNet(8), GraderConfig(crop=(64, 48), width=8, temperature=1.3,
                                                           intensity_reference=(0.05, 0.95, 0.45)))
    return JointReader(loc, grader, min_confidence=0.2, config={"training": {"synthetic": True}})


def test_save_and_load_give_identical_outputs(tmp_path):
    reader = _small_reader()
    image = pelvis.render(3, (2, 3), size=256).image
    before = reader(image).to_dict()
    reader.save(tmp_path / "r", card="# test\n")
    again = JointReader.load(tmp_path / "r")
    after = again(image).to_dict()
    for k in ("model", "min_confidence"):
        before.pop(k), after.pop(k)
    assert after == before
    assert again.grader.config.temperature == 1.3
    assert json.loads((tmp_path / "r" / "joints.json").read_text())["kind"] == "joint_reader"
    assert not [p for p in (tmp_path / "r").iterdir() if p.suffix in (".pt", ".pth", ".bin", ".pkl")]


def test_a_changed_weight_file_is_refused(tmp_path):
    _small_reader().save(tmp_path / "r")
    w = tmp_path / "r" / "grader.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        JointReader.load(tmp_path / "r")
    with pytest.raises(ModelLoadError, match="not a joint reader folder"):
        JointReader.load(tmp_path / "nowhere")


# --------------------------------------------------------------------------------- the bundled reader
@pytest.fixture(scope="module")
def reader() -> JointReader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        return load_joint_reader()


FRESH = [(11, "A"), (23, "B"), (37, "C"), (41, "D"), (53, "A")]   # phantom seeds no training image used


def test_the_fresh_seeds_are_not_training_seeds():
    from as_ai.synthetic.datasets import image_seed

    training = json.loads((DEFAULT_PATH / "joints.json").read_text())["training"]
    n = training["n_fit"] + training["n_val"]
    used = {image_seed(0, "train", i) for i in range(n)}
    assert not used & {s for s, _ in FRESH}


def test_the_bundled_folder_is_small_safe_and_says_what_it_is():
    files = sorted(p.name for p in DEFAULT_PATH.iterdir())
    assert files == ["README.md", "grader.json", "grader.safetensors", "joints.json", "localiser.json",
                     "localiser.safetensors"]
    assert sum(p.stat().st_size for p in DEFAULT_PATH.iterdir()) <= 3_000_000
    card = (DEFAULT_PATH / "README.md").read_text()
    assert "not for clinical use" in card and "phantom" in card
    cfg = json.loads((DEFAULT_PATH / "joints.json").read_text())
    assert cfg["training"]["synthetic"] is True
    kappa = cfg["metrics"]["external"]["grading"]["qwk"]["both"]
    assert f"{kappa:.4f}" in card                        # the card shows what was measured, not a typed number


def test_the_bundled_reader_warns_that_it_is_phantom_trained():
    from as_ai.joints import reader as reader_module

    reader_module._warned.clear()
    with pytest.warns(SyntheticModelWarning, match="synthetic phantoms"):
        load_joint_reader()


@pytest.mark.parametrize("seed,centre", FRESH)
def test_the_bundled_reader_finds_both_joints_on_a_fresh_phantom(reader, seed, centre):
    from train._joints_data import anatomical_box

    ph = pelvis.render(seed, (1, 2), center=centre, size=512)
    r = reader(ph.image)
    for s, key in zip(r.sides, ("sij_left", "sij_right")):
        # the stored ROI carries the centre's detector-blur margin (30 px at D); the joint itself is this box
        truth = anatomical_box(ph.meta["rois"][key], centre, 512)
        assert box_iou(s.box, truth) >= 0.5, (s.side, s.box, truth)
        if centre == "A":
            assert truth == pytest.approx(tuple(ph.meta["rois"][key]))
        assert s.found
        assert sum(s.probabilities) == pytest.approx(1.0, abs=1e-6)
    assert r.found and not r.reasons
    d = r.to_dict()
    assert set(d["sides"]) == {"left", "right"} and d["synthetic"] is True
    json.dumps(d)


@pytest.mark.parametrize("seed", [11, 37, 53])
def test_the_bundled_reader_grades_ankylosis_above_normal_on_the_same_anatomy(reader, seed):
    normal, fused = (reader(pelvis.render(seed, g, size=512).image) for g in ((0, 0), (4, 4)))
    for a, b in zip(normal.sides, fused.sides):
        exp = np.arange(5)
        assert np.dot(b.probabilities, exp) > np.dot(a.probabilities, exp) + 1.0
    assert fused.mny_probability > 0.5 > normal.mny_probability


def test_the_reader_reads_paths_and_radiographs_alike(reader, tmp_path):
    from PIL import Image

    from as_ai.decoding import load_radiograph

    img = pelvis.render(23, (3, 1), center="B", size=384).image
    path = tmp_path / "p.png"
    Image.fromarray(img).save(path)
    a, b = reader(path).to_dict(), reader(load_radiograph(img)).to_dict()
    assert a == b


@pytest.mark.parametrize("bad,reason", [(np.zeros((10, 10), np.uint8), "too_small"), (b"not an image", None),
                                        ("/nonexistent/pelvis.png", "not_found")])
def test_a_bad_input_gives_the_librarys_error(reader, bad, reason):
    with pytest.raises(InvalidImageError) as exc:
        reader(bad)
    if reason is not None:
        assert exc.value.reason == reason


# ------------------------------------------------------------------------- the phone photo's geometry
@pytest.mark.parametrize("shape,level,seed", [((256, 256), 1, 3), ((256, 256), 4, 11), ((200, 260), 3, 5),
                                              ((256, 256), 2, 8), ((512, 512), 3, 2)])
def test_the_phone_box_is_where_the_photo_puts_the_box(shape, level, seed):
    from as_ai.synthetic.phone import photograph
    from train._joints_data import phone_box

    img = np.zeros(shape, np.float32)
    box = (150, 50, 190, 110)
    img[box[1]:box[3], box[0]:box[2]] = 1.0
    grey = photograph(img, level=level, seed=seed).mean(-1)
    ys, xs = np.nonzero(grey > 0.5 * grey.max())
    seen = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    mapped = phone_box(box, shape, level=level, seed=seed)
    assert box_iou(mapped, seen) > 0.75                       # the photo's blur widens what is seen
    w = np.clip(grey - np.median(grey), 0, None) * (grey > 0.5 * grey.max())
    yy, xx = np.indices(grey.shape)
    centre = ((xx * w).sum() / w.sum() + 0.5, (yy * w).sum() / w.sum() + 0.5)
    assert np.hypot(centre[0] - (mapped[0] + mapped[2]) / 2, centre[1] - (mapped[1] + mapped[3]) / 2) < 0.75


def test_the_docstring_examples_run():
    import doctest

    from as_ai.joints import reader as reader_module

    for module in (criteria, reader_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
