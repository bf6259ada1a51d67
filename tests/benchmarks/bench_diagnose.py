"""Benchmark: diagnose latency (one 2000x2000 16-bit PNG) and batch throughput vs a naive baseline.

    .venv/bin/python -m pytest -q -s -m benchmark tests/benchmarks/bench_diagnose.py

Both sides run in the same process on the same model (the bundled demo ensemble) and the same files:

- naive: what a first script would do -- per image, per member: PIL-decode the PNG, PIL resize (short edge)
  and centre crop, to tensor, normalise, run that member alone (eager, ``torch.no_grad``, contiguous
  tensors); then average, calibrate;
- as-ai model path: ``Diagnoser.predict_proba`` -- decode once (on worker threads, one batch ahead),
  batched tensor preprocessing shared by the members, one ``Ensemble`` call under ``inference_mode`` with
  channels-last tensors;
- as-ai full ``Diagnoser.diagnose_batch`` / ``__call__``: the model path plus the input checks
  (photo-quality measures on worker threads during the forward pass, input gate when the repo has one)
  and result objects.

Printed: median seconds per image and speed-ups (naive / as-ai), measured side by side in this run.
Nothing is asserted about time (shared CI machines); the probabilities of both paths are checked equal.

Also the peak resident memory (VmHWM; ``ru_maxrss`` off Linux) of a fresh process that imports as_ai and
diagnoses one such PNG with the bundled demo model, beside a fresh process that only imports as_ai and torch.

Recorded in runs/bench.json (see conftest.py): ``diagnose_latency_ms`` (``diagnose()`` with input checks,
baseline naive), ``diagnose_speedup_vs_naive``, ``diagnose_model_path_ms``, ``diagnose_batch_images_per_s``
(``diagnose_batch``, baseline naive), ``peak_rss_mb_diagnose`` (baseline: import only).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from as_ai import hub
from as_ai.diagnosis import Diagnoser

pytestmark = pytest.mark.benchmark


def _naive(diagnoser: Diagnoser, path) -> float:
    """The baseline: every member preprocesses the file itself with PIL and runs alone."""
    pp = diagnoser.preprocess
    probs = []
    for i, name in enumerate(diagnoser.ensemble.names):
        size = diagnoser.ensemble.input_sizes[name]
        with Image.open(path) as im:
            a = np.asarray(im).astype(np.float32) / 65535.0
        pil = Image.fromarray(a, mode="F")
        resize = diagnoser.preprocess_by_size[size].resize_short
        w, h = pil.size
        scale = resize / min(w, h)
        pil = pil.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BILINEAR)
        w, h = pil.size
        left, top = (w - size) // 2, (h - size) // 2
        pil = pil.crop((left, top, left + size, top + size))
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32).copy())[None].expand(3, -1, -1)
        x = (x - torch.tensor(pp.mean).view(3, 1, 1)) / torch.tensor(pp.std).view(3, 1, 1)
        model = diagnoser.ensemble.members[f"m{i}"]
        with torch.no_grad():
            probs.append(torch.softmax(model(x[None].contiguous()), 1)[0, 1].item())
    combined = float(np.dot(diagnoser.ensemble.weights.numpy(), probs))
    return float(diagnoser.calibration.apply([combined])[0])


def _timed(fns: dict, repeat: int) -> dict:
    """Median seconds of each function, the functions interleaved round-robin (load drift hits all alike)."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _contiguous(diagnoser: Diagnoser, fn):
    """Run ``fn`` with the members in the default (contiguous) memory format, as a naive script has them."""
    def run():
        diagnoser.ensemble.to(memory_format=torch.contiguous_format)
        try:
            return fn()
        finally:
            diagnoser.ensemble.to(memory_format=torch.channels_last)
    return run


@pytest.fixture(scope="module")
def diagnoser() -> Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(hub.default_model_id("diagnosis"))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, write_pngs):
    return write_pngs(tmp_path_factory.mktemp("bench"), 16, 2000)


def test_single_image_latency(diagnoser, pngs, record):
    path = pngs[0]
    t = _timed({"naive": _contiguous(diagnoser, lambda: _naive(diagnoser, path)),
                "model": lambda: diagnoser.predict_proba([path]),
                "full": lambda: diagnoser(path)}, 9)
    p_naive = _contiguous(diagnoser, lambda: _naive(diagnoser, path))()
    assert diagnoser.predict_proba([path])[0] == pytest.approx(p_naive, abs=2e-3)  # same answer
    print(f"\n[single 2000x2000 16-bit PNG, {len(diagnoser.ensemble.names)} members, torch threads "
          f"{torch.get_num_threads()}] naive {t['naive'] * 1e3:.0f} ms | as-ai model path {t['model'] * 1e3:.0f} ms "
          f"({t['naive'] / t['model']:.2f}x) | as-ai diagnose() with input checks {t['full'] * 1e3:.0f} ms "
          f"({t['naive'] / t['full']:.2f}x)")
    naive = "naive script: per member, PIL decode + resize + crop, eager, contiguous"
    record("diagnose_latency_ms", t["full"] * 1e3, "ms", baseline=t["naive"] * 1e3, ratio=t["naive"] / t["full"],
           ratio_is="speed-up (baseline/value)", baseline_is=naive)
    record("diagnose_speedup_vs_naive", t["naive"] / t["full"], "x", baseline_is=naive)
    record("diagnose_model_path_ms", t["model"] * 1e3, "ms", baseline=t["naive"] * 1e3,
           ratio=t["naive"] / t["model"], ratio_is="speed-up (baseline/value)", baseline_is=naive)


def test_batch_throughput(diagnoser, pngs, record):
    t = _timed({"naive": _contiguous(diagnoser, lambda: [_naive(diagnoser, p) for p in pngs]),
                "model": lambda: diagnoser.predict_proba(pngs, batch_size=16),
                "full": lambda: diagnoser.diagnose_batch(pngs, batch_size=16)}, 3)
    n = len(pngs)
    print(f"\n[batch of {n} x 2000x2000 16-bit PNG] naive {n / t['naive']:.1f} img/s | as-ai model path "
          f"{n / t['model']:.1f} img/s ({t['naive'] / t['model']:.2f}x) | as-ai diagnose_batch with input checks "
          f"{n / t['full']:.1f} img/s ({t['naive'] / t['full']:.2f}x)")
    record("diagnose_batch_images_per_s", n / t["full"], "images/s", baseline=n / t["naive"],
           ratio=t["naive"] / t["full"], ratio_is="speed-up (value/baseline)",
           baseline_is=f"naive script, {n} images one at a time")


# The child's own peak: VmHWM of its address space (Linux). Not ru_maxrss there: Linux carries the larger of
# the parent's and the child's peak across fork + exec into ru_maxrss, so a child of this (big) pytest process
# would report the parent's size. ru_maxrss elsewhere (KiB on most systems, bytes on macOS).
_PEAK_RSS = """
import os, resource, sys, warnings
warnings.simplefilter("ignore")
import as_ai, torch
if len(sys.argv) > 1:
    as_ai.diagnose(sys.argv[1], model=sys.argv[2])
try:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(int(hwm.split()[1]) / 1024)
except OSError:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(kb / 2**20 if sys.platform == "darwin" else kb / 1024)
"""


def _peak_rss_mb(*args: str) -> float:
    """Peak resident memory (MiB) of a fresh ``python -c _PEAK_RSS *args`` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AS_AI_")}
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, *args], env=dict(env, HF_HUB_OFFLINE="1"),
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def test_peak_rss_of_one_diagnosis(pngs, record):
    model = str(hub.DEMO_DIR / "diagnosis")
    base, diag = [], []
    for _ in range(2):  # alternated; the larger of each (a peak)
        base.append(_peak_rss_mb())
        diag.append(_peak_rss_mb(str(pngs[0]), model))
    print(f"\n[peak RSS, fresh process] import as_ai + torch {max(base):.0f} MiB | + diagnose one 2000x2000 "
          f"16-bit PNG with the demo model {max(diag):.0f} MiB ({max(diag) / max(base):.2f}x, "
          f"+{max(diag) - max(base):.0f} MiB)")
    assert max(diag) > max(base) > 0
    record("peak_rss_mb_diagnose", max(diag), "MiB", baseline=max(base), ratio_is="value/baseline",
           baseline_is="fresh process that only imports as_ai and torch")


@pytest.fixture(scope="module")
def phantom_pngs(tmp_path_factory) -> dict[int, Path]:
    """One phantom pelvis per size (16-bit PNG), so that the joint reader finds and grades real joints."""
    from as_ai.synthetic import pelvis

    folder = tmp_path_factory.mktemp("phantoms")
    out = {}
    for size in (512, 2000):
        ph = pelvis.render(29, (3, 2), center="C", size=size)
        top = 2 ** int(ph.meta.get("bits_stored", 16)) - 1
        out[size] = folder / f"pelvis{size}.png"
        Image.fromarray((ph.image.astype(np.float64) * 65535 / top).astype(np.uint16)).save(out[size])
    return out


def test_joint_reader_latency(diagnoser, phantom_pngs, record):
    """``diagnose()`` reading both views (the joint reader on worker threads during the forward pass, then the
    cross-view rule) against the same model with the reader detached: issue #20's goal is <= 1.5x."""
    if diagnoser.joint_reader is None:
        pytest.skip("the bundled diagnosis model names no joint reader")
    reader = diagnoser.joint_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Diagnoser.from_pretrained(hub.default_model_id("diagnosis")).attach_joint_reader(None)
    for size, path in phantom_pngs.items():
        t = _timed({"without": lambda: plain(path), "with": lambda: diagnoser(path)}, 9)
        r = diagnoser(path)
        assert r.sides is not None and "joints" in r.members
        print(f"\n[{size}x{size} phantom PNG] diagnose() whole image only {t['without'] * 1e3:.0f} ms | with the "
              f"joint reader and the cross-view rule {t['with'] * 1e3:.0f} ms ({t['with'] / t['without']:.2f}x)")
        record(f"diagnose_with_joints_ms_{size}px", t["with"] * 1e3, "ms", baseline=t["without"] * 1e3,
               ratio=t["with"] / t["without"], ratio_is="value/baseline",
               baseline_is="the same diagnosis model with the joint reader detached (goal <= 1.5x)")
    assert diagnoser.joint_reader is reader
