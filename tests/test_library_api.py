"""The library's front door and its seams (issue #19): cached loaders, the typed ``as_ai.json``, the wording
module, the explanation protocol, and the old import paths that still work."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest

import as_ai
from as_ai import hub, wording
from as_ai.errors import ModelLoadError, SyntheticModelWarning
from as_ai.quality import InputCheck
from as_ai.repo_config import DiagnosisRepoConfig, MemberEntry
from as_ai.result import Diagnosis

DEMO = hub.DEMO_DIR / "diagnosis"


@pytest.fixture
def fresh_cache(monkeypatch):
    hub.clear_cache()
    monkeypatch.setattr(hub, "_warned_demo", set())
    monkeypatch.delenv("AS_AI_DIAGNOSIS_MODEL", raising=False)
    monkeypatch.delenv("AS_AI_TRIAGE_MODEL", raising=False)
    yield
    hub.clear_cache()


# ------------------------------------------------------------------------------------------- loaders
def test_load_diagnoser_is_the_cache_that_diagnose_and_the_space_use(fresh_cache, monkeypatch):
    import numpy as np

    from as_ai.diagnoser import Diagnoser

    loads = []
    original = Diagnoser.from_pretrained.__func__
    monkeypatch.setattr(Diagnoser, "from_pretrained",
                        classmethod(lambda cls, *a, **k: (loads.append(a), original(cls, *a, **k))[1]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = as_ai.load_diagnoser()
        assert as_ai.load_diagnoser() is d
        assert hub.cached("diagnosis", hub.default_model_id("diagnosis"), None, lambda: None) is d  # space/app.py
        as_ai.diagnose(np.zeros((256, 256), np.uint8))
    assert len(loads) == 1
    synthetic = [w for w in caught if issubclass(w.category, SyntheticModelWarning)]
    assert len(synthetic) == 1 and synthetic[0].filename == __file__  # names the caller, not the library


def test_load_triager_is_the_cache_that_triage_uses(fresh_cache):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = as_ai.load_triager()
        assert as_ai.load_triager() is t
        patient = {"age": 41, "male": True, "disease_duration": 12.0, "age_at_onset": 29.0, "enthesitis": True,
                   "peripheral_arthritis": False, "tnf_inhibitor": False, "hip_involvement": False}
        assert as_ai.triage(patient).risk in ("high", "low")
    synthetic = [w for w in caught if issubclass(w.category, SyntheticModelWarning)]
    assert len(synthetic) == 1 and synthetic[0].filename == __file__


def test_old_import_paths_still_work():
    import as_ai.diagnosis as diagnosis
    import as_ai.explain as ex
    import as_ai.imaging as imaging
    from as_ai import _lime, diagnoser, result, transforms
    from as_ai.explain import _lime_core, lime_map, norm_lime, protocol

    assert diagnosis.Diagnoser is diagnoser.Diagnoser is as_ai.Diagnoser
    assert diagnosis.Diagnosis is result.Diagnosis is as_ai.Diagnosis
    assert diagnosis.diagnose is as_ai.diagnose and diagnosis.load_diagnoser is as_ai.load_diagnoser
    assert diagnosis.LABELS == ("non-AS", "AS") and diagnosis.SOFTNESS_CAUTION_RISE == 0.05
    assert imaging.Preprocess is transforms.Preprocess and imaging.load_radiograph is as_ai.load_radiograph
    for name in ("MaskPredictor", "run_lime", "N_SEGMENTS", "segment_radiograph", "mean_fill",
                 "BatchedLimeImageExplainer", "StopRule"):
        assert getattr(_lime, name) is getattr(_lime_core, name)
    assert ex.ensemble_view is protocol.ensemble_view and ex.read_view is protocol.read_view
    assert ex.lime_setup is lime_map.lime_setup and ex.superpixel_explanation is lime_map.superpixel_explanation
    assert ex.model_view is lime_map.model_view and ex.early_layer is norm_lime.early_layer
    for name in ("explain", "gradcam", "lime", "normlime", "NormLime", "Explanation", "METHODS",
                 "lime_with_features", "superpixel_features",
                 "to_input_grid", "crop_box", "load_radiograph", "AUTO_MAX_SAMPLES"):
        assert hasattr(ex, name), name
    assert callable(ex.lime) and callable(ex.gradcam)  # the functions, not submodules of the same name


# ------------------------------------------------------------------------------------ explain protocol
def test_the_diagnoser_is_explainable_and_explain_does_not_import_it():
    from as_ai.diagnoser import Diagnoser
    from as_ai.explain import Explainable

    assert isinstance(Diagnoser.from_pretrained(DEMO), Explainable)
    code = ("import sys, as_ai.explain; "
            "assert not {'as_ai.diagnosis', 'as_ai.diagnoser'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------ as_ai.json
def test_repo_config_round_trips_the_demo_byte_for_byte():
    text = (DEMO / "as_ai.json").read_text(encoding="utf-8")
    cfg = json.loads(text)
    repo = DiagnosisRepoConfig.from_json(cfg, model_id="demo")
    assert [m.name for m in repo.members] == [m["name"] for m in cfg["members"]]
    assert repo.extra == {k: cfg[k] for k in ("photo_input", "joint_reader", "cross_view")}
    assert repo.input_gate == cfg["input_gate"]
    again = {**repo.to_json(), "files": cfg["files"]}
    assert json.dumps(again, indent=2) + "\n" == text


def _minimal(**changes):
    cfg = {"members": [{"name": "a", "path": "members/a", "arch": "resnet10t", "weight": 1.0, "cv_auc": 0.9}],
           "files": {"members/a/model.safetensors": "x", "members/a/config.json": "y"}}
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("changes, message", [
    ({"labels": ["AS", "non-AS"]}, r"labels must be \['non-AS', 'AS'\]"),
    ({"members": []}, "'members' must be a non-empty list"),
    ({"members": [{"path": "members/a"}]}, "member entry .* is invalid"),
    ({"members": [{"name": "../x", "path": "members/a"}]}, "member name '../x' is not allowed"),
    ({"members": [{"name": "a", "path": "members/a", "weight": "heavy"}]}, "member entry .* is invalid"),
    ({"files": {"members/a/config.json": "y"}}, "members/a/model.safetensors is not listed in 'files'"),
    ({"input_gate": {"file": "gate.safetensors"}}, "input gate file 'gate.safetensors' is not listed"),
    ({"calibration": {"method": "isotonic"}}, "ValueError: calibration method must be one of"),
    ({"threshold": "high"}, "ValueError: could not convert"),
])
def test_repo_config_names_what_is_wrong_and_which_model(changes, message):
    with pytest.raises(ModelLoadError, match=message) as err:
        DiagnosisRepoConfig.from_json(_minimal(**changes), model_id="org/model", revision="v1")
    assert str(err.value).startswith("as_ai.json of 'org/model': ") and err.value.model_id == "org/model"


def test_repo_config_defaults_and_bad_preprocessing():
    repo = DiagnosisRepoConfig.from_json(_minimal(), model_id="m")
    assert repo.members == (MemberEntry("a", "members/a", "resnet10t", 1.0, 0.9),)
    assert repo.combine == "mean" and repo.threshold == 0.5 and repo.input_gate is None
    assert repo.calibration.method == "none" and repo.weights == {"a": 1.0} and repo.cv_aucs == {"a": 0.9}
    assert repo.to_json()["input_gate"] == {} and "files" not in repo.to_json()
    with pytest.raises(ModelLoadError, match="'preprocess' has unknown keys"):
        DiagnosisRepoConfig.from_json(_minimal(preprocess={"crop_size": 3}), model_id="m")


# --------------------------------------------------------------------------------------------- wording
def _diagnosis(label, p=0.734, threshold=0.5, reasons=()):
    check = InputCheck(in_distribution=label != "indeterminate", score=0.42, threshold=1.0, reasons=list(reasons))
    return Diagnosis(p, label, threshold, {"a": p, "b": p}, 0.0123, check, None, "demo@abc")


def test_the_finding_sentence_is_unchanged():
    assert _diagnosis("AS").finding == (
        "Findings suggest ankylosing spondylitis (radiographic sacroiliitis): model probability 0.73, at or above "
        "its threshold 0.50. Confirm with a radiologist or rheumatologist.")
    assert _diagnosis("non-AS", p=0.2).finding == (
        "No radiographic signs of ankylosing spondylitis found by the model: model probability 0.20, below its "
        "threshold 0.50. This does not rule out axial spondyloarthritis (early disease may not show on "
        "radiographs).")
    assert _diagnosis("indeterminate").finding == (
        "The model gives no finding for this image: the image does not look like the radiographs it was trained on.")
    assert _diagnosis("indeterminate", reasons=["too dark", "cropped"]).finding == (
        "The model gives no finding for this image: too dark; cropped.")
    assert _diagnosis("AS").to_dict()["finding"] == _diagnosis("AS").finding


def test_the_pieces_a_page_shows_are_plain_sentences():
    d = _diagnosis("AS")
    assert wording.headline(d) == "Suggests ankylosing spondylitis (radiographic sacroiliitis)"
    assert wording.headline(_diagnosis("non-AS", p=0.2)) == "No radiographic signs of ankylosing spondylitis found"
    assert wording.headline(_diagnosis("indeterminate")) == "No finding: the model abstained"
    assert wording.probability_sentence(d) == (
        "Calibrated probability of AS 73 % (0.734), at or above the model's decision threshold 0.500.")
    assert "below the model's" in wording.probability_sentence(_diagnosis("non-AS", p=0.2))
    assert wording.abstention_reasons(_diagnosis("indeterminate")) == [wording.NOT_LIKE_TRAINING]
    assert wording.abstention_reasons(_diagnosis("indeterminate", reasons=["too dark"])) == ["too dark"]
    assert wording.input_check_sentence(d) == "Input check: passed (score 0.42, limit 1.00)."
    assert wording.spread_sentence(d) == "Spread (standard deviation across members): 0.012."


def test_the_cautions_carry_the_models_own_figures():
    plain = wording.photo_caution()
    assert plain.startswith("This looks like a photo of a screen.") and "evaluation" not in plain
    figures = wording.photo_caution(clean_auc=0.9, phone_auc=0.7, phone_specificity=0.5, stretched=True)
    assert "AUC 0.70 on phone photos against 0.90" in figures and "only 50 % of photos without AS" in figures
    assert "contrast was stretched" in figures
    assert "from 0.20 to 0.40" in wording.softness_caution(sigma=1.5, before=0.2, after=0.4)
