"""The diagnosis runtime: Ensemble, Diagnoser (save / load / call / batch), diagnose(), Diagnosis.

Members here are tiny random-initialised timm models (seeded), so the numbers are meaningless but
deterministic; what is tested is the plumbing a user relies on: the same image gives the same
probability whatever form it arrives in, saved repos load back to the same numbers, tampered repos
are refused, results serialise, bad inputs fail with InvalidImageError.
"""
from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import as_ai
from as_ai import hub
from as_ai.diagnosis import Diagnoser, Diagnosis, diagnose
from as_ai.ensemble import Calibration, Ensemble, combine_weights, youden_threshold
from as_ai.errors import InvalidImageError, ModelLoadError, SyntheticModelWarning
from as_ai.imaging import Preprocess, load_radiograph, to_model_input
from as_ai.quality import InputCheck

ARCH = "mobilenetv3_small_050"
PP = Preprocess(resize_short=72, crop=64)


def _members(n: int = 2, seed: int = 0) -> dict[str, torch.nn.Module]:
    import timm

    out = {}
    for i in range(n):
        torch.manual_seed(seed + i)
        out[f"m{i}"] = timm.create_model(ARCH, pretrained=False, num_classes=2)
    return out


def _diagnoser(**kw) -> Diagnoser:
    members = kw.pop("members", None) or _members()
    defaults = dict(archs={n: ARCH for n in members}, preprocess=PP, calibration=Calibration("platt", 1.5, -0.2),
                    threshold=0.45, config={"training": {"synthetic": True}})
    defaults.update(kw)
    return Diagnoser(members, **defaults)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A saved two-member repo with float32 weights (exact round trip)."""
    folder = tmp_path_factory.mktemp("diag") / "model"
    _diagnoser().save_pretrained(folder, dtype=torch.float32)
    return folder


@pytest.fixture(scope="module")
def loaded(repo) -> Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(repo)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 16-bit grey image spanning the full range (so DICOM min-max and PNG /65535 agree)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:160, 0:140]
    img = (0.3 + 0.4 * np.exp(-((x - 70) ** 2 + (y - 60) ** 2) / 900) + 0.05 * rng.random((160, 140)))
    a = (np.clip(img, 0, 1) * 65535).astype(np.uint16)
    a[0, 0], a[-1, -1] = 0, 65535
    return a


def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _dicom_bytes(a: np.ndarray) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = a.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = a.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ ensemble
def test_ensemble_runs_members_of_different_sizes_in_one_call():
    members = _members(2)
    ens = Ensemble(members, input_sizes={"m0": 64, "m1": 96}, weights={"m0": 3, "m1": 1}).eval()
    x64, x96 = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 96, 96)
    with torch.inference_mode():
        probs = ens({64: x64, 96: x96})
        alone = [torch.softmax(members["m0"](x64), 1)[:, 1], torch.softmax(members["m1"](x96), 1)[:, 1]]
        torch.testing.assert_close(probs, torch.stack(alone, 1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ens.combine(probs), 0.75 * alone[0] + 0.25 * alone[1], rtol=1e-5, atol=1e-6)
        p2, feats = ens.forward_with_features({64: x64, 96: x96})
    torch.testing.assert_close(p2, probs, rtol=1e-5, atol=1e-6)
    width = sum(getattr(m, "head_hidden_size", None) or m.num_features for m in members.values())
    assert feats.shape == (3, width)  # pooled pre-logit features of every member
    with pytest.raises(ValueError, match="pass a dict size"):
        ens(x64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(members={}, input_sizes={}), "at least one member"),
    (dict(input_sizes={"m0": 64}), "input_sizes lacks members"),
    (dict(input_sizes={"m0": 64, "m1": 64}, weights={"m0": -1, "m1": 1}), "weights must be >= 0"),
])
def test_ensemble_refuses_bad_arguments(kwargs, message):
    members = kwargs.pop("members", None)
    with pytest.raises(ValueError, match=message):
        Ensemble(_members(2) if members is None else members, **kwargs)


def test_combine_weights_and_calibration():
    assert combine_weights("mean", [0.9, 0.7]) == [0.5, 0.5]
    w = combine_weights("auc_weighted", [0.9, 0.7])
    assert w[0] == pytest.approx(2 * w[1]) and sum(w) == pytest.approx(1)
    with pytest.raises(ValueError, match="combine must be one of"):
        combine_weights("median", [0.9])
    # over-confident scores: temperature calibration must soften them and lower the log-loss
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(true_p.size) < true_p).astype(int)
    over = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))  # logits 3x too large
    cal = Calibration.fit(over, y, method="temperature")
    assert cal.a == pytest.approx(1 / 3, rel=0.15)  # recovers temperature T = 3
    platt = Calibration.fit(over, y, method="platt")
    assert platt.a == pytest.approx(1 / 3, rel=0.15) and abs(platt.b) < 0.15

    def nll(p):
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert nll(cal.apply(over)) < nll(over) - 0.05
    assert Calibration.from_dict(cal.to_dict()) == cal
    t = youden_threshold(cal.apply(over), y)
    assert 0.2 < t < 0.8


# ---------------------------------------------------------------------------------- save and load
def test_repo_layout_and_round_trip(repo, loaded, image):
    cfg = json.loads((repo / "as_ai.json").read_text())
    assert cfg["kind"] == "diagnosis" and cfg["format_version"] == 1 and cfg["labels"] == ["non-AS", "AS"]
    assert [m["name"] for m in cfg["members"]] == ["m0", "m1"]
    assert set(cfg["files"]) == {f"members/m{i}/{f}" for i in (0, 1) for f in ("config.json", "model.safetensors")}
    assert cfg["files"]["members/m0/model.safetensors"] == hub.sha256_file(repo / "members/m0/model.safetensors")
    mcfg = json.loads((repo / "members/m0/config.json").read_text())
    assert mcfg["architecture"] == ARCH and mcfg["num_classes"] == 2 and mcfg["label_names"] == ["non-AS", "AS"]
    assert mcfg["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert (repo / "README.md").read_text().startswith("---")
    fresh = _diagnoser()
    a, b = fresh(image), loaded(image)
    assert a.probability == pytest.approx(b.probability, abs=1e-6)
    assert a.members == pytest.approx(b.members, abs=1e-6)
    assert loaded.calibration == fresh.calibration and loaded.threshold == 0.45
    assert b.model == loaded.provenance and str(repo.resolve()) in b.model


def test_float16_repo_is_half_the_size_and_close(tmp_path, image):
    d = _diagnoser()
    d.save_pretrained(tmp_path / "f16")
    d.save_pretrained(tmp_path / "f32", dtype=torch.float32)
    size = {k: (tmp_path / k / "members/m0/model.safetensors").stat().st_size for k in ("f16", "f32")}
    assert size["f16"] < 0.55 * size["f32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = Diagnoser.from_pretrained(tmp_path / "f16")
    assert half(image).probability == pytest.approx(d(image).probability, abs=5e-3)


def test_tampered_weights_are_refused(repo, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(repo, bad)
    w = bad / "members/m1/model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="Checksum mismatch"):
        Diagnoser.from_pretrained(bad)


def test_unlisted_member_weights_are_refused(repo, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(repo, bad)
    cfg = json.loads((bad / "as_ai.json").read_text())
    del cfg["files"]["members/m1/model.safetensors"]
    (bad / "as_ai.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="not listed in 'files'"):
        Diagnoser.from_pretrained(bad)


# ---------------------------------------------------------------------------------------- inference
def test_same_probability_for_every_input_kind(loaded, image, tmp_path):
    png = _png_bytes(image)
    path = tmp_path / "x.png"
    path.write_bytes(png)
    dcm = tmp_path / "x.dcm"
    dcm.write_bytes(_dicom_bytes(image))
    sources = {
        "path": path, "str": str(path), "bytes": png, "fileobj": io.BytesIO(png), "pil": Image.open(io.BytesIO(png)),
        "uint16 array": image, "float array": image.astype(np.float32) / 65535, "radiograph": load_radiograph(png),
        "dicom": dcm,
    }
    probs = {k: loaded(v).probability for k, v in sources.items()}
    ref = probs["path"]
    for k, p in probs.items():
        assert p == pytest.approx(ref, abs=1e-6), k


def test_batch_matches_single_calls_in_order(loaded, image):
    imgs = [image, np.flipud(image).copy(), (image // 2).astype(np.uint16), np.fliplr(image).copy()]
    single = [loaded(i).probability for i in imgs]
    batch = loaded.diagnose_batch(imgs, batch_size=3)
    assert [d.probability for d in batch] == pytest.approx(single, abs=1e-6)
    assert len(set(round(p, 6) for p in single)) > 1  # the images really differ for the model
    np.testing.assert_allclose(loaded.predict_proba(imgs, batch_size=2), single, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        loaded.diagnose_batch(imgs, batch_size=0)


def test_a_device_that_cannot_run_the_members_is_refused_and_nothing_moves(repo, image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(repo)
    before = d(image).probability
    bad = ["banana", "meta", "cuda:7"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad:
        with pytest.raises(ValueError, match=f"{device!r}"):
            d.to(device)
        assert d.device.type == "cpu"
    assert d.to("cpu") is d and d(image).probability == before          # still answers, the same


def test_probability_follows_the_stored_pipeline(loaded, image):
    """probability = calibration(weighted mean of member softmax P(AS)) on to_model_input's tensor."""
    x = to_model_input([image], PP)
    with torch.inference_mode():
        members = [torch.softmax(loaded.ensemble.members[f"m{i}"](x), 1)[0, 1].item() for i in (0, 1)]
    expected = float(loaded.calibration.apply([np.mean(members)])[0])
    d = loaded(image)
    assert d.probability == pytest.approx(expected, abs=1e-6)
    assert d.members == pytest.approx({"m0": members[0], "m1": members[1]}, abs=1e-6)
    assert d.spread == pytest.approx(np.std(members), abs=1e-6)
    assert d.label == ("AS" if d.probability >= d.threshold else "non-AS")


def test_diagnosis_result_serialises_and_words_findings_carefully(loaded, image):
    d = loaded(image)
    payload = json.loads(json.dumps(d.to_dict()))
    assert set(payload) >= {"probability", "label", "threshold", "members", "spread", "check", "explanation", "model",
                            "finding"}
    assert payload["check"]["in_distribution"] is True and payload["explanation"] is None
    with pytest.raises(Exception):
        d.probability = 0.0  # frozen
    pos = Diagnosis(0.91, "AS", 0.5, {"a": 0.91}, 0.0, InputCheck(), None, "m@1")
    neg = Diagnosis(0.09, "non-AS", 0.5, {"a": 0.09}, 0.0, InputCheck(), None, "m@1")
    abstain = Diagnosis(0.5, "indeterminate", 0.5, {}, 0.0,
                        InputCheck(in_distribution=False, reasons=["not a pelvic radiograph"]), None, "m@1")
    assert pos.finding.startswith("Findings suggest ankylosing spondylitis")
    assert neg.finding.startswith("No radiographic signs of ankylosing spondylitis found by the model")
    assert "not a pelvic radiograph" in abstain.finding
    for f in (pos.finding, neg.finding, abstain.finding):
        assert "diagnosed" not in f.lower()


@pytest.mark.parametrize("src, reason", [
    (b"", "empty"),
    (b"hello, this is text", "unsupported_format"),
    ("/nonexistent/pelvis.png", "not_found"),
    (np.zeros((10,), np.float32), "bad_array"),
    (np.zeros((20, 20), np.uint8), "too_small"),
])
def test_bad_inputs_raise_invalid_image_error(loaded, src, reason):
    with pytest.raises(InvalidImageError) as info:
        loaded(src)
    assert info.value.reason == reason
    with pytest.raises(InvalidImageError):
        loaded.diagnose_batch([np.zeros((80, 80), np.uint8), src])


def test_explain_argument(loaded, image, monkeypatch):
    with pytest.raises(ValueError, match="explain must be None or one of"):
        loaded(image, explain="saliency")
    with pytest.raises(ValueError, match="explain must be None or one of"):
        diagnose(image, model="/does/not/matter", explain="shap")  # checked before loading anything
    monkeypatch.setitem(sys.modules, "as_ai.explain", None)  # as if the module were not installed
    with pytest.raises(NotImplementedError, match="as_ai.explain"):
        loaded(image, explain="gradcam")


# ------------------------------------------------------------------------------------------ diagnose()
def test_diagnose_caches_and_warns_once_for_synthetic_models(repo, image, monkeypatch):
    hub.clear_cache()
    monkeypatch.setattr(hub, "_warned_demo", set())
    calls = []
    original = Diagnoser.from_pretrained.__func__

    def counting(cls, *a, **k):
        calls.append(a)
        return original(cls, *a, **k)

    monkeypatch.setattr(Diagnoser, "from_pretrained", classmethod(counting))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = diagnose(image, model=repo)
        second = as_ai.diagnose(image, model=str(repo))
    synthetic = [w for w in caught if issubclass(w.category, SyntheticModelWarning)]
    assert len(synthetic) == 1 and "not for clinical use" in str(synthetic[0].message)
    assert synthetic[0].filename == __file__  # points at the caller
    assert len(calls) == 1 and first.probability == second.probability
    hub.clear_cache()


def test_bundled_demo_model_answers_offline_and_warns_once(monkeypatch, image):
    hub.clear_cache()
    monkeypatch.delenv("AS_AI_DIAGNOSIS_MODEL", raising=False)
    monkeypatch.setattr(hub, "_warned_demo", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [as_ai.diagnose(image) for _ in range(2)]
    assert sum(issubclass(w.category, SyntheticModelWarning) for w in caught) == 1
    d = results[0]
    assert d.label in ("AS", "non-AS", "indeterminate") and 0.0 <= d.probability <= 1.0
    assert len(d.members) >= 3 and "demo_models" in d.model
    cfg = json.loads((hub.DEMO_DIR / "diagnosis" / "as_ai.json").read_text())
    assert cfg["training"]["synthetic"] is True
    hub.clear_cache()


# ------------------------------------------------------------------------------------ photos of a screen
@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory) -> Path:
    """A simulated phone photo of a phantom, saved as the phone would (8-bit colour JPEG)."""
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import photograph, save_photo, to_display

    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    save_photo(photograph(to_display(pelvis.sample(11, center="B", size=256).image), level=3, seed=4), path,
               exif_p=0.0)
    return path


def _stretching_copy(repo: Path, folder: Path) -> Diagnoser:
    """``repo`` copied to ``folder`` with photos read contrast-stretched (0.5 and 99.5 percentiles), loaded."""
    import shutil

    shutil.copytree(repo, folder)
    cfg = json.loads((folder / "as_ai.json").read_text())
    cfg["photo_input"] = {"contrast_stretch": [0.5, 99.5]}
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(folder)


def test_a_photo_is_read_contrast_stretched_when_the_model_says_so(repo, tmp_path, phone_photo, image):
    from as_ai.transforms import stretch_contrast as _stretched

    stretching = _stretching_copy(repo, tmp_path / "stretching")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Diagnoser.from_pretrained(repo)
    assert plain.photo_stretch is None and stretching.photo_stretch == (0.5, 99.5)
    rg = load_radiograph(phone_photo)
    expected = float(plain.predict_proba([_stretched(rg, (0.5, 99.5))])[0])   # what a stretched photo reads as
    d = stretching(phone_photo)
    assert d.check.photo.is_photo and d.probability == pytest.approx(expected, abs=1e-6)
    assert d.probability != pytest.approx(plain(phone_photo).probability, abs=1e-4)
    assert float(stretching.predict_proba([phone_photo])[0]) == pytest.approx(expected, abs=1e-6)  # every path
    assert "contrast was stretched" in " ".join(d.check.reasons)
    assert "contrast was stretched" not in " ".join(plain(phone_photo).check.reasons)
    # a 16-bit file is never a camera picture, and an 8-bit export that is not a photo stays as it is
    assert stretching(image).probability == pytest.approx(plain(image).probability, abs=1e-7)
    export8 = (image // 257).astype(np.uint8)
    assert not stretching(export8).check.photo.is_photo
    assert stretching(export8).probability == pytest.approx(plain(export8).probability, abs=1e-7)
    # and the saved repo keeps the setting
    again = stretching.save_pretrained(tmp_path / "saved", dtype=torch.float32)
    assert json.loads((again / "as_ai.json").read_text())["photo_input"] == {"contrast_stretch": [0.5, 99.5]}


def test_a_photo_is_shrunk_once_for_its_checks_its_stretch_and_its_explanation(repo, tmp_path, monkeypatch):
    from as_ai import _photo
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import photograph, save_photo, to_display

    photo = tmp_path / "big.jpg"                                   # larger than the working view
    save_photo(photograph(to_display(pelvis.sample(12, center="C", size=1024).image), level=2, seed=5), photo,
               exif_p=0.0)
    d = _stretching_copy(repo, tmp_path / "stretching")
    rg = load_radiograph(photo)
    assert max(rg.shape) > _photo.WORK_SIZE
    shrunk, real = [], _photo.fast_view
    monkeypatch.setattr(_photo, "fast_view", lambda g: (shrunk.append(g.shape), real(g))[1])
    result = d(rg, explain="gradcam")
    assert result.check.photo.is_photo and "contrast was stretched" in " ".join(result.check.reasons)
    assert shrunk.count(rg.shape) == 1                             # one downscale of the full image
    assert not rg.work_view.flags.writeable and max(rg.work_view.shape) == _photo.WORK_SIZE


@pytest.mark.parametrize("entry", [{"contrast_stretch": [99, 1]}, {"contrast_stretch": "wide"},
                                   {"contrast_stretch": [0, 101]}])
def test_a_bad_photo_input_entry_is_refused_at_load(repo, tmp_path, entry):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(repo, folder)
    cfg = json.loads((folder / "as_ai.json").read_text())
    cfg["photo_input"] = entry
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="photo_input.contrast_stretch"):
        Diagnoser.from_pretrained(folder)


# ------------------------------------------------------------------------------ the joint reader (issue 20)
@pytest.fixture(scope="module")
def joint_reader():
    from as_ai.joints import load_joint_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        return load_joint_reader()


@pytest.fixture(scope="module")
def pelvis_image() -> np.ndarray:
    from as_ai.synthetic import pelvis

    return pelvis.render(29, (3, 2), center="C", size=512).image


def test_without_a_joint_reader_a_diagnosis_has_no_sides(loaded, image):
    d = loaded(image)
    assert loaded.joint_reader is None and d.sides is None and d.to_dict()["sides"] is None


def test_an_attached_joint_reader_adds_both_sides_and_changes_nothing_else(repo, joint_reader, pelvis_image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain, withj = Diagnoser.from_pretrained(repo), Diagnoser.from_pretrained(repo)
    assert withj.attach_joint_reader(joint_reader) is withj
    a, b = plain(pelvis_image), withj(pelvis_image)
    assert (b.probability, b.members, b.label, b.check.reasons) == (a.probability, a.members, a.label, a.check.reasons)
    assert b.sides is not None and b.sides.found
    d = json.loads(json.dumps(b.to_dict()))
    assert set(d["sides"]["sides"]) == {"left", "right"}
    assert 0.0 <= d["sides"]["mny_probability"] <= 1.0
    assert [x.to_dict() for x in withj.diagnose_batch([pelvis_image, pelvis_image])[1].sides.sides] == \
        [x.to_dict() for x in b.sides.sides]


def test_a_joint_not_found_makes_the_diagnosis_indeterminate_with_the_reason(loaded, image):
    from as_ai.joints import JointReading, SideReading
    from as_ai.result import with_sides

    d = loaded(image)
    found = SideReading("left", (0, 0, 10, 10), 0.9, True, 1, (0.1, 0.6, 0.2, 0.05, 0.05))
    lost = SideReading("right", (0, 0, 10, 10), 0.01, False, 0, (0.6, 0.2, 0.1, 0.05, 0.05))
    ok = with_sides(d, JointReading((found, found), 0.2, True, 0.3))
    assert ok.label == d.label and ok.check == d.check
    bad = with_sides(d, JointReading((found, lost), 0.2, False, 0.3, reasons=("the right sacroiliac joint was not "
                                                                              "found",)))
    assert bad.label == "indeterminate" and not bad.check.in_distribution
    assert bad.check.reasons[-1].startswith("the right sacroiliac joint") and bad.probability == d.probability
    assert bad.finding != d.finding


def test_noise_is_refused_by_the_joint_reader(repo, joint_reader):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(repo).attach_joint_reader(joint_reader)
    noise = np.random.default_rng(0).random((400, 400), dtype=np.float32)
    r = d(noise)
    assert not r.sides.found and r.label == "indeterminate"
    assert any("sacroiliac joint was not found" in x for x in r.check.reasons)


def test_a_repo_that_names_a_joint_reader_loads_it(repo, tmp_path, pelvis_image):
    import shutil

    from as_ai.joints.reader import DEFAULT_PATH

    folder = tmp_path / "withjoints"
    shutil.copytree(repo, folder)
    shutil.copytree(DEFAULT_PATH, folder / "joints")
    cfg = json.loads((folder / "as_ai.json").read_text())
    cfg["joint_reader"] = {"path": "joints"}
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Diagnoser.from_pretrained(folder)
    assert d.joint_reader is not None and d(pelvis_image).sides.found
    cfg["joint_reader"] = "bundled"
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Diagnoser.from_pretrained(folder).joint_reader.provenance.startswith(str(DEFAULT_PATH))
    cfg["joint_reader"] = {"path": "nowhere"}
    (folder / "as_ai.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="not a joint reader folder"):
        Diagnoser.from_pretrained(folder)


def test_the_joint_boxes_are_drawn_in_their_grades_colours(repo, joint_reader, pelvis_image):
    from as_ai.plots import GRADE_COLOURS, draw_joint_boxes

    reading = joint_reader(pelvis_image)
    rgb = draw_joint_boxes(pelvis_image, reading)
    assert rgb.dtype == np.uint8 and rgb.shape == (*pelvis_image.shape, 3)
    for s in reading.sides:
        x0, y0, x1, y1 = (int(round(v)) for v in s.box)
        edge = rgb[(y0 + y1) // 2, max(x0, 0)]
        assert tuple(edge) == GRADE_COLOURS[s.grade]
    np.testing.assert_array_equal(draw_joint_boxes(pelvis_image, reading.to_dict()), rgb)
    with pytest.raises(ValueError, match="without a joint reader"):
        draw_joint_boxes(pelvis_image, {"probability": 0.5, "sides": None})
