"""Fuzzing the two input boundaries: ``load_radiograph`` and ``triage``.

Property: whatever comes in, the library either returns a well-formed result or raises its own
``InvalidImageError`` / ``InvalidPatientError``; any other exception, or an input that takes longer
than the per-example deadline, fails. Seeds are small valid PNG / JPEG / DICOM files written here in
memory (Pillow, pydicom) and then mutated (bit flips, inserts, deletes, overwrites, truncation).

The default run is derandomised (same examples every time, no example database) and small; the
``slow`` variants run the same properties on more than 10,000 cases in total.
"""
from __future__ import annotations

import io
import math
import warnings
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import as_ai
from as_ai.errors import InvalidImageError, InvalidPatientError

DEADLINE = timedelta(seconds=2)


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=DEADLINE, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------------ image seeds
def _grey(h: int = 72, w: int = 80) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 3 + y * 2) % 256
    img[(y - h // 2) ** 2 + (x - w // 3) ** 2 < 200] = 250
    return img.astype(np.uint8)


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _dicom(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", preamble: bool = True) -> bytes:
    """A small DICOM file (Explicit VR Little Endian) with fixed UIDs, so the seed bytes never change."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Doe^Jane"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = 12 if pixels.dtype == np.uint16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=preamble)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    g = _grey()
    g16 = (g.astype(np.uint16) * 16)
    rgba = Image.fromarray(np.dstack([g, g[::-1], g[:, ::-1], np.full_like(g, 200)]), "RGBA")
    return {
        "png8": _pil_bytes(Image.fromarray(g), "PNG"),
        "png16": _pil_bytes(Image.fromarray(g16.astype(np.uint16) * 16), "PNG"),
        "png_rgba": _pil_bytes(rgba, "PNG"),
        "jpeg_grey": _pil_bytes(Image.fromarray(g), "JPEG", quality=80),
        "jpeg_rgb_progressive": _pil_bytes(rgba.convert("RGB"), "JPEG", quality=70, progressive=True),
        "dicom_u16": _dicom(g16),
        "dicom_u8_mono1_no_preamble": _dicom(g, photometric="MONOCHROME1", preamble=False),
    }


SEEDS = _seeds()


def test_seeds_are_valid_images():
    """The fuzzer starts from files the loader reads; otherwise every mutation would be a trivial refusal."""
    for name, data in SEEDS.items():
        rg = as_ai.load_radiograph(data)
        assert rg.shape == (72, 80), name


# ------------------------------------------------------------------------------------------ mutations
_OPS = st.tuples(
    st.sampled_from(["flip", "flip_head", "insert", "delete", "overwrite", "truncate", "duplicate"]),
    st.integers(0, 2**31), st.integers(0, 7), st.binary(min_size=1, max_size=16))


def _mutate(data: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, bit, chunk in ops:
        if not buf:
            buf.extend(chunk)
            continue
        i = pos % (min(len(buf), 400) if op == "flip_head" else len(buf))
        if op in ("flip", "flip_head"):
            buf[i] ^= 1 << bit
        elif op == "insert":
            buf[i:i] = chunk
        elif op == "delete":
            del buf[i:i + 1 + bit * 8]
        elif op == "overwrite":
            buf[i:i + len(chunk)] = chunk
        elif op == "truncate":
            del buf[i:]
        elif op == "duplicate":
            buf[i:i] = buf[i:i + 1 + bit * 16]
    return bytes(buf)


def _check_image(src, **kwargs) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rg = as_ai.load_radiograph(src, **kwargs)
    except InvalidImageError as exc:
        assert exc.reason and str(exc)
        event(f"refused: {exc.reason}")
        return
    event("loaded")
    px = rg.pixels
    assert px.dtype == np.float32 and px.ndim == 2 and px.size > 0
    assert np.isfinite(px).all() and px.min() >= 0.0 and px.max() <= 1.0


def _fuzz_bytes(seed: str, ops, min_size: int) -> None:
    _check_image(_mutate(SEEDS[seed], ops), min_size=min_size)


_BYTES_ARGS = dict(seed=st.sampled_from(sorted(SEEDS)), ops=st.lists(_OPS, min_size=1, max_size=6),
                   min_size=st.sampled_from([1, 64]))
test_fuzz_mutated_image_bytes = _settings(200)(given(**_BYTES_ARGS)(_fuzz_bytes))
test_fuzz_mutated_image_bytes_slow = pytest.mark.slow(_settings(5000)(given(**_BYTES_ARGS)(_fuzz_bytes)))


# ------------------------------------------------------------------------------------------ arrays
_DTYPES = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
    hnp.complex_number_dtypes(), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4))
_SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    st.tuples(st.integers(0, 80), st.integers(0, 80)),
    st.tuples(st.integers(60, 80), st.integers(60, 80), st.integers(1, 5)),
    st.tuples(st.integers(1, 3), st.integers(60, 70), st.integers(60, 70), st.integers(1, 4)))


@st.composite
def _any_array(draw) -> np.ndarray:
    shape = draw(_SHAPES)
    if draw(st.integers(0, 9)) == 0:  # object arrays: anything in the cells
        cells = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3),
                          st.complex_numbers())
        return draw(hnp.arrays(object, shape, elements=cells))
    if draw(st.booleans()):  # plausible images (finite numbers) to exercise the paths that load
        dtype = draw(st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                               hnp.boolean_dtypes()))
        shape = draw(st.one_of(st.tuples(st.integers(60, 80), st.integers(60, 80)),
                               st.tuples(st.integers(60, 80), st.integers(60, 80), st.sampled_from([1, 3, 4]))))
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False) if dtype.kind == "f" else None
        arr = draw(hnp.arrays(dtype, shape, elements=elements, fill=elements, unique=False))
    else:  # anything: floats include NaN, ±inf, subnormals, extremes
        arr = draw(hnp.arrays(draw(_DTYPES), shape))
    if draw(st.booleans()) and arr.ndim >= 2:  # non-contiguous and negative-stride views too
        arr = arr[::-1, ::2] if draw(st.booleans()) else arr.swapaxes(0, 1)
    return arr


def _fuzz_array(arr: np.ndarray, min_size: int) -> None:
    _check_image(arr, min_size=min_size)


_ARRAY_ARGS = dict(arr=_any_array(), min_size=st.sampled_from([1, 64]))
test_fuzz_arrays = _settings(150)(given(**_ARRAY_ARGS)(_fuzz_array))
test_fuzz_arrays_slow = pytest.mark.slow(_settings(3000)(given(**_ARRAY_ARGS)(_fuzz_array)))


def test_array_edge_cases_named():
    """The arrays named in the issue, once each, so they are covered even if the fuzzer's draws drift."""
    cases = [np.array(0.5), np.zeros(100), np.zeros((2, 70, 70, 1)), np.ones((70, 70), bool),
             np.full((70, 70), 1 + 2j), np.full((70, 70), None, object), np.full((70, 70), np.nan),
             np.full((70, 70), np.inf, np.float32), np.zeros((0, 70)), np.zeros((70, 70), "datetime64[s]")]
    for arr in cases:
        with pytest.raises(InvalidImageError):
            as_ai.load_radiograph(arr)


# ------------------------------------------------------------------------------------------ triage
VALID_PATIENT = {
    "disease_duration": 12.0, "age_at_onset": 25.0, "crp": 8.0, "basmi": 3.0, "msasss": 10,
    "chest_expansion": 4.0, "hip_involvement": False, "peripheral_arthritis": True, "enthesitis": False,
    "bmi": 24.0, "tnf_inhibitor": True, "age": 37, "male": True,
}
KNOWN_FIELDS = sorted(set(VALID_PATIENT) | {"hla_b27", "esr", "uveitis", "smoking"})

_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**2000, 2**2000), st.floats(),
    st.floats(min_value=0, max_value=80), st.integers(0, 80), st.text(max_size=8),
    st.sampled_from(["yes", "no", "1", "0", " True ", "nan", "inf", "", "1e400", "12"]),
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(10**400), st.just(-10**5000), st.just(1e308),
    st.builds(np.float64, st.floats()), st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-2**63, 2**63 - 1)), st.builds(np.bool_, st.booleans()),
    st.builds(Decimal, st.sampled_from(["1.5", "NaN", "Infinity", "1e500", "-0"])),
    st.builds(Fraction, st.integers(-10**400, 10**400), st.integers(1, 10)), st.complex_numbers(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.binary(max_size=4), st.just(np.array([1.0])))
_KEYS = st.one_of(st.sampled_from(KNOWN_FIELDS), st.text(max_size=12), st.integers(), st.none())


@st.composite
def _patient(draw) -> dict:
    if draw(st.integers(0, 3)) > 0:  # start from a valid patient so many cases reach the models, not only validation
        patient = dict(VALID_PATIENT)
        for key in draw(st.lists(st.sampled_from(KNOWN_FIELDS), max_size=4)):
            patient[key] = draw(_VALUES)
        for key in draw(st.lists(st.sampled_from(KNOWN_FIELDS), max_size=2)):
            patient.pop(key, None)
    else:
        patient = {}
    if not patient or draw(st.booleans()):
        patient.update(draw(st.dictionaries(_KEYS, _VALUES, max_size=6 if patient else 16)))
    return patient


@pytest.fixture(scope="module")
def warm_triage():
    """Load the demo triage model once, outside the per-example deadline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_ai.triage(VALID_PATIENT)


def _fuzz_triage(warm_triage, patient: dict) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = as_ai.triage(patient)
    except InvalidPatientError as exc:
        assert str(exc)
        event("refused")
        return
    event("triaged")
    for score in (t.basfi, t.basdai):
        assert math.isfinite(score) and 0.0 <= score <= 10.0
    assert t.risk in ("high", "low")


test_fuzz_triage = _settings(200)(given(patient=_patient())(_fuzz_triage))
test_fuzz_triage_slow = pytest.mark.slow(_settings(3000)(given(patient=_patient())(_fuzz_triage)))


def test_valid_patient_reaches_the_model(warm_triage):
    """The fuzzer's base patient is accepted, so mutations around it exercise prediction, not only refusal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert as_ai.triage(VALID_PATIENT).risk in ("high", "low")


@pytest.mark.parametrize("value", [10**400, -10**5000, Fraction(10**400, 3)], ids=["1e400", "-1e5000", "fraction"])
@pytest.mark.parametrize("field", ["age", "crp", "msasss", "hip_involvement"])
def test_numbers_too_large_for_a_float_are_refused(warm_triage, field, value):
    """Found by the fuzzer: such numbers raised OverflowError / ValueError (int too long to print)."""
    with pytest.raises(InvalidPatientError) as err:
        as_ai.triage({**VALID_PATIENT, field: value})
    assert set(err.value.fields) == {field} and len(str(err.value)) < 2000
