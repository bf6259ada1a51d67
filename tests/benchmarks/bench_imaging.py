"""Benchmarks for image loading and model-input batching (``make bench``; not part of ``make test``).

Prints ratios measured side by side in one run; asserts nothing about time. Recorded in runs/bench.json:
``model_input_batch16_ms``, ``load_radiograph_png16_ms``, ``load_radiograph_dicom_uncompressed_ms``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _imaging_samples import encode, phantom, pydicom_data_path  # noqa: E402

from as_ai.imaging import Preprocess, eval_transform, load_radiograph, to_model_input  # noqa: E402

pytestmark = pytest.mark.benchmark


def _best(fns: dict, repeat: int = 7) -> dict:
    """Best-of-``repeat`` seconds per function, runs interleaved so machine load hits all alike."""
    times: dict = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def test_bench_batched_model_input_vs_per_image_paths(record):
    import torch
    from PIL import Image
    from torchvision import transforms as T

    torch.set_num_threads(1)
    p = Preprocess()
    images = [load_radiograph(phantom(1500, 1200, seed=i)) for i in range(16)]
    transform = eval_transform(p)
    classic = T.Compose([T.Resize(256), T.CenterCrop(224), T.Grayscale(3), T.ToTensor(), T.Normalize(p.mean, p.std)])

    t = _best({
        "batched": lambda: to_model_input(images, p),
        "per_image": lambda: torch.stack([transform(rg.to_tensor()) for rg in images]),
        "pil": lambda: torch.stack([classic(Image.fromarray((rg.pixels * 255).astype(np.uint8))) for rg in images]),
    })
    batched, per_image, pil_round_trip = t["batched"], t["per_image"], t["pil"]
    print(f"\n16 images 1500×1200 -> 16×3×224×224, 1 thread: to_model_input {batched * 1e3:.1f} ms; "
          f"per-image eval_transform ×{per_image / batched:.2f}; PIL round trip ×{pil_round_trip / batched:.2f}")
    record("model_input_batch16_ms", batched * 1e3, "ms", baseline=per_image * 1e3, ratio=per_image / batched,
           ratio_is="speed-up (baseline/value)", baseline_is="per-image eval_transform, stacked (best of 7)")


def test_bench_loading_formats(record):
    arr = (phantom(2000, 1600).astype(np.uint16) * 257)
    png16 = encode(arr, "PNG")
    jpeg = encode((arr >> 8).astype(np.uint8), "JPEG", quality=90)
    dicom_unc = Path(pydicom_data_path("RG1_UNCR.dcm")).read_bytes()
    dicom_j2k = Path(pydicom_data_path("RG1_J2KR.dcm")).read_bytes()
    inputs = {"array": arr, "png16": png16, "jpeg": jpeg, "dicom_uncompressed": dicom_unc,
              "dicom_j2k_lossless": dicom_j2k}
    rows = _best({name: (lambda d=data: load_radiograph(d)) for name, data in inputs.items()}, repeat=3)
    base = rows.pop("array")
    print(f"\nload_radiograph, ~3.2 Mpx: uint16 array {base * 1e3:.1f} ms; "
          + "; ".join(f"{k} ×{v / base:.1f}" for k, v in rows.items()))
    for fmt in ("png16", "dicom_uncompressed"):
        record(f"load_radiograph_{fmt}_ms", rows[fmt] * 1e3, "ms", baseline=base * 1e3, ratio_is="value/baseline",
               baseline_is="load_radiograph of a 2000x1600 uint16 array (best of 3)")
