"""The input contract: every entry point reads an image the same way, and no image is misread silently.

Phantoms from the external centres (B-D) through the bundled model: each export a user may bring (raw
12-bit arrays, float arrays, 8- and 16-bit PNG, DICOM MONOCHROME1 and with a VOI LUT, bytes, PIL, paths)
and each change a viewer or an export makes (gain, offset, gamma, 8-bit, a narrower window) moves P(AS)
by at most 0.05, or the image is refused with a named reason. Then: the same tensor reaches the network
from diagnose(), training's evaluation cache, Grad-CAM, LIME and NormLIME, blur and all; and nothing
outside ``as_ai/transforms.py`` resizes, crops or normalises for a model.
"""
from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _imaging_samples import dicom_bytes
from as_ai.diagnosis import Diagnoser
from as_ai.exposure import check_exposure
from as_ai.imaging import load_radiograph
from as_ai.synthetic import pelvis
from as_ai.transforms import model_grey, normalise, to_model_input

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.05
# seeds and grades of external-centre phantoms: two of each centre, AS and not
CASES = [(101, (0, 0), "B"), (102, (3, 2), "B"), (103, (1, 0), "C"), (104, (2, 3), "C"), (105, (0, 1), "D"),
         (106, (4, 3), "D")]


@pytest.fixture(scope="module")
def bundled() -> Diagnoser:
    """The bundled model as a user gets it: the whole image and both joints."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(ROOT / "as_ai" / "demo_models" / "diagnosis")


@pytest.fixture(scope="module")
def model() -> Diagnoser:
    """The bundled model's whole-image reading (joint reader detached): the contract of the model's own view.
    The joint reader's reading of the same entry points is pinned by
    :func:`test_every_entry_point_gives_the_same_joint_reading`."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(ROOT / "as_ai" / "demo_models" / "diagnosis").attach_joint_reader(None)


@pytest.fixture(scope="module")
def phantoms():
    """(stored uint16 values, bits stored, photometric of the centre) of each case, bone bright."""
    out = []
    for seed, grades, centre in CASES:
        ph = pelvis.render(seed, grades, center=centre, size=384)
        out.append((ph.image, int(ph.meta["bits_stored"]), ph.meta["photometric"]))
    return out


def _unit(stored: np.ndarray, bits: int) -> np.ndarray:
    return (stored.astype(np.float64) / (2 ** bits - 1)).astype(np.float32)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _probability_or_refusal(model: Diagnoser, src) -> tuple[float | None, list[str]]:
    d = model(src)
    issues = d.check.exposure.issues if d.check.exposure is not None else []
    if d.label == "indeterminate":
        assert d.check.reasons, "a refusal must say why"
        return None, issues
    return d.probability, issues


# ---------------------------------------------------------------------------------------- bit depth
def test_a_raw_12_bit_array_is_read_by_its_stored_bits_and_says_so():
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (64, 1))
    rg = load_radiograph(stored)
    np.testing.assert_allclose(rg.pixels, stored / 4095.0, atol=1e-6)
    assert rg.meta["bits_stored"] == 12 and rg.meta["bit_depth"] == 16
    assert any("read as 12-bit" in w and "bits_stored=" in w for w in rg.warnings)
    told = load_radiograph(stored, bits_stored=16)            # the caller's word wins, without a warning
    np.testing.assert_allclose(told.pixels, stored / 65535.0, atol=1e-6)
    assert told.meta["bits_stored"] == 16 and not told.warnings
    for container in (np.int16, np.int32, np.uint32):        # the same values in other integer containers
        np.testing.assert_array_equal(load_radiograph(stored.astype(container)).pixels, rg.pixels)
    png = load_radiograph(_png(stored))                       # a 16-bit PNG export of 12-bit data
    np.testing.assert_array_equal(png.pixels, rg.pixels)
    assert png.meta["bits_stored"] == 12


@pytest.mark.parametrize("top, bits", [(255, 8), (1023, 10), (4095, 12), (16383, 14), (16384, 16), (65535, 16)])
def test_the_inferred_depth_is_the_smallest_that_holds_the_maximum(top, bits):
    arr = np.linspace(0, top, 64 * 64).astype(np.uint16).reshape(64, 64)
    rg = load_radiograph(arr)
    assert rg.meta["bits_stored"] == bits and rg.pixels.max() == pytest.approx(top / (2 ** bits - 1))


def test_bits_stored_and_photometric_are_checked_and_applied():
    arr = np.linspace(0, 4095, 64 * 64).astype(np.uint16).reshape(64, 64)
    with pytest.raises(Exception, match="allows values up to 1023"):
        load_radiograph(arr, bits_stored=10)
    with pytest.raises(ValueError, match="bits_stored must be an integer from 1 to 16"):
        load_radiograph(arr, bits_stored=20)
    with pytest.raises(ValueError, match="photometric must be one of"):
        load_radiograph(arr, photometric="MONOCHROME3")
    with pytest.raises(ValueError, match="DICOM file's own"):
        load_radiograph(dicom_bytes(arr, bits_stored=12), photometric="MONOCHROME1")
    inverted = load_radiograph(arr, photometric="MONOCHROME1")
    np.testing.assert_allclose(inverted.pixels, 1.0 - arr / 4095.0, atol=1e-6)
    assert inverted.meta["photometric_interpretation"] == "MONOCHROME1"
    assert any("MONOCHROME1" in w for w in inverted.warnings)


# ---------------------------------------------------------------------------------------- entry points
def _entry_points(stored: np.ndarray, bits: int, photometric: str, tmp_path: Path) -> dict:
    unit = _unit(stored, bits)
    u8 = np.round(unit * 255).astype(np.uint8)
    maxv = 2 ** bits - 1
    path = tmp_path / "pelvis.png"
    path.write_bytes(_png(np.round(unit * 65535).astype(np.uint16)))
    mono1 = (maxv - stored).astype(np.uint16)
    return {
        "float32 [0, 1]": unit,
        "float64 [0, 1]": unit.astype(np.float64),
        "uint8 array": u8,
        "raw uint16 (pydicom pixel_array)": stored,
        "raw int16 (a signed pixel_array)": stored.astype(np.int16),
        "16-bit PNG bytes": path.read_bytes(),
        "binary file object": io.BytesIO(path.read_bytes()),
        "raw uint16, bits_stored given": load_radiograph(stored, bits_stored=bits),
        "raw MONOCHROME1 array, photometric given": load_radiograph(mono1, photometric="MONOCHROME1"),
        "8-bit PNG bytes": _png(u8),
        "16-bit PNG path": path,
        "PIL 8-bit": Image.fromarray(u8),
        "DICOM MONOCHROME1": dicom_bytes(mono1, photometric="MONOCHROME1", bits_stored=bits),
        "DICOM with a window": dicom_bytes(stored, bits_stored=bits, window=(maxv / 2, maxv)),
        "DICOM with a VOI LUT": _dicom_with_voi_lut(stored, bits),
    }


def _dicom_with_voi_lut(stored: np.ndarray, bits: int) -> bytes:
    """A DICOM whose VOI LUT Sequence maps the stored values through a gentle curve (gamma 0.8, 12-bit out)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(stored, bits_stored=bits)))
    n = 2 ** bits
    item = Dataset()
    item.LUTDescriptor = [n, 0, 16]
    lut = np.round(65535 * (np.arange(n) / (n - 1)) ** 0.8).astype("<u2")
    item.add_new(0x00283006, "OW", lut.tobytes())  # LUT Data
    ds.VOILUTSequence = Sequence([item])
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_every_entry_point_gives_the_same_reading(model, phantoms, tmp_path):
    for k, (stored, bits, photometric) in enumerate(phantoms):
        entries = _entry_points(stored, bits, photometric, tmp_path)
        base, _ = _probability_or_refusal(model, entries.pop("float32 [0, 1]"))
        assert base is not None, f"case {k}: a clean external phantom must be read"
        for name, src in entries.items():
            p, issues = _probability_or_refusal(model, src)
            assert p is not None, f"case {k}, {name}: refused ({issues})"
            assert abs(p - base) <= TOLERANCE, f"case {k}, {name}: P(AS) {p:.3f} against {base:.3f}"


def test_every_entry_point_gives_the_same_joint_reading(bundled, phantoms, tmp_path):
    """Both joints read alike from every export: P(mNY) within the tolerance, each grade within one, and a joint
    found from one entry point found from all (unless its localiser confidence lies within 0.05 of the
    threshold, where an 8-bit rounding may tip it)."""
    reader = bundled.joint_reader
    assert reader is not None, "the bundled diagnosis model names a joint reader"
    for k, (stored, bits, photometric) in enumerate(phantoms):
        entries = _entry_points(stored, bits, photometric, tmp_path)
        base = reader(entries.pop("float32 [0, 1]"))
        for name, src in entries.items():
            r = reader(src)
            assert abs(r.mny_probability - base.mny_probability) <= TOLERANCE, f"case {k}, {name}: P(mNY)"
            for a, b in zip(r.sides, base.sides):
                assert abs(a.grade - b.grade) <= 1, f"case {k}, {name}, {a.side}: grade {a.grade} vs {b.grade}"
                if abs(b.confidence - reader.min_confidence) > 0.05:
                    assert a.found == b.found, f"case {k}, {name}, {a.side}: found {a.found} vs {b.found}"


def test_a_raw_12_bit_array_no_longer_reads_as_a_confident_non_as(bundled, phantoms):
    """The round-1 fault: 0-4095 divided by 65535 read every AS phantom as non-AS, with no warning."""
    as_cases = [(s, b) for (s, b, _), (_, grades, _) in zip(phantoms, CASES) if max(grades) >= 3]
    for stored, bits in as_cases:
        d = bundled(stored)
        assert d.label == "AS" and d.image["bits_stored"] == bits
        assert any("bits stored inferred" in r for r in d.check.reasons)


# ---------------------------------------------------------------------------------------- exports and viewers
TRANSFORMS = {
    "gain x0.25": lambda x: x * 0.25,
    "gain x4 (unclipped float)": lambda x: x * 4.0,
    "offset -0.2": lambda x: np.clip(x - 0.2, 0, 1),
    "offset +0.2 (unclipped float)": lambda x: x + 0.2,
    "gamma 0.7": lambda x: x ** 0.7,
    "gamma 1.4": lambda x: x ** 1.4,
    "8-bit": lambda x: np.round(x * 255) / 255,
    "window 2nd-98th percentile": lambda x: np.clip((x - np.percentile(x, 2)) / (np.percentile(x, 98) - np.percentile(x, 2)), 0, 1),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_what_an_export_or_viewer_changes_moves_the_reading_little(model, phantoms, name):
    for k, (stored, bits, _) in enumerate(phantoms):
        unit = _unit(stored, bits)
        base, _ = _probability_or_refusal(model, unit)
        p, issues = _probability_or_refusal(model, np.asarray(TRANSFORMS[name](unit), np.float32))
        if p is None:  # allowed, when the fault is named
            assert issues, f"case {k}: refused without a named exposure fault"
            continue
        assert abs(p - base) <= TOLERANCE, f"case {k}: P(AS) {p:.3f} against {base:.3f}"


@pytest.mark.parametrize("name, change, issue", [
    ("inverted", lambda x: 1.0 - x, "inverted"),
    ("clipped white by a gain of 2", lambda x: np.clip(2 * x, 0, 1), "saturated"),
    ("clipped white by an offset of +0.2", lambda x: np.clip(x + 0.2, 0, 1), "saturated"),
    ("nearly constant", lambda x: 0.5 + 0.005 * x, "near_constant"),
    ("a far too dark processing curve", lambda x: x ** 12.0, "intensity_out_of_range"),
    ("a window that clips the joints white", lambda x: np.clip(x / np.percentile(x, 90), 0, 1), "saturated"),
])
def test_what_the_model_cannot_read_is_refused_by_name(model, phantoms, name, change, issue):
    for k, (stored, bits, _) in enumerate(phantoms):
        d = model(np.asarray(change(_unit(stored, bits)), np.float32))
        assert d.label == "indeterminate", f"case {k}: {name} was read (P(AS) {d.probability:.2f})"
        assert issue in d.check.exposure.issues
        assert d.check.reasons[0] == d.check.exposure.advice[d.check.exposure.issues.index(issue)] or \
            d.check.exposure.advice[0] in d.check.reasons
        assert "indeterminate" not in d.finding and "no finding" in d.finding


def test_clean_phantoms_raise_no_exposure_issue(phantoms):
    from as_ai.transforms import Preprocess
    import json

    pp = Preprocess.from_dict(json.loads((ROOT / "as_ai/demo_models/diagnosis/as_ai.json").read_text())["preprocess"])
    for stored, bits, _ in phantoms:
        rg = load_radiograph(_unit(stored, bits))
        assert check_exposure(rg.work_view, pixels=rg.pixels, preprocess=pp).issues == []


# ---------------------------------------------------------------------------------------- one view, every path
@pytest.fixture()
def blurred_model(model):
    """The bundled model reading with an input blur too: every path must then blur alike."""
    m = Diagnoser.from_pretrained(ROOT / "as_ai" / "demo_models" / "diagnosis")
    m.set_preprocess(dataclasses.replace(model.preprocess, blur_sigma=0.8))
    assert m.preprocess.intensity == "window_gamma"
    return m


def test_diagnose_training_and_every_explanation_feed_the_network_one_tensor(blurred_model, phantoms, tmp_path):
    from as_ai import explain as ex
    from train.config import TrainConfig
    from train.data import read_split

    m = blurred_model
    size = m.preprocess.crop
    unit = _unit(*phantoms[1][:2])
    png = tmp_path / "split" / "000000.png"
    png.parent.mkdir()
    png.write_bytes(_png(np.round(unit * 65535).astype(np.uint16)))
    (png.parent / "metadata.csv").write_text("file_name,label\n000000.png,AS\n", encoding="utf-8")
    rg = load_radiograph(png)

    inference = m.model_input([rg])[size][0]
    torch.testing.assert_close(inference, to_model_input([rg], m.preprocess)[0])
    training = read_split(png.parent, TrainConfig(), m.preprocess, [size], train_size=False,
                          view=lambda r: m.model_views([r])[0]).eval[size][0]
    torch.testing.assert_close(normalise(training.float(), m.preprocess), inference, atol=2e-3, rtol=0)  # float16 cache
    lime_view = ex.lime_setup(m, rg, n_segments=40).view
    torch.testing.assert_close(normalise(torch.from_numpy(lime_view)[None], m.preprocess), inference)
    torch.testing.assert_close(model_grey(rg, m.preprocess)[0], torch.from_numpy(lime_view))

    p = float(m.predict_proba([rg])[0])
    assert ex.gradcam(m, rg).probability == pytest.approx(p, abs=1e-6)
    assert ex.lime(m, rg, num_samples=10, n_segments=40).probability == pytest.approx(p, abs=1e-5)
    feats = ex.superpixel_features(m, lime_view, ex.lime_setup(m, rg, n_segments=40).segments)
    assert np.isfinite(feats).all()


def test_the_view_with_blur_differs_from_the_view_without(model, blurred_model, phantoms):
    rg = load_radiograph(_unit(*phantoms[0][:2]))
    sharp, soft = model.model_input([rg]), blurred_model.model_input([rg])
    assert not torch.allclose(sharp[224], soft[224], atol=1e-3)  # so the equality above means something


# ---------------------------------------------------------------------------------------- one module
ALLOWED = {  # file -> the one kind of line it may have, and why
    "as_ai/transforms.py": "the model's view itself",
    "as_ai/_photo.py": "the photo check's own shrunk work view (not a model input)",
    "train/views.py": "the centred training geometry's crop, followed by as_ai.transforms.view_tail",
}
PATTERN = re.compile(r"(\bF\.resize|\bTF\.resize|center_crop|CenterCrop|Normalize\(|\.std\)\.view|- mean\) / std|"
                     r"expand\(-1, 3|expand\(3, )")


def test_nothing_outside_the_one_module_resizes_crops_or_normalises_for_a_model():
    offenders = []
    for path in sorted([*ROOT.glob("as_ai/**/*.py"), *ROOT.glob("train/**/*.py"), *ROOT.glob("space/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        hits = [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if PATTERN.search(line)]
        if rel == "train/views.py":  # its one centre crop of the centred geometry, nothing else
            assert len(hits) == 1 and "v2.CenterCrop(pp.crop)" in hits[0], hits
        elif rel not in ALLOWED:
            offenders += hits
    assert not offenders, "model-input transforms outside as_ai/transforms.py:\n" + "\n".join(offenders)
