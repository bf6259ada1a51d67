"""Benchmark: the ensemble on a CUDA GPU against the same ensemble on this machine's CPU (skipped without one).

    .venv/bin/python -m pytest -q -s -p no:cacheprovider -m benchmark -o python_files='bench_*.py' \
        tests/benchmarks/bench_gpu.py

Both sides run in one process on the same model and inputs: ``AS_AI_BENCH_MODEL`` (a model folder), else the
bundled demo ensemble.

- forward pass: a batch of 64 preprocessed inputs through ``Diagnoser.predict_tensor`` (members, combine,
  calibration) under ``inference_mode``; GPU timed with ``torch.cuda.synchronize``;
- ``diagnose_batch``: 32 phantom-sized PNGs (512 px, 16-bit) end to end: decoding, preprocessing and input
  checks stay on the CPU, so this is what a user of ``as-ai diagnose --device cuda`` gains.

Printed: images/s on each side and the speed-up. Recorded (see conftest.py): ``gpu_forward_images_per_s``
and ``gpu_diagnose_batch_images_per_s``, each with the CPU as its baseline. Nothing is asserted about time;
the two sides' probabilities are checked to agree (the GPU convolutions use TF32).
"""
from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np
import pytest
import torch

from as_ai import hub
from as_ai.diagnosis import Diagnoser

pytestmark = [pytest.mark.benchmark,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _load() -> Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Diagnoser.from_pretrained(os.environ.get("AS_AI_BENCH_MODEL") or hub.default_model_id("diagnosis"))


def _median_seconds(fn, repeats: int, sync: bool) -> float:
    fn()                                                   # warm-up (cuDNN picks its kernels here)
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.fixture(scope="module")
def pair() -> tuple[Diagnoser, Diagnoser]:
    return _load(), _load().to("cuda")


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, write_pngs):
    return write_pngs(tmp_path_factory.mktemp("gpu-bench"), 32, 512)


def test_forward_pass_on_the_gpu(pair, pngs, record):
    cpu, gpu = pair
    x = cpu.model_input(cpu.model_views(pngs * 2))                           # 64 preprocessed inputs
    x_gpu = {s: t.to("cuda") for s, t in x.items()}

    def run(d, inp):
        with torch.inference_mode():
            return d.predict_tensor(inp)[0]

    np.testing.assert_allclose(run(gpu, x_gpu).cpu().numpy(), run(cpu, x).numpy(), atol=1e-2)
    t_cpu = _median_seconds(lambda: run(cpu, x), 3, sync=False)
    t_gpu = _median_seconds(lambda: run(gpu, x_gpu), 10, sync=True)
    n = 64
    print(f"\n[forward, batch {n}, {len(cpu.ensemble.names)} members, {torch.cuda.get_device_name()}] "
          f"CPU ({torch.get_num_threads()} threads) {n / t_cpu:.0f} img/s | GPU {n / t_gpu:.0f} img/s "
          f"({t_cpu / t_gpu:.1f}x)")
    record("gpu_forward_images_per_s", n / t_gpu, "images/s", baseline=n / t_cpu, ratio=t_cpu / t_gpu,
           ratio_is="speed-up (value/baseline)",
           baseline_is=f"the same batch on this machine's CPU ({torch.get_num_threads()} threads)")


def test_diagnose_batch_on_the_gpu(pair, pngs, record):
    cpu, gpu = pair
    a = [d.probability for d in cpu.diagnose_batch(pngs, batch_size=32)]
    b = [d.probability for d in gpu.diagnose_batch(pngs, batch_size=32)]
    np.testing.assert_allclose(b, a, atol=1e-2)
    t_cpu = _median_seconds(lambda: cpu.diagnose_batch(pngs, batch_size=32), 3, sync=False)
    t_gpu = _median_seconds(lambda: gpu.diagnose_batch(pngs, batch_size=32), 3, sync=True)
    n = len(pngs)
    print(f"\n[diagnose_batch, {n} x 512 px 16-bit PNG] CPU {n / t_cpu:.1f} img/s | GPU {n / t_gpu:.1f} img/s "
          f"({t_cpu / t_gpu:.2f}x)")
    record("gpu_diagnose_batch_images_per_s", n / t_gpu, "images/s", baseline=n / t_cpu, ratio=t_cpu / t_gpu,
           ratio_is="speed-up (value/baseline)",
           baseline_is=f"diagnose_batch on this machine's CPU ({torch.get_num_threads()} threads), same files")
