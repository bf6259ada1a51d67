"""The Space's handlers, called directly: what each tab shows for real inputs and real models.

The app (space/app.py) is loaded as a module over the models the Space serves by default (the bundled
demo models, or AS_AI_DIAGNOSIS_MODEL / AS_AI_TRIAGE_MODEL), and its results are compared with the
library's own answers for the same inputs: the Space must show the library's numbers, not its own.
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from as_ai.diagnosis import Diagnosis  # noqa: E402
from as_ai.errors import SyntheticModelWarning  # noqa: E402
from as_ai.quality import InputCheck, PhotoCheck  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_space_app():
    """Import space/app.py once per process as the module ``as_ai_space_app``."""
    name = "as_ai_space_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "space" / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def app():
    return load_space_app()


@pytest.fixture(scope="module")
def models(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        warnings.simplefilter("ignore", UserWarning)
        return app.load_models()


@pytest.fixture(scope="module")
def handlers(app, models):
    return app.Handlers(models)


@pytest.fixture(scope="module")
def examples(app, tmp_path_factory):
    radiographs, photos = app.make_examples(tmp_path_factory.mktemp("space_examples"))
    return radiographs, photos


def valid_patient(models) -> dict:
    """Mid-range values for the required fields; imputable fields left unknown (None)."""
    patient = {}
    for f in models.triager.schema.features:
        if f.imputable:
            patient[f.name] = None
        elif f.type == "bool":
            patient[f.name] = "yes"
        elif f.type == "int":
            patient[f.name] = float(round((f.min + f.max) / 2))
        else:
            patient[f.name] = (f.min + f.max) / 2
    return patient


# ------------------------------------------------------------------------------------------ radiograph
def test_radiograph_tab_shows_the_library_result(handlers, models, examples):
    path = examples[0][0]
    finding, members, check, heat, result, to_triage = handlers.diagnose(path, "Grad-CAM (fast)", progress=None)
    expected = models.diagnoser(path)
    assert result["probability"] == pytest.approx(expected.probability, abs=1e-6)
    assert result["label"] == expected.label and result["model"] == expected.model
    if expected.label == "indeterminate":
        assert "abstained" in finding
    else:
        assert f"{100 * expected.probability:.0f} %" in finding
        assert f"{expected.threshold:.3f}" in finding
        for name, p in expected.members.items():
            row = f"| {name} | {p:.3f} |" if name != "joints" else f"from both sides | {p:.3f} |"
            assert row in members
        assert f"{expected.spread:.3f}" in members
    assert check.startswith("**Input check:**")
    assert to_triage["visible"] == (expected.label == "AS")
    if models.explain_available and expected.label != "indeterminate":
        img = heat["value"]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert max(img.shape[:2]) <= 768
        assert "Grad-CAM" in heat["label"]
        assert result["explanation"]["method"] == "gradcam"


def test_both_joints_are_graded_and_drawn(handlers, models, examples):
    """The bundled model reads the joints: their grades are listed and their boxes drawn on the picture."""
    path = examples[0][0]
    expected = models.diagnoser(path)
    assert expected.sides is not None, "the bundled diagnosis model names a joint reader"
    _, members, _, heat, result, _ = handlers.diagnose(path, "None", progress=None)
    assert set(result["sides"]["sides"]) == {"left", "right"}
    if expected.label != "indeterminate":
        for s in expected.sides.sides:
            want = f"| {s.side} | {s.grade} ({100 * s.probabilities[s.grade]:.0f} %) | {s.confidence:.2f} |" \
                if s.found else f"| {s.side} | not found |"
            assert want in members
    img = heat["value"]
    assert img is not None and img.dtype == np.uint8 and img.ndim == 3
    assert "joint" in heat["label"]
    from as_ai.plots import GRADE_COLOURS

    colours = {GRADE_COLOURS[s.grade] for s in expected.sides.sides if s.found}
    flat = img.reshape(-1, 3)
    for c in colours:   # each found joint's box is outlined in its grade's colour
        assert (np.abs(flat.astype(int) - np.array(c)).sum(1) == 0).any()
    if models.explain_available and expected.label != "indeterminate":
        cam = handlers.diagnose(path, "Grad-CAM (fast)", progress=None)[3]
        assert "Grad-CAM" in cam["label"] and "joint boxes" in cam["label"]


def test_triage_button_follows_the_finding(handlers, examples):
    labels = set()
    for path in examples[0]:
        *_, result, to_triage = handlers.diagnose(path, "None", progress=None)
        assert to_triage["visible"] == (result["label"] == "AS")
        labels.add(result["label"])
    assert labels <= {"AS", "non-AS", "indeterminate"}


def test_dicom_file_is_read(handlers, models, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from _imaging_samples import dicom_bytes
    finally:
        sys.path.pop(0)
    from as_ai.synthetic import pelvis

    ph = pelvis.sample(5, size=256)
    path = tmp_path / "pelvis.dcm"
    path.write_bytes(dicom_bytes(ph.image, bits_stored=int(ph.meta["bits_stored"])))
    *_, result, _ = handlers.diagnose(str(path), "None", progress=None)
    assert result["probability"] == pytest.approx(models.diagnoser(str(path)).probability, abs=1e-6)


@pytest.mark.parametrize("content, title, words", [
    (b"patient notes, not an image\n", "Cannot read this image", ("PNG", "DICOM")),
    (b"", "Cannot read this image", ("empty",)),
])
def test_unreadable_upload_gives_a_readable_error(handlers, tmp_path, content, title, words):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error) as info:
        handlers.diagnose(str(path), "None", progress=None)
    assert info.value.title == title
    message = info.value.message
    assert all(w.lower() in message.lower() for w in words), message
    assert "Traceback" not in message and "File \"" not in message


def test_missing_upload_asks_for_one(handlers):
    with pytest.raises(gr.Error, match="Upload a radiograph"):
        handlers.diagnose(None, "None", progress=None)
    with pytest.raises(gr.Error, match="Take a photo"):
        handlers.diagnose_photo(None, "None", progress=None)


def test_unknown_heatmap_choice_is_refused(handlers, examples):
    with pytest.raises(gr.Error, match="Unknown heatmap choice"):
        handlers.diagnose(examples[0][0], "magic", progress=None)


def test_non_radiograph_gets_no_finding(handlers, models, tmp_path):
    if models.diagnoser.gate is None:
        pytest.skip("the loaded diagnosis model has no input gate, so it cannot abstain")
    from PIL import Image

    noise = (np.random.default_rng(0).random((400, 400)) * 255).astype(np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    finding, members, check, heat, result, to_triage = handlers.diagnose(str(path), "Grad-CAM (fast)",
                                                                          progress=None)
    assert result["label"] == "indeterminate"
    assert "abstained" in finding and "Calibrated probability" not in finding
    assert members == "" and heat["value"] is None and not to_triage["visible"]


# -------------------------------------------------------------------------------------- finding wording
def _diagnosis(label: str, p: float, reasons=()):
    return Diagnosis(probability=p, label=label, threshold=0.42, members={"a": p, "b": p}, spread=0.0,
                     check=InputCheck(in_distribution=label != "indeterminate", reasons=list(reasons)),
                     explanation=None, model="test@0")


@pytest.mark.parametrize("label, p, must, must_not", [
    ("AS", 0.87, ("Suggests ankylosing spondylitis", "87 %", "0.420", "at or above"), ("diagnosed",)),
    ("non-AS", 0.12, ("No radiographic signs", "12 %", "0.420", "below", "does not rule out"), ("diagnosed",)),
    ("indeterminate", 0.7, ("abstained", "lateral view"), ("Calibrated probability", "70 %")),
])
def test_finding_wording(app, label, p, must, must_not):
    text = app.finding_text(_diagnosis(label, p, reasons=["looks like a lateral view"]))
    for m in must:
        assert m in text, (m, text)
    for m in must_not:
        assert m not in text, (m, text)


def test_photo_advice_is_listed_once(app):
    advice = ["Retake without the ceiling light reflecting on the screen."]
    d = Diagnosis(probability=0.3, label="non-AS", threshold=0.5, members={"a": 0.3}, spread=0.0,
                  check=InputCheck(reasons=list(advice) + ["members disagree"],
                                   photo=PhotoCheck(is_photo=True, score=0.4, issues=["glare"], advice=advice)),
                  model="test@0")
    text = app.check_text(d, photo=True)
    assert text.count("ceiling light") == 1 and "members disagree" in text and "Photo quality" in text
    clean = Diagnosis(probability=0.3, label="non-AS", threshold=0.5, members={"a": 0.3}, spread=0.0,
                      check=InputCheck(photo=PhotoCheck(is_photo=True, score=0.9)), model="test@0")
    assert "no problems found" in app.check_text(clean, photo=True)


def test_camera_tab_on_a_phone_photo(handlers, models, examples):
    photos = examples[1]
    assert photos, "the phone-photo example was not generated"
    finding, members, check, heat, result, _ = handlers.diagnose_photo(photos[0], "None", progress=None)
    assert result["probability"] == pytest.approx(models.diagnoser(photos[0]).probability, abs=1e-6)
    assert "Photo quality" in check
    for advice in result["check"]["photo"]["advice"]:
        assert advice.replace("'", "&#x27;") in check


def test_camera_tab_heatmap_of_a_model_that_rectifies_photos(app, models, tmp_path):
    """A model whose repo says ``photo_input.rectify`` reads the radiograph cut out of the photo; its heatmap
    lies on that grid and the page draws it there (not over the photo, whose shape differs)."""
    import json
    import shutil

    from PIL import Image

    from as_ai.diagnoser import Diagnoser
    from as_ai.hub import DEMO_DIR
    from as_ai.synthetic import pelvis, phone

    repo = tmp_path / "model"
    shutil.copytree(DEMO_DIR / "diagnosis", repo)
    cfg = json.loads((repo / "as_ai.json").read_text())
    cfg["photo_input"]["rectify"] = True
    (repo / "as_ai.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        rectifying = app.Models(diagnoser=Diagnoser.from_pretrained(repo), triager=models.triager,
                                explain_available=True)
    path = tmp_path / "photo.jpg"
    Image.fromarray(phone.photograph(pelvis.sample(26).image, level=1, seed=26)).save(path, quality=92)
    h = app.Handlers(rectifying, workdir=tmp_path)
    finding, members, check, heat, result, _ = h.diagnose_photo(str(path), "Grad-CAM (fast)", progress=None)
    assert heat["value"] is not None and "cut out of the photo" in heat["label"]
    assert heat["value"].shape[:2] != (512, 512)


# ------------------------------------------------------------------------------------------ heatmaps
def test_overlay_colours_where_the_heatmap_is(app):
    img = np.full((100, 200), 0.5, np.float32)
    hm = np.zeros_like(img)
    hm[40:60, 20:40] = 1.0
    out = app.overlay(img, hm)
    assert out.shape == (100, 200, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (128, 128, 128)            # no heat: the radiograph unchanged
    r, g, b = out[50, 30].astype(int)
    assert r > 200 and b < 80                              # strong heat: red
    signed = app.overlay(img, -hm, signed=True)
    r, g, b = signed[50, 30].astype(int)
    assert b > r + 100                                     # lowers P(AS): blue
    big = app.overlay(np.zeros((2000, 1000), np.float32), np.zeros((2000, 1000), np.float32))
    assert big.shape == (768, 384, 3)


# --------------------------------------------------------------------------------------------- triage
def test_triage_tab_shows_the_library_result(app, handlers, models):
    patient = valid_patient(models)
    scores, risk, plot_file, result = handlers.triage(patient)
    expected = models.triager(patient)
    with open(plot_file, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert handlers.triage(patient)[2] == plot_file          # drawn once per pair of groups, then reused
    assert result == expected.to_dict()
    assert f"**{expected.basfi:.1f}**" in scores and f"**{expected.basdai:.1f}**" in scores
    lo, hi = expected.intervals["basfi"]
    assert f"{lo:.1f} – {hi:.1f}" in scores
    assert f"{expected.cutoffs['basfi']:.2f}" in scores
    labels = {f.name: f.label for f in models.triager.schema.features}
    for name in expected.imputed:
        assert labels[name] in scores
    assert ("Higher risk" in risk) == (expected.risk == "high")
    # the plot: both scores, every group's curve, the patient's group drawn boldest
    axes = app.risk_plot(expected).get_axes()
    assert len(axes) == 2
    for ax, key in zip(axes, ("basfi", "basdai")):
        lines = {ln.get_gid(): ln for ln in ax.get_lines()}
        mine = f"{key}-{expected.groups[key]}-patient"
        assert mine in lines, sorted(lines)
        assert lines[mine].get_linewidth() == max(ln.get_linewidth() for ln in lines.values())
        assert len(lines) == len([g for g, c in expected.curves[key].items() if isinstance(c, dict)])


@pytest.mark.parametrize("change", ["above_max", "below_min", "not_a_number", "bad_bool"])
def test_triage_bad_input_names_the_field(handlers, models, change):
    patient = valid_patient(models)
    feats = models.triager.schema.features
    num = next(f for f in feats if f.type != "bool")
    boolean = next((f for f in feats if f.type == "bool"), None)
    if change == "above_max":
        target, patient[num.name] = num, num.max + 100
    elif change == "below_min":
        target, patient[num.name] = num, num.min - 100
    elif change == "not_a_number":
        target, patient[num.name] = num, "forty"
    else:
        if boolean is None:
            pytest.skip("the triage model has no yes/no field")
        target, patient[boolean.name] = boolean, "maybe"
    with pytest.raises(gr.Error) as info:
        handlers.triage(patient)
    assert info.value.title == "Check the patient data"
    assert target.label in info.value.message and target.name in info.value.message
    assert "Traceback" not in info.value.message


def test_triage_inputs_follow_the_schema(app, models):
    comps = app.feature_inputs(models.triager)
    feats = models.triager.schema.features
    assert [n for n, _ in comps] == [f.name for f in feats]
    for (name, comp), f in zip(comps, feats):
        if f.type == "bool":
            assert isinstance(comp, gr.Radio)
            assert [c[0] for c in comp.choices] == ["yes", "no"]
            assert comp.value is None
        else:  # a text box, so that empty means unknown (Gradio's number box shows 0 when empty)
            assert isinstance(comp, gr.Textbox)
            assert f.label in comp.label and (not f.unit or f.unit in comp.label)
            assert f.describe() in comp.info
            assert comp.value == "" and comp.placeholder == ("unknown" if f.imputable else "required")
        assert ("leave empty if unknown" in comp.info) == f.imputable


@pytest.mark.parametrize("raw, parsed", [
    (None, None), ("", None), ("   ", None), ("12.5", 12.5), ("12,5", 12.5), (" 41 ", 41.0), (7, 7),
    ("forty", "forty"),
])
def test_form_values_are_parsed_for_the_library(app, raw, parsed):
    assert app.parse_value(raw) == parsed


# ---------------------------------------------------------------------------------------- page & about
def test_page_has_named_endpoints_notice_and_about(app, models, tmp_path):
    demo = app.build_app(models, examples_dir=tmp_path)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert {"/diagnose", "/triage"} <= set(endpoints)
    params = [p["parameter_name"] for p in endpoints["/triage"]["parameters"]]
    assert params == models.triager.schema.names
    assert [p["parameter_name"] for p in endpoints["/diagnose"]["parameters"]] == ["radiograph", "explain"]
    # the research-use notice sits above the tabs, so every tab shows it
    config = demo.get_config_file()
    by_id = {c["id"]: c for c in config["components"]}
    notice = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "notice")
    assert "Research use only" in notice["props"]["value"]

    def parents(node, target, path=()):
        if node["id"] == target:
            return path
        for child in node.get("children", []):
            found = parents(child, target, path + (by_id.get(node["id"], {}).get("type"),))
            if found is not None:
                return found
        return None

    assert "tabitem" not in parents(config["layout"], notice["id"])
    about = app.about_markdown(models)
    for m in (models.diagnoser, models.triager):
        assert m.resolved.provenance in about and str(m.resolved.revision) in about
    assert "Frontiers in Public Health" in about and "2023" in about
    if models.synthetic:
        assert "synthetic" in app.notice(models).lower()
    for path in list(tmp_path.iterdir()):
        path.unlink()


def test_lime_heatmap_on_request_with_progress_and_time_left(handlers, models, examples):
    if not models.explain_available:
        pytest.skip("as_ai.explain is not installed")
    calls = []

    def progress(value, desc=None, total=None, unit="steps"):
        calls.append((value, desc))

    finding, members, check, heat, result, _ = handlers.diagnose(examples[0][0], "LIME (slower)", progress=progress)
    if result["label"] == "indeterminate":
        pytest.skip("the model abstained on this phantom")
    assert result["explanation"]["method"] == "lime"
    assert heat["label"].startswith("LIME") and heat["value"].dtype == np.uint8
    steps = [v for v, _ in calls[1:]]
    assert calls[0][0] == 0 and len(steps) >= 2
    assert [d for d, _ in steps] == sorted(d for d, _ in steps) and all(p == 1000 for _, p in steps)
    assert steps[-1][0] == result["explanation"]["params"]["num_samples"] < 1000   # stopped once stable
    assert all("s left" in desc for _, desc in calls[1:])
