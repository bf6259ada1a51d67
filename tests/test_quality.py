"""Input checks: the input gate, the photo-quality check and the ensemble spread (as_ai.quality)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy import ndimage

from as_ai import _gate
from as_ai.hub import DEMO_DIR
from as_ai.imaging import load_radiograph
from as_ai.quality import InputCheck, InputGate, PhotoCheck, build_check, check_photo, spread_reasons
from as_ai.synthetic import pelvis
from as_ai.synthetic.phone import photograph, to_display


def phantom(seed: int, center: str = "A", size: int = 192) -> np.ndarray:
    return to_display(pelvis.sample(seed, center=center, size=size).image)


# ------------------------------------------------------------------------------------------ input gate
def test_feature_gate_accepts_like_and_refuses_unlike(tmp_path):
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 40))
    like = lambda n: rng.normal(size=(n, 6)) @ basis + 0.1 * rng.normal(size=(n, 40))  # noqa: E731
    gate = InputGate.fit(features=like(300), feature_components=6)
    gate.calibrate(features=like(200), quantile=0.99, margin=1.1)
    assert gate.accepts(like(500)).mean() > 0.95
    shifted = like(50) + 3.0                      # same structure, moved
    off_subspace = rng.normal(size=(50, 40)) * 2  # energy where training images have none
    assert not gate.accepts(shifted).any()
    assert not gate.accepts(off_subspace).any()
    # stored and read back: same scores
    entry = gate.save(tmp_path)
    back = InputGate.from_config(tmp_path, entry)
    x = like(10)
    np.testing.assert_allclose(back.score(x), gate.score(x), rtol=1e-5)
    assert json.loads(json.dumps(entry))["parts"]["features"]["components"] == 6


@pytest.mark.parametrize("call, message", [
    (lambda g: g.score(np.zeros((2, 7))), "expects features of shape"),
    (lambda g: g.score(), "nothing to score"),
    (lambda g: g.calibrate(pixels=[np.zeros((64, 64), np.float32)]), "held-out features="),
])
def test_gate_errors_name_the_problem(call, message):
    gate = InputGate.fit(features=np.random.default_rng(0).normal(size=(50, 5)))
    with pytest.raises(ValueError, match=message):
        call(gate)


def test_gate_file_errors(tmp_path):
    assert InputGate.from_config(tmp_path, {}) is None and InputGate.from_config(tmp_path, None) is None
    from safetensors.numpy import save_file

    save_file({"mean": np.zeros(3, np.float32)}, str(tmp_path / _gate.GATE_FILE))
    with pytest.raises(ValueError, match="refit|knows"):
        InputGate.from_config(tmp_path, {"file": _gate.GATE_FILE})


@pytest.fixture(scope="module")
def image_gate() -> InputGate:
    """The image part of a gate fitted on centre-A phantoms and phone photos of them."""
    fit = [phantom(s) for s in range(60)]
    fit += [photograph(im, level=1 + i % 4, seed=i) for i, im in enumerate(fit)]
    held = [phantom(s) for s in range(100, 120)]
    held += [photograph(im, level=1 + i % 4, seed=50 + i) for i, im in enumerate(held)]
    grey = lambda imgs: [load_radiograph(x).pixels for x in imgs]  # noqa: E731
    gate = InputGate.fit(pixels=grey(fit))
    gate.calibrate(pixels=grey(held), quantile=1.0, margin=1.25)
    return gate


def test_image_gate_passes_unseen_centres_and_their_photos(image_gate):
    imgs = [phantom(200 + i, center="BCD"[i % 3]) for i in range(24)]
    photos = [photograph(im, level=1 + i % 4, seed=300 + i) for i, im in enumerate(imgs)]
    ok = image_gate.accepts(pixels=[load_radiograph(x).pixels for x in imgs + photos])
    assert ok.mean() >= 0.9


def test_image_gate_refuses_what_is_not_a_pelvic_radiograph(image_gate):
    from train._ood import _dicom_pixels, _render_text

    rng = np.random.default_rng(0)
    others = {
        "chest radiograph": _dicom_pixels("RG1_UNCR.dcm"),
        "lower-leg radiograph": _dicom_pixels("RG3_UNCR.dcm"),
        "text screenshot": _render_text("Discharge letter. " * 40, size=18, dark=False, width=640, height=480),
        "noise": rng.random((300, 300)).astype(np.float32),
        "black": np.zeros((300, 300), np.float32),
        "white": np.ones((300, 300), np.float32),
    }
    refused = {k: not image_gate.accepts(pixels=[load_radiograph(v).pixels])[0] for k, v in others.items()}
    assert all(refused.values()), refused


def test_check_says_why_it_refuses(image_gate):
    ok, score, reasons = image_gate.check(pixels=np.zeros((200, 200), np.float32))
    assert not ok and score > 1
    assert "does not look like an AP pelvic radiograph" in reasons[0]
    assert any("layout" in r for r in reasons)
    ok, score, reasons = image_gate.check(pixels=load_radiograph(phantom(5)).pixels)
    assert ok and score <= 1 and reasons == []


# ----------------------------------------------------------------------------------- the demo model
def _demo():
    from as_ai.diagnosis import Diagnoser

    folder = DEMO_DIR / "diagnosis"
    if not (folder / "as_ai.json").is_file():
        pytest.skip("the bundled demo diagnosis model is not built")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(folder)
    if d.gate is None:
        pytest.skip("the bundled demo model has no input gate yet (python -m train.input_gate)")
    return d


def test_demo_model_abstains_on_a_chest_radiograph_and_a_screenshot():
    from train._ood import _render_text

    d = _demo()
    from pydicom.data import get_testdata_file

    for src in (get_testdata_file("RG1_UNCR.dcm", download=False),
                _render_text("Ward list 4B. " * 40, size=20, dark=True, width=700, height=500)):
        res = d(src)
        assert res.label == "indeterminate"
        assert not res.check.in_distribution and res.check.score > res.check.threshold
        assert "does not look like an AP pelvic radiograph" in " ".join(res.check.reasons)
        assert "no finding" in res.finding


def test_demo_model_reads_an_unseen_centre_phantom_and_its_photo():
    d = _demo()
    img = pelvis.sample(4242, center="C", size=384).image
    photo = photograph(to_display(img), level=2, seed=1)
    for src in (img, photo):
        res = d(src)
        assert res.check.in_distribution, res.check.reasons
        assert res.label in ("AS", "non-AS")
    assert d(photo).check.photo.is_photo


def test_diagnosis_gate_score_is_the_gate_scoring_the_whole_image():
    """A diagnosis shares one shrunk view between the photo check and the gate: same score as the gate alone."""
    d = _demo()
    img = pelvis.sample(77, center="B", size=1024).image
    rg = load_radiograph(img)
    res = d(rg)
    ok, score, _ = d.gate.check(d.features([rg])[0], pixels=rg.pixels)
    assert res.check.in_distribution == ok and res.check.score == pytest.approx(score, rel=1e-5)


def test_a_photo_of_a_screen_is_read_with_a_caution_that_quotes_the_model():
    d = _demo()
    img = pelvis.sample(4242, center="C", size=384).image
    photo = photograph(to_display(img), level=2, seed=1)
    m = d.config["metrics"]
    xm = d.cross_view.metrics    # read across both views, the caution quotes the cross-view figures
    assert d.joint_reader is not None
    for figures, clean in ((xm["external_phone"]["cross_view"], xm["external"]["cross_view"]),
                           (m["external_phone"]["true"], m["external"]["true"])):
        said = " ".join(d(photo).check.reasons)
        assert "photo of a screen" in said
        assert f"AUC {figures['auc']:.2f} on phone photos against {clean['auc']:.2f}" in said
        spec = figures["specificity"]
        if spec < 0.8:  # photos are over-called: the caution says how often
            assert f"only {100 * spec:.0f} % of photos without AS were read as non-AS" in said
        assert "photo of a screen" not in " ".join(d(img).check.reasons)
        d = _demo().attach_joint_reader(None)   # then the whole image alone, with its own figures


def test_a_blurred_radiograph_carries_the_model_s_softness_caution():
    d = _demo()
    rows = d.config["metrics"]["external_softness"]["rows"]      # the softness test of the model's evaluation
    sensitive = rows[-1]["mean_prob_non_as"] - rows[0]["mean_prob_non_as"] > 0.05
    assert (d.softness_caution is not None) is sensitive
    img = to_display(pelvis.sample(4242, center="C", size=384).image)  # float grey: a file, not a photo
    soft = ndimage.gaussian_filter(img, 3.0)
    blurred, sharp = d(soft), d(img)
    assert "blur" in blurred.check.photo.issues and "blur" not in sharp.check.photo.issues
    if sensitive:
        said = " ".join(blurred.check.reasons)
        assert "reads softer images as more likely AS" in said and f"from {rows[0]['mean_prob_non_as']:.2f}" in said
    assert not any("softer images" in r for r in sharp.check.reasons)


def test_no_softness_caution_without_the_measure():
    from as_ai.diagnosis import Diagnoser

    d = _demo()
    bare = Diagnoser(dict(zip(d.ensemble.names, d.ensemble.members.values())), archs=d.archs, preprocess=d.preprocess,
                     calibration=d.calibration, threshold=d.threshold, config={})
    assert bare.softness_caution is None


# ------------------------------------------------------------------------------------- photo quality
def test_clean_radiograph_has_no_photo_issues():
    pc = check_photo(load_radiograph(phantom(3, size=384)).pixels)
    assert not pc.is_photo and pc.issues == [] and pc.advice == []
    assert pc.score > 0.5
    assert json.loads(json.dumps(pc.to_dict()))["measures"]["blur"] > 0


def test_bad_phone_photo_gets_advice():
    photo = photograph(phantom(3, size=384), level=4, seed=2)
    rg = load_radiograph(photo)
    pc = check_photo(rg.pixels, meta=rg.meta)
    assert pc.is_photo
    assert set(pc.issues) & {"blur", "glare", "moire", "perspective", "crop"}
    assert len(pc.advice) == len(pc.issues) and all(len(a) > 40 for a in pc.advice)
    good = check_photo(load_radiograph(phantom(3, size=384)).pixels)
    assert pc.score < good.score


@pytest.mark.parametrize("make, issue, words", [
    (lambda im: ndimage.gaussian_filter(im, 4), "blur", "original radiograph file"),
    (lambda im: im[::4, ::4].copy(), "low_resolution", "too small"),
    (lambda im: (0.5 + 0.05 * (im - 0.5)).astype(np.float32), "low_contrast", "contrast"),
])
def test_degradations_are_named_with_advice(make, issue, words):
    img = make(phantom(7, size=384))
    pc = check_photo(load_radiograph(img).pixels)
    assert issue in pc.issues
    assert words in pc.advice[pc.issues.index(issue)]


def test_a_16_bit_file_is_not_taken_for_a_photo_but_still_checked_for_blur(tmp_path):
    from PIL import Image

    photo = photograph(phantom(3, size=384), level=4, seed=2)
    grey16 = (photo.mean(axis=2) / 255.0 * 65535).astype(np.uint16)    # the same picture, saved 16-bit
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    rg = load_radiograph(tmp_path / "deep.png")
    pc = check_photo(rg.pixels, meta=rg.meta)
    assert rg.meta["bit_depth"] == 16 and not pc.is_photo
    assert set(pc.measures) == {"blur", "low_contrast", "low_resolution"}
    blurred = ndimage.gaussian_filter(phantom(7, size=384).astype(np.float32), 4)
    Image.fromarray((blurred * 65535).astype(np.uint16)).save(tmp_path / "blurred.png")
    rg = load_radiograph(tmp_path / "blurred.png")
    assert "blur" in check_photo(rg.pixels, meta=rg.meta).issues
    rg8 = load_radiograph(photo)                                          # the 8-bit camera picture
    assert check_photo(rg8.pixels, meta=rg8.meta).is_photo


def test_check_photo_refuses_non_2d():
    with pytest.raises(ValueError, match="grey image"):
        check_photo(np.zeros((4, 4, 3)))


# ------------------------------------------------------------------------------------------- spread
@pytest.mark.parametrize("members, disagree", [
    ({"a": 0.1, "b": 0.12, "c": 0.09}, False),
    ({"a": 0.45, "b": 0.55}, False),
    ({"a": 0.05, "b": 0.95}, True),
    ({"a": 0.1, "b": 0.15, "c": 0.85}, True),
    ({"a": 0.9}, False),
])
def test_spread_reasons(members, disagree):
    reasons = spread_reasons(members, threshold=0.5)
    assert bool(reasons) is disagree
    if disagree:
        assert "disagree" in reasons[0] and min(members, key=members.get) in reasons[0]


def test_build_check_combines_gate_photo_and_spread():
    rng = np.random.default_rng(0)
    gate = InputGate.fit(features=rng.normal(size=(100, 4)))
    gate.calibrate(features=rng.normal(size=(100, 4)), quantile=1.0, margin=1.2)
    photo = PhotoCheck(is_photo=True, score=0.2, issues=["glare"], advice=["Switch off the light."])
    inside = build_check(gate=gate, features=np.zeros(4), photo=photo, member_probs={"a": 0.05, "b": 0.95})
    assert inside.in_distribution and inside.threshold == 1.0
    assert inside.reasons[0] == "Switch off the light." and "disagree" in inside.reasons[1]
    outside = build_check(gate=gate, features=np.full(4, 50.0), photo=None, member_probs={"a": 0.05, "b": 0.95})
    assert not outside.in_distribution and "does not look like" in outside.reasons[0]
    assert not any("disagree" in r for r in outside.reasons)  # no spread talk about an image it refused
    d = json.loads(json.dumps(outside.to_dict()))
    assert d["in_distribution"] is False and d["score"] > 1
    assert InputCheck().to_dict()["reasons"] == []


# ------------------------------------------------------------------------- fitting into a model repo
def test_train_input_gate_stores_a_verified_gate(tmp_path):
    import timm
    import torch

    from as_ai.diagnosis import Diagnoser
    from as_ai.errors import ModelLoadError
    from as_ai.imaging import Preprocess
    from train.input_gate import fit_gate, store_gate

    torch.manual_seed(0)
    d = Diagnoser({"m": timm.create_model("mobilenetv3_small_050", num_classes=2)},
                  archs={"m": "mobilenetv3_small_050"}, preprocess=Preprocess(resize_short=72, crop=64))
    folder = d.save_pretrained(tmp_path / "repo")
    gate = fit_gate(d, [phantom(s, size=128) for s in range(24)], feature_components=4, image_components=4)
    entry = store_gate(folder, gate)
    assert entry["file"] == "input_gate.safetensors" and entry["threshold"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = Diagnoser.from_pretrained(folder)
    assert loaded.gate is not None
    assert loaded(np.zeros((128, 128), np.float32)).label == "indeterminate"
    cfg = json.loads((folder / "as_ai.json").read_text())
    assert cfg["input_gate"]["parts"]["image"]["limit"] > 0 and "input_gate.safetensors" in cfg["files"]
    with open(folder / "input_gate.safetensors", "ab") as fh:  # tampered statistics are not used
        fh.write(b"\0")
    with pytest.raises(ModelLoadError, match="Checksum mismatch"):
        Diagnoser.from_pretrained(folder)


def test_gate_measures_go_into_the_model_card(tmp_path):
    """What train.input_gate measured is kept in as_ai.json and shown in the re-rendered card."""
    import shutil

    from as_ai.hub import DEMO_DIR
    from train.input_gate import record_evaluation

    folder = tmp_path / "model"
    shutil.copytree(DEMO_DIR / "diagnosis", folder)
    report = {"external": {"n": 200, "false_abstain_rate": 0.005},
              "external_phone": {"n": 200, "false_abstain_rate": 0.015},
              "ood": {"n": 127, "abstain_rate": 0.968, "by_category": {"chest_radiograph": 0.875, "noise": 1.0}}}
    record_evaluation(folder, report, command="python -m train.input_gate --model M --data D")
    cfg = json.loads((folder / "as_ai.json").read_text())
    assert cfg["input_gate"]["evaluation"]["ood_abstain_rate"] == 0.968
    card = (folder / "README.md").read_text()
    assert "## Input gate" in card and "96.8 % of an out-of-distribution set of\n127 images refused" in card
    assert "chest radiograph 88 %" in card and "1.5 % of 200 phone photos" in card


def test_a_model_without_a_gate_warns_with_its_own_class():
    import warnings

    from as_ai.errors import AsAiWarning, NoInputGateWarning, SyntheticModelWarning
    from as_ai.quality import no_gate_warning

    assert issubclass(NoInputGateWarning, AsAiWarning) and issubclass(SyntheticModelWarning, AsAiWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", NoInputGateWarning)   # what train/ filters: this class only
        no_gate_warning("some/model")
        warnings.warn("a synthetic model", SyntheticModelWarning)
    assert [w.category for w in caught] == [SyntheticModelWarning]
