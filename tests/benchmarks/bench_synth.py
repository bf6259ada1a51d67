"""Benchmark: phantom rendering speed and dataset throughput (``make bench``; not part of ``make test``).

    .venv/bin/python -m pytest -q -s -m benchmark tests/benchmarks/bench_synth.py

Printed, measured in this run:
- phantoms per second at 512 px on one core (BLAS/OpenMP limited to one thread), against the goal of 8/s,
  with the split into anatomy / lesions / acquisition;
- writing a dataset at 512 px with 1 and with 2 worker processes side by side (speed-up), and the
  time for ``AS_AI_BENCH_SYNTH_N`` images (default 3000) on 2 workers against the 5-minute goal.
Asserts nothing about time (shared machines); checks the dataset is complete. Recorded in runs/bench.json:
``synth_phantoms_per_s_one_core``, ``synth_images_per_s`` (2 workers, baseline 1 worker) and
``synth_dataset_images_per_s`` (the full dataset; no baseline).
"""
from __future__ import annotations

import os
import resource
import time

import numpy as np
import pytest

from as_ai.synthetic import pelvis
from as_ai.synthetic.datasets import read_split, write_pxr_dataset

pytestmark = pytest.mark.benchmark


def _one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(1)


def test_phantoms_per_second_one_core(record):
    lim = _one_thread()
    try:
        pelvis.sample(0, size=512)
        n = 40
        t0 = time.perf_counter(); c0 = time.process_time()
        for s in range(n):
            pelvis.sample(s, size=512)
        dt = (time.perf_counter() - t0) / n
        dc = (time.process_time() - c0) / n
        # stages, for where the time goes
        from as_ai.synthetic._acquisition import acquire
        from as_ai.synthetic._anatomy import render_attenuation
        lay = pelvis._layout(3, (3, 3), "A", 512, None, False)
        from as_ai.synthetic import _lesions
        t0 = time.perf_counter()
        A0 = render_attenuation(lay["canvas"], lay["anatomy"])
        t_an = time.perf_counter() - t0
        t0 = time.perf_counter()
        dA = []
        for k in ("left", "right"):
            box = lay["joint_boxes"][k]
            dA.append((box, _lesions.render_joint(lay["canvas"], lay["sides"][k], box, 3, lay["draws"][k], None,
                                                  lay["mimic_draws"])))
        t_les = time.perf_counter() - t0
        t0 = time.perf_counter()
        acquire(A0, dA, lay["centre"], lay["canvas"].ps, lay["anat_ref"], lay["acq_rng"])
        t_acq = time.perf_counter() - t0
    finally:
        if lim is not None:
            lim.unregister() if hasattr(lim, "unregister") else lim.__exit__(None, None, None)
    print(f"\n[synth] 512 px, one core: {1 / dt:.2f} phantoms/s wall ({dt * 1000:.0f} ms each), "
          f"{1 / dc:.2f}/s of CPU time ({dc * 1000:.0f} ms; wall > CPU means the core is shared); "
          f"goal 8/s -> ratio {1 / dt / 8:.2f} wall, {1 / dc / 8:.2f} CPU; stages: anatomy {t_an * 1000:.0f} ms, "
          f"lesions {t_les * 1000:.0f} ms, acquisition {t_acq * 1000:.0f} ms")
    record("synth_phantoms_per_s_one_core", 1 / dt, "phantoms/s", baseline_is="none (goal: 8/s at 512 px)")


def test_dataset_throughput(tmp_path, record):
    n_full = int(os.environ.get("AS_AI_BENCH_SYNTH_N", "3000"))
    n_small = max(10, n_full // 20)
    # side by side: the same small dataset with 1 and 2 workers
    t0 = time.perf_counter()
    write_pxr_dataset(tmp_path / "w1", n=n_small, n_external=1, seed=1, size=512, workers=1, progress=False)
    t1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_pxr_dataset(tmp_path / "w2", n=n_small, n_external=1, seed=1, size=512, workers=2, progress=False)
    t2 = time.perf_counter() - t0
    a = sorted((tmp_path / "w1" / "train").glob("*.png"))
    b = sorted((tmp_path / "w2" / "train").glob("*.png"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]  # same bytes whatever the workers
    print(f"\n[synth] {n_small + 2} images at 512 px: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s "
          f"-> speed-up {t1 / t2:.2f}x")
    n_small_imgs = n_small + 2  # train + 1 external + its phone photo
    # the full dataset (train n, external n/5, phone photos of the external images)
    n_train = int(round(n_full / 1.2))
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN); s0 = resource.getrusage(resource.RUSAGE_SELF)
    out = write_pxr_dataset(tmp_path / "full", n=n_train, seed=2, size=512, workers=2, progress=False)
    tf = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN); s1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ((c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
           + (s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime))
    n_imgs = len(read_split(out / "train")) + len(read_split(out / "external"))
    assert n_imgs == n_train + max(1, n_train // 5)
    print(f"[synth] {n_imgs} images (+{len(read_split(out / 'external_phone'))} phone photos) at 512 px on 2 workers: "
          f"{tf:.0f} s ({n_imgs / tf:.1f} img/s); goal 3000 in 300 s -> projected {tf * 3000 / n_imgs:.0f} s, "
          f"ratio to goal {300 / (tf * 3000 / n_imgs):.2f}; CPU {cpu / n_imgs * 1000:.0f} ms per image "
          f"(incl. its share of phone photos and PNG/JPEG encoding) -> on 2 free cores {cpu * 3000 / n_imgs / 2:.0f} s "
          f"for 3000")
    assert np.isfinite(tf)
    record("synth_images_per_s", n_small_imgs / t2, "images/s", baseline=n_small_imgs / t1, ratio=t1 / t2,
           ratio_is="speed-up (value/baseline)", baseline_is=f"the same {n_small_imgs} images with 1 worker")
    record("synth_dataset_images_per_s", n_imgs / tf, "images/s",
           baseline_is=f"none ({n_imgs} images + phone photos on 2 workers; goal: 3000 in 300 s)")
