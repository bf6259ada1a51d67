"""Hostile and broken inputs: each is refused with the right reason, fast, without large allocations.

The per-test timeout (pytest-timeout) bounds "fast"; ``tracemalloc`` bounds what Python and numpy
allocate; a subprocess reads its own peak RSS for the bombs, because Pillow's C allocations are
invisible to tracemalloc.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from _imaging_samples import (bmp_claiming, dicom_bytes, dicom_deflate_bomb, encode, jpeg_claiming, phantom,
                              png_bomb, png_header_only, pydicom_test_file, tiff_claiming, webp_claiming)
from as_ai.errors import InvalidImageError
from as_ai.imaging import load_radiograph

ALLOC_LIMIT = 8_000_000  # bytes; a decoded bomb would be 100+ MB

CORPUS = {  # name: (make bytes, expected reason, extra load_radiograph kwargs)
    "empty": (lambda: b"", "empty", {}),
    "text": (lambda: b"Patient: see attached radiograph\nregards\n", "unsupported_format", {}),
    "html": (lambda: b"<!DOCTYPE html><html><body>404</body></html>", "unsupported_format", {}),
    "random_binary": (lambda: bytes(random.Random(0).randrange(256) for _ in range(4096)), "unsupported_format", {}),
    "gif": (lambda: encode(phantom(), "GIF"), "unsupported_format", {}),
    "pdf": (lambda: encode(phantom(), "PDF"), "unsupported_format", {}),
    "truncated_png": (lambda: encode(phantom(), "PNG")[:200], "corrupt", {}),
    "truncated_jpeg": (lambda: encode(phantom(), "JPEG")[:300], "corrupt", {}),
    "png_signature_only": (lambda: b"\x89PNG\r\n\x1a\n", "corrupt", {}),
    "png_bomb_12000x12000": (png_bomb, "too_large", {}),
    "png_claims_2^31x2^31": (lambda: png_header_only(2**31 - 1, 2**31 - 1), "too_large", {}),
    "png_claims_0_width": (lambda: png_header_only(0, 100), "corrupt", {}),
    "png_1x1": (lambda: encode(np.zeros((1, 1), np.uint8), "PNG"), "too_small", {}),
    "jpeg_claims_65500x65500": (lambda: jpeg_claiming(65500, 65500), "too_large", {}),
    "jpeg_1x1": (lambda: encode(np.zeros((1, 1), np.uint8), "JPEG"), "too_small", {}),
    "bmp_claims_100000x100000": (lambda: bmp_claiming(100_000, 100_000), "too_large", {}),
    "webp_claims_16384x16384": (lambda: webp_claiming(16384, 16384), "too_large", {}),
    "tiff_claims_100000x100000": (lambda: tiff_claiming(100_000, 100_000), "too_large", {}),
    "tiff_short_strip": (lambda: tiff_claiming(64, 64), "corrupt", {}),
    "dicom_no_pixel_data": (lambda: dicom_bytes(None), "no_pixel_data", {}),
    "dicom_claims_65535x65535": (lambda: dicom_bytes(np.zeros((64, 64), np.uint16), rows=65535, columns=65535),
                                 "too_large", {}),
    "dicom_claims_10000_frames": (lambda: dicom_bytes(np.zeros((64, 64), np.uint16), frames=100_000), "too_large", {}),
    "dicom_three_frames": (lambda: dicom_bytes(np.zeros((64, 64), np.uint16), frames=3), "multi_frame", {}),
    "dicom_1x1": (lambda: dicom_bytes(np.zeros((1, 1), np.uint16)), "too_small", {}),
    "dicom_pixel_data_short": (lambda: dicom_bytes(np.zeros((64, 64), np.uint16), rows=128), "corrupt", {}),
    "dicom_truncated": (lambda: dicom_bytes(np.zeros((256, 256), np.uint16))[:5000], "corrupt", {}),
    "dicom_deflate_bomb": (lambda: dicom_deflate_bomb(50_000_000), "too_large", {"max_bytes": 20_000_000}),
    "dicom_structured_report": (lambda: Path(pydicom_test_file("test-SR.dcm")).read_bytes(), "no_pixel_data", {}),
}


@pytest.fixture(scope="module")
def corpus():
    return {name: make() for name, (make, _, _) in CORPUS.items()}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_input_is_refused_with_its_reason(name, corpus):
    data = corpus[name]
    _, reason, kwargs = CORPUS[name]
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError) as err:
            load_radiograph(data, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.reason == reason, str(err.value)
    assert isinstance(err.value, ValueError)
    assert peak < ALLOC_LIMIT, f"{name}: peak traced allocation {peak:,} bytes"
    assert len(str(err.value)) > 40  # a sentence a person can act on, not a bare code


@pytest.mark.parametrize("array, reason", [
    (np.full((64, 64), np.nan, np.float32), "bad_array"),
    (np.zeros((1, 64, 64, 1), np.float32), "bad_array"),
    (np.zeros((1, 1), np.uint8), "too_small"),
    (np.zeros((0, 0), np.uint8), "too_small"),
])
def test_hostile_arrays(array, reason):
    with pytest.raises(InvalidImageError) as err:
        load_radiograph(array)
    assert err.value.reason == reason


def test_huge_array_is_refused_before_conversion():
    big = np.broadcast_to(np.zeros(1, np.float64), (20_000, 20_000))  # 3.2 GB if it were materialised
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError) as err:
            load_radiograph(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.reason == "too_large" and peak < ALLOC_LIMIT


_RSS_SCRIPT = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
import _imaging_samples as s
from as_ai.imaging import load_radiograph
from as_ai.errors import InvalidImageError
cases = {
    "png": s.png_bomb(), "jpeg": s.jpeg_claiming(65500, 65500), "bmp": s.bmp_claiming(100000, 100000),
    "webp": s.webp_claiming(16384, 16384), "tiff": s.tiff_claiming(100000, 100000),
    "dicom": s.dicom_bytes(s.np.zeros((64, 64), s.np.uint16), rows=65535, columns=65535),
    "png_10000x10000_under_a_5e7_limit": s.png_bomb(10000, 10000),
}
load_radiograph(s.encode(s.phantom(), "PNG"))  # warm up imports and allocators
out = {}
for name, data in cases.items():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_radiograph(data, max_pixels=50_000_000)
        out[name] = ["loaded", 0]
    except InvalidImageError as exc:
        out[name] = [exc.reason, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before]
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_bombs_do_not_grow_resident_memory():
    """Pillow and pydicom allocate outside tracemalloc's view; peak RSS of a fresh process sees them."""
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (reason, rss_growth_kb) in results.items():
        assert reason == "too_large", (name, reason)
        assert rss_growth_kb < 20_000, f"{name}: peak RSS grew by {rss_growth_kb} KB"


def _mutations(data: bytes, rng: random.Random, n: int):
    for _ in range(n):
        buf = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:  # flip bytes, mostly in the header where parsers branch
            for _ in range(rng.randint(1, 8)):
                pos = min(int(rng.expovariate(1 / 200)), len(buf) - 1)
                buf[pos] = rng.randrange(256)
        elif kind == 1:  # truncate
            del buf[rng.randrange(1, len(buf)):]
        else:  # splice a random chunk elsewhere
            a, b = sorted(rng.randrange(len(buf)) for _ in range(2))
            pos = rng.randrange(len(buf))
            buf[pos:pos] = buf[a:b]
        yield bytes(buf)


@pytest.mark.timeout(60)
def test_mutated_files_never_leak_library_exceptions():
    """Fuzz: damaged PNG/JPEG/TIFF/BMP/WebP/DICOM either load or raise InvalidImageError, nothing else."""
    outcomes = _fuzz(seed=1234, per_format=150)
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 10, outcomes


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(4))
def test_mutated_files_never_leak_library_exceptions_long(seed):
    _fuzz(seed=seed, per_format=3000)


def _fuzz(*, seed: int, per_format: int) -> dict:
    rng = random.Random(seed)
    grey = phantom(72, 80)
    seeds = {
        "png": encode(grey, "PNG"), "jpeg": encode(grey, "JPEG"), "progressive": encode(grey, "JPEG", progressive=True),
        "tiff": encode(grey, "TIFF"), "bmp": encode(grey, "BMP"), "webp": encode(grey, "WEBP"),
        "dicom": dicom_bytes(grey.astype(np.uint16), window=(128, 256)),
    }
    outcomes = {"loaded": 0, "refused": 0}
    for name, data in seeds.items():
        for mutated in _mutations(data, rng, per_format):
            try:
                rg = load_radiograph(mutated, max_pixels=2_000_000, min_size=8)
            except InvalidImageError:
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # pragma: no cover - this is the failure being looked for
                pytest.fail(f"{name}: {type(exc).__name__} leaked: {exc}")
            assert rg.pixels.dtype == np.float32 and 0 <= rg.pixels.min() and rg.pixels.max() <= 1
            outcomes["loaded"] += 1
    return outcomes
