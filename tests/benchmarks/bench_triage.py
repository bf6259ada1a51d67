"""Triage latency: one patient (goal <= 10 ms p50) and 1,000 patients, each beside a naive baseline.

Run: ``.venv/bin/python -m pytest -m benchmark -s tests/benchmarks/bench_triage.py``. Prints timings and
ratios measured side by side in one run (no timed assertions). Recorded in runs/bench.json: ``triage_ms``
(p50 wall, complete record) and ``triage_1000_patients_ms`` (``predict_frame``), each beside the baseline.

Baseline ("naive"): what a caller without the library's batched path would do — for each patient, build a
one-row array and call the two scikit-learn pipelines (imputer included) directly.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

from as_ai import hub
from as_ai.clinical import TARGETS, Triager, triage
from as_ai.errors import SyntheticModelWarning
from as_ai.synthetic.cohort import make_cohort

DEMO = hub.DEMO_DIR / "triage"


def _side_by_side(fns: dict, reps: int) -> dict[str, dict[str, float]]:
    """Time each function ``reps`` times, interleaved so they share the machine's load; wall and CPU p50/p90 ms.

    CPU time (this thread) shows what a call costs on an idle core; wall time includes waiting for a core
    on a shared machine.
    """
    for fn in fns.values():
        fn()  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            cpu[k].append(time.thread_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: {"wall50": 1e3 * float(np.median(wall[k])), "wall90": 1e3 * float(np.percentile(wall[k], 90)),
                "cpu50": 1e3 * float(np.median(cpu[k]))} for k in fns}


@pytest.mark.benchmark
def test_triage_latency(record):
    warnings.simplefilter("ignore", SyntheticModelWarning)
    tr = Triager.from_pretrained(DEMO)
    frame = make_cohort(1000, seed=42)[tr.schema.names]
    complete = frame.dropna()
    patient = {k: (v.item() if hasattr(v, "item") else v) for k, v in complete.iloc[0].to_dict().items()}
    imputable = next(f.name for f in tr.schema.features if f.imputable)
    partial = {**patient, imputable: None}
    cols = {t: tr.schema.index(tr.config["targets"][t]["inputs"]) for t in TARGETS}

    def naive_one(p: dict) -> None:
        x = np.array([[float(p[n]) if p[n] is not None else np.nan for n in tr.schema.names]])
        for t in TARGETS:
            tr.pipelines[t].predict(x[:, cols[t]])

    triage(patient, model=DEMO)  # load and cache
    load = os.getloadavg()[0]
    print(f"\ntriage latency ({DEMO.name} demo model; load average {load:.1f} on {os.cpu_count()} CPUs)")
    one = {}
    for label, p in (("complete record", patient), (f"{imputable} missing", partial)):
        r = _side_by_side({"triage": lambda: triage(p, model=DEMO), "naive": lambda: naive_one(p)}, 300)
        t, n = r["triage"], r["naive"]
        one.setdefault("complete", (t, n))
        print(f"  1 patient, {label:18s} triage() p50 {t['wall50']:6.2f} ms wall (p90 {t['wall90']:6.2f}), "
              f"{t['cpu50']:6.2f} ms CPU | naive pipelines p50 {n['wall50']:6.2f} ms wall, {n['cpu50']:6.2f} ms CPU"
              f" | naive/triage {n['wall50'] / t['wall50']:4.2f}x wall, {n['cpu50'] / t['cpu50']:4.2f}x CPU"
              f" | goal p50 <= 10 ms: {'met' if t['wall50'] <= 10 else 'NOT met'} (wall), "
              f"{'met' if t['cpu50'] <= 10 else 'NOT met'} (CPU)")

    records = frame.to_dict("records")
    t0 = time.perf_counter(); batch = tr.predict_frame(frame); t_batch = time.perf_counter() - t0
    t0 = time.perf_counter(); singles = [triage(r, model=DEMO) for r in records]; t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in records:
        naive_one(r)
    t_naive = time.perf_counter() - t0
    assert [s.basfi for s in singles] == batch["basfi"].tolist()
    print(f"  1,000 patients ({int(frame.isna().any(axis=1).sum())} with a missing value): predict_frame "
          f"{t_batch * 1e3:7.1f} ms | triage() loop {t_loop * 1e3:7.1f} ms ({t_loop / t_batch:5.1f}x) | "
          f"naive per-patient pipelines {t_naive * 1e3:7.1f} ms ({t_naive / t_batch:5.1f}x)")
    t, n = one["complete"]
    record("triage_ms", t["wall50"], "ms", baseline=n["wall50"], ratio=n["wall50"] / t["wall50"],
           ratio_is="speed-up (baseline/value)",
           baseline_is="naive: one-row array into the two scikit-learn pipelines, no validation (p50, complete record)")
    record("triage_1000_patients_ms", t_batch * 1e3, "ms", baseline=t_naive * 1e3, ratio=t_naive / t_batch,
           ratio_is="speed-up (baseline/value)", baseline_is="naive per-patient pipelines, 1,000 patients")
