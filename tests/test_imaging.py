"""load_radiograph: every input kind, every format, the DICOM display pipeline, the array rules.

Real radiographs come from the pydicom-data wheel (CR, MONOCHROME1, uncompressed and JPEG 2000) and
pydicom's bundled test files; both ship inside their wheels, nothing is downloaded.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from _imaging_samples import (dicom_bytes, encode, jpeg_with_exif_orientation, phantom, pydicom_data_path,
                              pydicom_test_file)
from as_ai.errors import InvalidImageError
from as_ai.imaging import Radiograph, load_radiograph

pytestmark = pytest.mark.timeout(60)


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _median(px: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> float:
    h, w = px.shape
    return float(np.median(px[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]))


# ------------------------------------------------------------------------------------------ input kinds
def _grey16() -> np.ndarray:
    return (phantom(80, 112).astype(np.uint16) * 257 + np.arange(112, dtype=np.uint16)[None, :] * 3)


FORMATS = {
    "png8": lambda: encode(phantom(80, 112), "PNG"),
    "png16": lambda: encode(Image.fromarray(_grey16()), "PNG"),
    "tiff16": lambda: encode(Image.fromarray(_grey16()), "TIFF"),
    "jpeg": lambda: encode(phantom(80, 112), "JPEG", quality=90),
    "bmp": lambda: encode(phantom(80, 112), "BMP"),
    "webp": lambda: encode(phantom(80, 112), "WEBP", lossless=True),
    "rgb_jpeg": lambda: encode(np.stack([phantom(80, 112, seed=s) for s in range(3)], -1), "JPEG", quality=90),
    "dicom": lambda: dicom_bytes(_grey16(), window=(30000, 40000)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_input_kind_gives_identical_pixels(fmt, tmp_path):
    data = FORMATS[fmt]()
    path = tmp_path / f"image.{fmt}"
    path.write_bytes(data)
    reference = load_radiograph(path)
    sources = {"str": str(path), "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
               "BytesIO": io.BytesIO(data)}
    if fmt != "dicom":  # PIL and numpy cannot hold a DICOM; for the others compare those routes as well
        sources["PIL"] = Image.open(path)
        with Image.open(path) as im:
            sources["ndarray"] = np.asarray(im)
    with open(path, "rb") as fh:
        sources["file"] = fh
        results = {name: load_radiograph(src) for name, src in sources.items()}
    for name, rg in results.items():
        np.testing.assert_array_equal(rg.pixels, reference.pixels, err_msg=f"{fmt} via {name}")
    assert reference.pixels.dtype == np.float32 and reference.pixels.shape == (80, 112)
    assert 0.0 <= reference.pixels.min() and reference.pixels.max() <= 1.0
    assert load_radiograph(reference) is reference


def test_png8_pixels_are_the_stored_values_over_255(tmp_path):
    arr = phantom(70, 90)
    rg = load_radiograph(encode(arr, "PNG"))
    np.testing.assert_allclose(rg.pixels, arr / 255.0, atol=1e-7)
    assert rg.meta["source_format"] == "png" and rg.meta["bit_depth"] == 8
    assert rg.meta["original_size"] == (70, 90) and rg.meta["photometric_interpretation"] == "MONOCHROME2"


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_images_keep_their_depth(fmt):
    arr = _grey16()
    rg = load_radiograph(encode(Image.fromarray(arr), fmt))
    assert rg.meta["bit_depth"] == 16
    np.testing.assert_array_equal(np.rint(rg.pixels.astype(np.float64) * 65535).astype(np.uint16), arr)
    assert len(np.unique(rg.pixels)) > 256  # more levels than 8 bits could hold


def test_format_is_detected_by_content_not_extension(tmp_path):
    png_named_jpg = tmp_path / "scan.jpg"
    png_named_jpg.write_bytes(encode(phantom(), "PNG"))
    dicom_named_png = tmp_path / "scan.png"
    dicom_named_png.write_bytes(dicom_bytes(phantom().astype(np.uint16)))
    assert load_radiograph(png_named_jpg).meta["source_format"] == "png"
    assert load_radiograph(dicom_named_png).meta["source_format"] == "dicom"


# ---------------------------------------------------------------------------------------- photos / colour
@pytest.mark.parametrize("orientation, undo", [
    (3, lambda a: np.rot90(a, 2)),   # shown rotated 180°
    (6, lambda a: np.rot90(a, -1)),  # phone held upright: rotate 90° clockwise to display
    (8, lambda a: np.rot90(a, 1)),   # rotate 90° counter-clockwise to display
    (2, lambda a: a[:, ::-1]),       # mirrored
])
def test_exif_orientation_is_applied(orientation, undo, tmp_path):
    arr = phantom(80, 120)
    data = jpeg_with_exif_orientation(arr, orientation)
    rg = load_radiograph(data)
    expected = undo(arr) / 255.0
    assert rg.pixels.shape == expected.shape
    assert np.abs(rg.pixels - expected).mean() < 0.01  # JPEG noise only; a wrong rotation is ~0.15 off
    assert rg.meta["exif_rotated"] is True and rg.meta["original_size"] == (80, 120)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_radiograph(Image.open(path)).pixels, rg.pixels)


def test_no_exif_orientation_means_no_rotation():
    rg = load_radiograph(jpeg_with_exif_orientation(phantom(80, 120), 1))
    assert rg.pixels.shape == (80, 120) and rg.meta["exif_rotated"] is False


def test_cmyk_jpeg_is_read_as_grey_not_inverted():
    rgb = np.stack([phantom(96, 128, seed=1), phantom(96, 128, seed=1), phantom(96, 128, seed=2)], -1)
    data = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
    rg = load_radiograph(data)
    assert rg.meta["photometric_interpretation"] == "CMYK"
    expected = _luma(rgb) / 255.0
    assert np.corrcoef(rg.pixels.ravel(), expected.ravel())[0, 1] > 0.98
    assert np.abs(rg.pixels - expected).mean() < 0.03


def test_progressive_jpeg_decodes_like_the_image():
    arr = phantom(96, 128)
    data = encode(arr, "JPEG", quality=95, progressive=True)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info.get("progressive") or im.info.get("progression")
    rg = load_radiograph(data)
    assert np.abs(rg.pixels - arr / 255.0).mean() < 0.01


def test_colour_is_converted_with_bt601_luma_and_warned():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)
    rgb[:, 32:] = (0, 0, 255)
    rg = load_radiograph(rgb)
    np.testing.assert_allclose(rg.pixels[:, :32], 0.299, atol=1e-6)
    np.testing.assert_allclose(rg.pixels[:, 32:], 0.114, atol=1e-6)
    assert any("colour image converted to grey" in w for w in rg.warnings)


def test_grey_stored_as_rgb_is_the_same_grey_without_warning():
    grey = phantom()
    rg = load_radiograph(encode(np.stack([grey] * 3, -1), "PNG"))
    np.testing.assert_allclose(rg.pixels, grey / 255.0, atol=1e-6)
    assert rg.warnings == []


def test_palette_png_reads_as_its_grey_values():
    grey = phantom()
    rg = load_radiograph(encode(Image.fromarray(grey).convert("P"), "PNG"))
    with Image.open(io.BytesIO(encode(Image.fromarray(grey).convert("P"), "PNG"))) as im:
        assert im.mode == "P"
    np.testing.assert_allclose(rg.pixels, grey / 255.0, atol=1e-6)


def test_alpha_is_composited_on_black():
    grey = np.full((64, 64), 200, np.uint8)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, :16] = 0
    alpha[:, 16:32] = 51
    rg = load_radiograph(encode(np.stack([grey, alpha], -1), "PNG"))  # LA PNG
    np.testing.assert_allclose(rg.pixels[:, :16], 0.0)
    np.testing.assert_allclose(rg.pixels[:, 16:32], 200 / 255 * 0.2, atol=1e-6)
    np.testing.assert_allclose(rg.pixels[:, 32:], 200 / 255, atol=1e-6)
    assert any("composited on black" in w for w in rg.warnings)
    rgba = np.dstack([np.stack([grey] * 3, -1), alpha])
    np.testing.assert_allclose(load_radiograph(rgba).pixels, rg.pixels, atol=1e-6)


def test_multi_page_tiff_is_refused():
    im = Image.fromarray(phantom())
    data = encode(im, "TIFF", save_all=True, append_images=[Image.fromarray(phantom(seed=3))])
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(data)
    assert err.value.reason == "multi_frame"


# ----------------------------------------------------------------------------------------------- arrays
def test_array_rules_integer_scaling():
    u8 = np.array([[0, 255]] * 64, np.uint8).repeat(32, axis=1)
    np.testing.assert_array_equal(np.unique(load_radiograph(u8).pixels), [0.0, 1.0])
    u16 = (u8.astype(np.uint16) * 257) // 2
    np.testing.assert_allclose(np.unique(load_radiograph(u16).pixels), [0.0, 32767 / 65535], atol=1e-7)


def test_array_rules_float_in_unit_range_is_kept_exactly():
    arr = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    rg = load_radiograph(arr)
    np.testing.assert_array_equal(rg.pixels, arr)
    assert rg.warnings == []
    np.testing.assert_allclose(load_radiograph(arr.astype(np.float64)).pixels, arr, atol=1e-7)


@pytest.mark.parametrize("arr", [
    np.linspace(-1000, 3000, 64 * 64, dtype=np.float32).reshape(64, 64),
    np.linspace(-1000, 3000, 64 * 64).astype(np.int16).reshape(64, 64),
    np.linspace(0, 1e6, 64 * 64).astype(np.int32).reshape(64, 64),
], ids=["float", "int16", "int32"])
def test_array_rules_other_ranges_are_min_max_scaled_with_a_warning(arr):
    rg = load_radiograph(arr)
    assert rg.pixels.min() == 0.0 and rg.pixels.max() == 1.0
    expected = (arr.astype(np.float64) - arr.min()) / (float(arr.max()) - float(arr.min()))
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-6)
    assert any("min-max scaled" in w for w in rg.warnings)


def test_constant_image_is_kept_with_a_warning():
    rg = load_radiograph(np.full((64, 64), 0.25, np.float32))
    assert np.all(rg.pixels == 0.25)
    assert any(w.startswith("constant image") for w in rg.warnings)


@pytest.mark.parametrize("arr, fragment", [
    (np.zeros((64, 64), bool), "dtype bool"),
    (np.zeros((64, 64), np.complex64), "dtype complex64"),
    (np.zeros((64, 64), object), "dtype object"),
    (np.zeros((2, 64, 64, 3), np.uint8), "shape (2, 64, 64, 3)"),
    (np.zeros((64, 64, 2), np.uint8), "C in (1, 3, 4)"),
    (np.zeros((3, 64, 80), np.uint8), "channels-first"),
    (np.zeros(64, np.uint8), "shape (64,)"),
    (np.full((64, 64), np.inf, np.float32), "NaN or infinite"),
    (np.dstack([np.zeros((64, 64, 3), np.float32), np.full((64, 64), 2.0, np.float32)]), "alpha"),
])
def test_bad_arrays_are_refused_with_what_to_do(arr, fragment):
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(arr)
    assert err.value.reason == "bad_array"
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------------------------- limits
def test_limits_are_parameters(tmp_path):
    data = encode(phantom(100, 120), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for src in (path, data, io.BytesIO(data)):
        with pytest.raises(InvalidImageError) as err:
            load_radiograph(src, max_bytes=len(data) - 1)
        assert err.value.reason == "too_large" and "max_bytes" in str(err.value)
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(data, max_pixels=100 * 120 - 1)
    assert err.value.reason == "too_large" and "12,000 pixels" in str(err.value)
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(data, min_size=101)
    assert err.value.reason == "too_small"
    assert load_radiograph(data, max_pixels=100 * 120, min_size=100).pixels.shape == (100, 120)
    with pytest.raises(ValueError, match="max_pixels"):
        load_radiograph(data, max_pixels=0)


@pytest.mark.parametrize("make_src, reason", [
    (lambda p: p / "missing.png", "not_found"),
    (lambda p: str(p / "missing.dcm"), "not_found"),
    (lambda p: p, "not_found"),  # a directory
    (lambda p: 42, "unsupported_format"),
    (lambda p: [[0, 1], [1, 0]], "unsupported_format"),
    (lambda p: io.StringIO("text mode"), "unsupported_format"),
])
def test_bad_sources_are_refused(make_src, reason, tmp_path):
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(make_src(tmp_path))
    assert err.value.reason == reason


# ---------------------------------------------------------------------------------------- DICOM (real)
@pytest.fixture(scope="module")
def rg3():
    return {k: load_radiograph(pydicom_data_path(f"RG3_{k}.dcm")) for k in ("UNCR", "J2KR", "J2KI", "UNCI")}


def test_real_cr_monochrome1_extremity_shows_bone_bright(rg3):
    rg = rg3["UNCR"]
    assert rg.meta["photometric_interpretation"] == "MONOCHROME1"
    assert (rg.meta["modality"], rg.meta["body_part"], rg.meta["view"]) == ("CR", "EXTREMITY", "AP")
    assert rg.meta["voi"] == "window" and rg.meta["bit_depth"] == 10
    px = rg.pixels
    tibia, air_left, air_right = (_median(px, .2, .6, .40, .47), _median(px, .2, .6, .27, .31),
                                  _median(px, .2, .6, .62, .66))
    assert tibia > 0.3 and air_left < 0.15 and air_right < 0.15, (tibia, air_left, air_right)
    # Outside the collimator the plate was not exposed: white, as on film.
    assert _median(px, .2, .6, .02, .12) > 0.95


def test_real_cr_compressed_and_uncompressed_agree(rg3):
    ref = rg3["UNCR"].pixels
    np.testing.assert_array_equal(rg3["J2KR"].pixels, ref)  # JPEG 2000 lossless
    lossy = rg3["J2KI"].pixels  # JPEG 2000 lossy: close, not equal
    assert 0 < np.abs(lossy - ref).mean() < 0.003 and np.abs(lossy - ref).max() < 0.03
    np.testing.assert_array_equal(lossy, rg3["UNCI"].pixels)  # UNCI is the lossy image, decoded
    assert rg3["J2KR"].meta["transfer_syntax"] == "JPEG 2000 Image Compression (Lossless Only)"
    assert rg3["UNCR"].meta["transfer_syntax"] == "Explicit VR Little Endian"


def test_real_chest_cr_spine_brighter_than_lungs():
    ref = load_radiograph(pydicom_data_path("RG1_UNCR.dcm"))
    j2k = load_radiograph(pydicom_data_path("RG1_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.pixels, ref.pixels)
    px = ref.pixels
    spine, lung_r, lung_l = (_median(px, .1, .4, .47, .53), _median(px, .25, .5, .25, .35),
                             _median(px, .25, .5, .65, .75))
    assert spine > lung_r + 0.2 and spine > lung_l + 0.2, (spine, lung_r, lung_l)
    assert ref.meta["body_part"] == "CHEST" and ref.meta["pixel_spacing_mm"] is None  # file says 0.000: unknown


def test_dicom_preamble_holding_a_tiff_header_is_read_as_dicom():
    path = pydicom_data_path("RG3_UNCR.dcm")
    with open(path, "rb") as fh:
        head = fh.read(132)
    assert head[:4] == b"II*\x00" and head[128:] == b"DICM"  # a dual DICOM/TIFF file
    assert load_radiograph(path).meta["source_format"] == "dicom"


@pytest.mark.parametrize("compressed, plain", [
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm"),
])
def test_pydicom_test_files_decode_compressed_like_uncompressed(compressed, plain):
    def path(name):
        try:
            return pydicom_test_file(name)
        except FileNotFoundError:
            return pydicom_data_path(name)
    a, b = load_radiograph(path(compressed)), load_radiograph(path(plain))
    np.testing.assert_allclose(a.pixels, b.pixels, atol=1e-6)
    assert a.meta["transfer_syntax"] != b.meta["transfer_syntax"]


def test_colour_dicom_is_converted_with_a_warning():
    rgb = load_radiograph(pydicom_data_path("US1_UNCR.dcm"))
    ybr = load_radiograph(pydicom_data_path("US1_J2KR.dcm"))  # YBR_RCT, lossless
    np.testing.assert_allclose(ybr.pixels, rgb.pixels, atol=1e-6)
    assert any("colour DICOM (RGB) converted to grey" in w for w in rgb.warnings)
    assert any("colour DICOM (YBR_RCT)" in w for w in ybr.warnings)


# ---------------------------------------------------------------------------------------- DICOM (synthetic)
def test_dicom_window_and_rescale_follow_the_standard():
    stored = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (64, 1))  # 64×256, 12-bit values
    slope, intercept, center, width = 2.0, -1000.0, 2000.0, 4001.0
    rg = load_radiograph(dicom_bytes(stored, bits_stored=12, rescale=(slope, intercept), window=(center, width)))
    # PS3.3 C.11.2.1.2.1 (LINEAR): y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1] here.
    x = stored * slope + intercept
    expected = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-5)
    assert rg.meta["voi"] == "window"


def test_dicom_without_window_uses_the_data_range():
    stored = np.tile(np.arange(100, 1124, 4, dtype=np.uint16), (64, 1))
    rg = load_radiograph(dicom_bytes(stored, bits_stored=12))
    np.testing.assert_allclose(rg.pixels, (stored - 100) / 1020.0, atol=1e-6)
    assert rg.meta["voi"] == "min-max"


def test_monochrome1_is_inverted_so_dense_is_bright():
    stored = phantom().astype(np.uint16) * 16
    mono2 = load_radiograph(dicom_bytes(stored, bits_stored=12, window=(2048, 4096)))
    mono1 = load_radiograph(dicom_bytes(stored, bits_stored=12, window=(2048, 4096), photometric="MONOCHROME1"))
    np.testing.assert_allclose(mono1.pixels, 1.0 - mono2.pixels, atol=1e-6)


def test_dicom_without_preamble_or_file_meta_reads_the_same():
    from pydicom import dcmread

    stored = phantom().astype(np.uint16)
    full = dicom_bytes(stored)
    no_preamble = dicom_bytes(stored, preamble=False)
    assert no_preamble[:4] == b"DICM"
    ds = dcmread(io.BytesIO(full))
    del ds.file_meta
    ds.preamble = None
    bare = io.BytesIO()
    ds.save_as(bare, implicit_vr=True, little_endian=True)  # a bare dataset: no preamble, no 'DICM'
    assert b"DICM" not in bare.getvalue()[:256]
    expected = load_radiograph(full).pixels
    for data in (no_preamble, bare.getvalue()):
        rg = load_radiograph(data)
        assert rg.meta["source_format"] == "dicom"
        np.testing.assert_array_equal(rg.pixels, expected)


def test_dicom_meta_has_acquisition_facts_and_no_patient_identifiers():
    rg = load_radiograph(dicom_bytes(phantom().astype(np.uint16)))
    meta = rg.to_dict()
    assert (meta["modality"], meta["body_part"], meta["view"]) == ("DX", "PELVIS", "AP")
    assert meta["pixel_spacing_mm"] == [0.15, 0.15]
    text = json.dumps(meta)
    for identifier in ("Doe", "Jane", "PID-12345", "19800101", "20240131", "General Hospital"):
        assert identifier not in text


# ------------------------------------------------------------------------------------------- contract
def test_radiograph_is_read_only_and_serialisable():
    rg = load_radiograph(encode(phantom(), "PNG"))
    with pytest.raises(ValueError):
        rg.pixels[0, 0] = 1.0
    d = rg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["size"] == [96, 128] and d["original_size"] == [96, 128] and d["warnings"] == []
    assert set(d) >= {"source_format", "original_size", "bit_depth", "photometric_interpretation",
                      "pixel_spacing_mm", "modality", "body_part", "view", "exif_rotated", "warnings"}


def test_radiograph_constructor_checks_its_pixels():
    arr = np.zeros((64, 64), np.float32)
    rg = Radiograph(arr)
    arr[0, 0] = 1.0
    assert rg.pixels[0, 0] == 0.0  # kept its own copy
    for bad in (np.zeros((64, 64), np.float64), np.full((64, 64), 2.0, np.float32), np.zeros((64, 64, 3), np.float32)):
        with pytest.raises(InvalidImageError) as err:
            Radiograph(bad)
        assert err.value.reason == "bad_array"
