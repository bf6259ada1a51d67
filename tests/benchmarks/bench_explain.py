"""Benchmarks of the explanations: Grad-CAM latency; LIME time, speed-up over the lime package and fidelity.

Run: ``.venv/bin/python -m pytest -q -m benchmark -s tests/benchmarks/bench_explain.py``

Side by side, in one run, on the same model (the bundled demo ensemble, or a random-weight stand-in when
it is not built), with torch on all the machine's cores:

* **Speed** (``test_lime_speed``), on a 2000 px phantom (a real AP pelvis is 2000-3000 px a side) and a
  512 px one (the demo's phantoms), runs interleaved, best of 2:
  ``as_ai.explain.lime`` as the Space calls it (samples until the top regions are stable, bfloat16
  scoring where native) against ``lime defaults``: ``LimeImageExplainer.explain_instance`` with its
  default 1,000 samples and ``batch_size=10``, and the classifier function one would write, on the
  model's own 224 px view with the same SLIC superpixels; and at 512 px also on the radiograph as given
  (superpixels mapped to its grid; pixels outside the model's crop joined to the nearest one).
* **Fidelity** (``test_lime_fidelity``), on 20 phantoms of the external centres (half AS): the top-5
  superpixels and the weights of ``as_ai.explain.lime`` and of lime's defaults (1,000 samples), each
  compared with lime run with 5,000 samples on an independent random design (float32) -- the reference.
  Goal (issue #23): top-5 agreement >= 4/5 (mean over phantoms) and weight correlation >= 0.95 on every one;
  printed, with whether lime's own defaults meet it. Checked: ours stays within 0.5 of lime's defaults'
  mean top-5 agreement, and every correlation >= 0.9.
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before lime imports tqdm: its data_labels shows a bar per image

import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from as_ai import _lime, explain as ex  # noqa: E402
from as_ai.hub import DEMO_DIR  # noqa: E402
from as_ai.imaging import Preprocess, load_radiograph  # noqa: E402

pytestmark = pytest.mark.benchmark
NUM_SAMPLES = 1000
REPEATS = 2  # best of: the machine is shared, the minimum is the least disturbed run


@pytest.fixture(scope="module")
def diagnoser():
    from as_ai.diagnosis import Diagnoser

    torch.set_num_threads(os.cpu_count() or 1)  # the machine's cores, as the library and the Space run
    if (DEMO_DIR / "diagnosis" / "as_ai.json").is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = Diagnoser.from_pretrained(DEMO_DIR / "diagnosis")
        print(f"\nmodel: bundled demo {d!r}")
        return d
    import timm

    torch.manual_seed(0)
    members = {n: timm.create_model("mobilenetv3_small_050", num_classes=2) for n in ("a", "b")}
    d = Diagnoser(members, archs={n: "mobilenetv3_small_050" for n in members}, preprocess=Preprocess())
    print(f"\nmodel: random-weight stand-in {d!r} (the demo model is not built)")
    return d


def _phantom(size: int):
    from as_ai.synthetic import pelvis
    from as_ai.synthetic.phone import to_display

    return load_radiograph(to_display(pelvis.sample(11, center="B", size=size).image))


@pytest.fixture(scope="module")
def radiograph():
    return _phantom(512)


def _naive_classifier(diagnoser, *, native: bool):
    """What a user of lime would write: a batch of RGB images -> model tensors -> [P(non-AS), P(AS)]."""
    _, by_size = ex.ensemble_view(diagnoser)
    big = max(by_size)

    def fn(images: np.ndarray) -> np.ndarray:
        if native:  # full radiographs: the diagnoser's own preprocessing, one image at a time
            x = diagnoser.model_input([np.ascontiguousarray(im[..., 0], dtype=np.float32) for im in images])
        else:       # the model's view already: normalise, and resize for members with smaller inputs
            g = torch.from_numpy(np.asarray(images[..., 0], dtype=np.float32))
            x = {}
            for s, p in by_size.items():
                gs = g if s == big else F.interpolate(g[:, None], size=(s, s), mode="bilinear", antialias=True)[:, 0]
                mean, std = torch.tensor(p.mean).view(1, 3, 1, 1), torch.tensor(p.std).view(1, 3, 1, 1)
                x[s] = (gs[:, None].expand(-1, 3, -1, -1) - mean) / std
        with torch.no_grad():
            p = diagnoser.predict_tensor(x)[0].double().numpy()
        return np.stack([1 - p, p], axis=1)

    return fn


def _lime_default(image: np.ndarray, segments: np.ndarray, classifier) -> tuple[np.ndarray, float]:
    from lime.lime_image import LimeImageExplainer

    t0 = time.perf_counter()
    exp = LimeImageExplainer(random_state=0).explain_instance(
        np.repeat(image[..., None], 3, axis=2).astype(np.float64), classifier, labels=(1,), top_labels=None,
        hide_color=None, num_features=int(segments.max()) + 1, num_samples=NUM_SAMPLES,
        segmentation_fn=lambda _img: segments, random_seed=0)  # batch_size: lime's default (10)
    seconds = time.perf_counter() - t0
    w = np.zeros(int(segments.max()) + 1)
    for k, v in exp.local_exp[1]:
        w[k] = v
    return w, seconds


def _top5(w: np.ndarray) -> set[int]:
    return set(np.argsort(-w, kind="stable")[:5].tolist())


def test_gradcam_latency(diagnoser, radiograph, record):
    ex.gradcam(diagnoser, radiograph)  # warm-up
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        e = ex.gradcam(diagnoser, radiograph)
        times.append(time.perf_counter() - t0)
    print(f"\nGrad-CAM on a {radiograph.shape[0]}x{radiograph.shape[1]} radiograph, "
          f"{len(e.members)} members: median {1000 * np.median(times):.1f} ms, "
          f"min {1000 * min(times):.1f} ms ({torch.get_num_threads()} torch threads)")
    assert e.heatmap.shape == radiograph.shape
    record("gradcam_ms", 1000 * float(np.median(times)), "ms", baseline_is="none (median of 10)")


def _full_segments(segments: np.ndarray, shape: tuple[int, int], preprocess) -> np.ndarray:
    """The view's superpixels on the radiograph's grid; pixels outside the model's crop join the nearest one,
    so that ``lime`` sees the same superpixels (and draws the same on/off samples) as ours."""
    from scipy import ndimage

    full = ex.to_input_grid(segments.astype(np.float32), shape, preprocess, mode="nearest", fill=-1)
    outside = full < 0
    if outside.any():
        idx = ndimage.distance_transform_edt(outside, return_distances=False, return_indices=True)
        full = full[tuple(idx)]
    return full.astype(np.int32)


@pytest.mark.parametrize("size", [2000, 512])
def test_lime_speed(diagnoser, size, record):
    radiograph = _phantom(size)
    setup = ex.lime_setup(diagnoser, radiograph, n_segments=_lime.N_SEGMENTS)
    segments, view = setup.segments, setup.view
    naive_view = _naive_classifier(diagnoser, native=False)
    ex.lime(diagnoser, radiograph)  # warm-up: builds the scoring copy once per diagnoser, as the Space does
    ours_t, base_t, nat_t = [], [], []
    for _ in range(REPEATS):  # interleaved, so that load from other processes hits both alike
        t0 = time.perf_counter()
        e = ex.lime(diagnoser, radiograph, seed=0)  # ours, the public function with its defaults
        ours_t.append(time.perf_counter() - t0)
        base_w, s = _lime_default(view, segments, naive_view)
        base_t.append(s)
    if size <= 1024:  # lime on the radiograph itself: minutes at 2000 px (round 1 measured 355 s), once at 512
        full_seg = _full_segments(segments, radiograph.shape, setup.preprocess)
        nat_w, s = _lime_default(np.asarray(radiograph.pixels), full_seg, _naive_classifier(diagnoser, native=True))
        nat_t.append(s)
    ours_s, base_s = min(ours_t), min(base_t)
    ours_w = np.asarray(e.weights)
    agree = len(_top5(ours_w) & _top5(base_w))
    corr = float(np.corrcoef(ours_w, base_w)[0, 1])
    lines = [f"\nLIME on a {size} px phantom, {len(ours_w)} SLIC superpixels, {torch.get_num_threads()} torch threads:",
             f"  as_ai.explain.lime ({e.params['num_samples']} samples until stable, {e.params['precision']}): "
             f"{ours_s:6.2f} s",
             f"  lime defaults on the model's {view.shape[0]} px view (1000 samples): {base_s:6.2f} s -> speed-up "
             f"{base_s / ours_s:5.1f}x; top-5 agree {agree}/5, weight corr {corr:.3f}"]
    if nat_t:
        lines.append(f"  lime defaults on the {size} px radiograph:          {nat_t[0]:6.2f} s -> speed-up "
                     f"{nat_t[0] / ours_s:5.1f}x; top-5 agree {len(_top5(ours_w) & _top5(nat_w))}/5")
    print("\n".join(lines))
    assert agree >= 3 and corr >= 0.9  # fidelity proper: test_lime_fidelity (against 5,000 samples)
    sfx = "" if size == 2000 else f"_{size}px"
    record(f"lime_seconds{sfx}", ours_s, "s", baseline=base_s, ratio=base_s / ours_s,
           ratio_is="speed-up (baseline/value)",
           baseline_is=f"lime defaults (1000 samples, batch 10) on the model's 224 px view, {size} px phantom")
    record(f"lime_speedup_vs_lime_on_model_view{sfx}", base_s / ours_s, "x",
           baseline_is=f"lime defaults on the model's 224 px view ({size} px phantom); top-5 agree {agree}/5, "
                       f"weight corr {corr:.3f}")
    if nat_t:
        record(f"lime_speedup_vs_lime_on_radiograph{sfx}", nat_t[0] / ours_s, "x",
               baseline_is=f"lime defaults (batch 10) on the {size} px radiograph as given")


FIDELITY_PHANTOMS = int(os.environ.get("AS_AI_BENCH_FIDELITY_N", "20"))
REFERENCE_SAMPLES = 5000
REFERENCE_SEED = 12345  # the reference's random design is independent of the ones compared with it


def _fidelity_phantoms(n: int) -> list:
    """``n`` external-centre phantoms (B, C, D in turn), half of them AS by their true grades."""
    from as_ai.synthetic import pelvis

    want = {"AS": n // 2, "non-AS": n - n // 2}
    out, seed = [], 300
    while any(want.values()):
        ph = pelvis.sample(seed, center="BCD"[seed % 3], size=512)
        if want.get(ph.meta["label"], 0) > 0:
            want[ph.meta["label"]] -= 1
            out.append((seed, ph))
        seed += 1
    return out


def test_lime_fidelity(diagnoser, record):
    from as_ai.synthetic.phone import to_display

    rows = []
    for seed, ph in _fidelity_phantoms(FIDELITY_PHANTOMS):
        rg = load_radiograph(to_display(ph.image))
        setup = ex.lime_setup(diagnoser, rg, n_segments=_lime.N_SEGMENTS, precision="float32")
        ref, _ = _lime.run_lime(setup.view, setup.segments, setup.predictor, num_samples=REFERENCE_SAMPLES,
                                batch_size=16, seed=REFERENCE_SEED)
        lime1000, _ = _lime.run_lime(setup.view, setup.segments, setup.predictor, num_samples=1000,
                                     batch_size=16, seed=0)  # lime's defaults, scored batched (same numbers)
        t0 = time.perf_counter()
        e = ex.lime(diagnoser, rg, seed=0)
        seconds = time.perf_counter() - t0
        ours = np.asarray(e.weights)
        rows.append((seed, ph.meta["label"], e.params["num_samples"], seconds,
                     len(_top5(ours) & _top5(ref)), float(np.corrcoef(ours, ref)[0, 1]),
                     len(_top5(lime1000) & _top5(ref)), float(np.corrcoef(lime1000, ref)[0, 1])))
    print(f"\nLIME fidelity against lime with {REFERENCE_SAMPLES} samples (float32, independent design), "
          f"{len(rows)} phantoms, {torch.get_num_threads()} torch threads")
    print("  seed  truth    ours: samples  s     top-5  corr  | lime 1000: top-5  corr")
    for seed, label, n, sec, a, c, a0, c0 in rows:
        print(f"  {seed:4d}  {label:<7} {n:12d} {sec:5.2f}   {a}/5  {c:.3f} |            {a0}/5  {c0:.3f}")
    r = np.array([row[2:] for row in rows], dtype=float)
    print(f"  ours: samples median {np.median(r[:, 0]):.0f} (max {r[:, 0].max():.0f}), top-5 min {r[:, 2].min():.0f}/5 "
          f"mean {r[:, 2].mean():.2f}, corr min {r[:, 3].min():.3f} mean {r[:, 3].mean():.3f}")
    print(f"  lime defaults (1000): top-5 min {r[:, 4].min():.0f}/5 mean {r[:, 4].mean():.2f}, "
          f"corr min {r[:, 5].min():.3f} mean {r[:, 5].mean():.3f}")
    goal = r[:, 2].mean() >= 4 and r[:, 3].min() >= 0.95
    print(f"  issue #23's goal (top-5 >= 4/5 on average, corr >= 0.95 on every phantom): "
          f"{'met' if goal else 'not met'}; by lime's defaults: "
          f"{'met' if r[:, 4].mean() >= 4 and r[:, 5].min() >= 0.95 else 'not met'}")
    # Where regions' weights nearly tie (flat maps of confidently non-AS images) even lime's own 1,000
    # samples disagree with 5,000: the check is that ours stays as faithful as lime's defaults.
    assert r[:, 2].mean() >= r[:, 4].mean() - 0.5 and r[:, 3].min() >= 0.9, "LIME lost fidelity"
    what = f"{len(rows)} phantoms, against lime with {REFERENCE_SAMPLES} samples"
    record("lime_fidelity_top5_mean", r[:, 2].mean(), "of 5", baseline=r[:, 4].mean(),
           baseline_is=f"lime defaults (1000 samples); {what}")
    record("lime_fidelity_top5_min", r[:, 2].min(), "of 5", baseline=r[:, 4].min(),
           baseline_is=f"lime defaults (1000 samples); {what}")
    record("lime_fidelity_corr_min", r[:, 3].min(), "r", baseline=r[:, 5].min(),
           baseline_is=f"lime defaults (1000 samples); {what}")
    record("lime_samples_median", float(np.median(r[:, 0])), "samples", baseline=1000.0,
           baseline_is="lime defaults")
