"""Explanations: Grad-CAM, LIME, NormLIME and their faithfulness measures (as_ai.explain).

Most tests use ``BlobNet``, a tiny CNN with fixed weights whose P(AS) rises with image brightness, so
the right answer is known: every explanation must point at the bright blob.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from as_ai import _lime, explain as ex
from train import faithfulness
from as_ai.diagnosis import Diagnoser
from as_ai.imaging import Preprocess


class BlobNet(nn.Module):
    """timm-shaped CNN: features = 8x8-pooled ReLU(brightness - 0.45); logit(AS) grows with them."""

    def __init__(self, gain: float = 3.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(2, 2)
        self.feature_info = [{"module": "conv", "reduction": 1, "num_chs": 2},
                             {"module": "pool", "reduction": 8, "num_chs": 2}]
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, :, 0, 0] = 1.0 / 3  # mean of the normalised channels
            self.conv.weight[1, :, 0, 0] = -1.0 / 3
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0], [gain, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, -1.0]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def blob_diagnoser(sizes: dict[str, int] | None = None, weights: dict[str, float] | None = None) -> Diagnoser:
    sizes = sizes or {"a": 224}
    members = {n: BlobNet() for n in sizes}
    return Diagnoser(members, archs={n: "blobnet" for n in sizes}, preprocess=Preprocess(), input_sizes=sizes,
                     weights=weights)


def blob_image(h: int = 300, w: int = 420, *, center: tuple[int, int] = (120, 250), r: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 0.1, np.float32)
    img[(yy - center[0]) ** 2 + (xx - center[1]) ** 2 < r * r] = 0.9
    return img


def peak(hm: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(hm), hm.shape))


# ---------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("shape", [(300, 420), (420, 300), (256, 256), (1000, 800)])
def test_to_input_grid_undoes_the_model_view(shape):
    rng = np.random.default_rng(0)
    from scipy import ndimage

    img = ndimage.gaussian_filter(rng.random(shape), 6).astype(np.float32)
    img = (img - img.min()) / np.ptp(img)
    d = blob_diagnoser()
    view, p = ex.model_view(d, ex.load_radiograph(img))
    back = ex.to_input_grid(view, shape, p)
    seen = ex.to_input_grid(np.ones_like(view), shape, p, mode="nearest") > 0.5
    inner = ndimage.binary_erosion(seen, iterations=4)
    assert np.corrcoef(back[inner], img[inner])[0, 1] > 0.99
    assert np.all(back[~ndimage.binary_dilation(seen, iterations=6)] == 0)


# ---------------------------------------------------------------------------------------------- Grad-CAM
def test_gradcam_points_at_the_blob_on_the_input_grid():
    img = blob_image()
    d = blob_diagnoser()
    e = ex.gradcam(d, img)
    assert e.heatmap.shape == img.shape and e.heatmap.dtype == np.float32
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() == pytest.approx(1.0)
    y, x = peak(e.heatmap)
    assert (y - 120) ** 2 + (x - 250) ** 2 < 30 ** 2
    assert set(e.members) == {"a"}
    # columns the centre crop cuts off get no heat
    top, left, rh, rw = ex.crop_box(300, 420, Preprocess())
    cut = int(left * 420 / rw) - 2
    assert np.all(e.heatmap[:, :cut] == 0)
    assert e.probability == pytest.approx(float(d.predict_proba([img])[0]), abs=1e-6)


def test_gradcam_ensemble_map_is_the_weighted_member_mean():
    d = blob_diagnoser({"a": 224, "b": 160}, weights={"a": 3.0, "b": 1.0})
    img = blob_image()
    e = ex.gradcam(d, img)
    expected = 0.75 * e.members["a"] + 0.25 * e.members["b"]
    expected /= expected.max()
    assert np.abs(e.heatmap - expected).max() < 1e-4
    assert e.params["weights"] == pytest.approx({"a": 0.75, "b": 0.25})


def test_gradcam_through_the_diagnoser_and_to_dict_is_json():
    d = blob_diagnoser()
    res = d(blob_image(), explain="gradcam")
    assert res.explanation.method == "gradcam"
    out = json.loads(json.dumps(res.to_dict()))
    hm = np.array(out["explanation"]["heatmap"])
    assert max(hm.shape) <= 64 and out["explanation"]["shape"] == [300, 420]


# ------------------------------------------------------------------------------------------------- LIME
def test_batched_explainer_draws_the_same_samples_as_lime():
    from lime.lime_image import LimeImageExplainer

    rng = np.random.default_rng(1)
    img = rng.random((40, 48, 3))
    segments = (np.arange(40)[:, None] // 10 * 6 + np.arange(48)[None, :] // 8).astype(np.int32)

    def clf(batch: np.ndarray) -> np.ndarray:
        p = batch[:, :20, :24, 0].mean(axis=(1, 2))
        return np.stack([1 - p, p], 1)

    fudged = _lime.mean_fill(img[..., 0], segments)
    fudged = np.repeat(fudged[..., None], 3, axis=2)
    d0, l0 = LimeImageExplainer(random_state=3).data_labels(img, fudged, segments, clf, 50, batch_size=10)
    d1, l1 = _lime.BatchedLimeImageExplainer(random_state=3).data_labels(img, fudged, segments, clf, 50,
                                                                           batch_size=64)
    np.testing.assert_array_equal(d0, d1)
    np.testing.assert_allclose(l0, l1, atol=1e-12)


def test_mask_predictor_equals_scoring_the_perturbed_images():
    d = blob_diagnoser({"a": 224, "b": 160})
    setup = ex.lime_setup(d, blob_image(), n_segments=32)
    n = int(setup.segments.max()) + 1
    data = np.random.default_rng(0).integers(0, 2, (12, n))
    fast = setup.predictor.predict_masks(data)
    hidden = _lime.mean_fill(setup.view, setup.segments)
    imgs = np.where(data.astype(bool)[:, setup.segments], setup.view[None], hidden[None])
    slow = setup.predictor(np.repeat(imgs[..., None], 3, axis=3))
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_lime_top_region_is_the_blob():
    d = blob_diagnoser()
    img = blob_image()
    e = ex.lime(d, img, num_samples=200, n_segments=48)
    assert e.heatmap.shape == img.shape and e.segments.shape == img.shape
    assert e.heatmap.max() == pytest.approx(1.0)
    top = e.top_regions(1)[0]
    region = e.segments == top
    blob = blob_image() > 0.5
    assert (region & blob).sum() > 0.5 * region.sum()
    assert e.params["num_samples"] == 200 and e.params["superpixels"] == len(e.weights)
    with pytest.raises(ValueError, match="num_samples"):
        ex.lime(d, img, num_samples=5)


def test_segments_are_dense_labels_that_follow_edges():
    img = blob_image(224, 224, center=(112, 112), r=40)
    seg = _lime.segment_radiograph(img, n_segments=30)
    assert seg.dtype == np.int32 and seg.min() == 0
    assert set(np.unique(seg)) == set(range(seg.max() + 1))
    blob = img > 0.5
    # almost every superpixel lies on one side of the blob's edge
    pure = [max((blob[seg == s]).mean(), 1 - (blob[seg == s]).mean()) for s in range(seg.max() + 1)]
    assert np.mean(np.array(pure) > 0.9) > 0.8


# --------------------------------------------------------------------------------------------- NormLIME
def test_normlime_importance_follows_paddlex_formula(tmp_path):
    rng = np.random.default_rng(0)
    feats, weights = [], []
    for _ in range(6):
        f = np.concatenate([rng.normal(0, 0.1, (4, 3)), rng.normal(5, 0.1, (4, 3))])  # 2 kinds of superpixel
        w = np.concatenate([rng.uniform(0.5, 1.0, 4), rng.uniform(-0.05, 0.05, 4)])
        feats.append(f)
        weights.append(w)
    nl = ex.NormLime.fit(weights, feats, clusters=2, info={"n_segments": 8})
    kind_a = nl.cluster(feats[0][:1])[0]
    expected_a = np.mean([w[:4] ** 2 / np.abs(w).sum() for w in weights])
    expected_b = np.mean([w[4:] ** 2 / np.abs(w).sum() for w in weights])
    assert nl.importance[kind_a] == pytest.approx(expected_a, rel=1e-5)
    assert nl.importance[1 - kind_a] == pytest.approx(expected_b, rel=1e-5)
    combined = nl.combine(weights[0], feats[0])
    np.testing.assert_allclose(combined[:4], weights[0][:4] * expected_a, rtol=1e-5)
    nl.save(tmp_path)
    back = ex.NormLime.load(tmp_path)
    np.testing.assert_array_equal(back.importance, nl.importance)
    assert back.info["n_segments"] == 8
    with pytest.raises(FileNotFoundError, match="train.explain"):
        ex.NormLime.load(tmp_path / "nothing")


def test_normlime_map_for_an_image(tmp_path):
    d = blob_diagnoser()
    imgs = [blob_image(center=(120 + 10 * i, 220 + 15 * i)) for i in range(3)]
    fits = [ex.lime_with_features(d, im, num_samples=100, n_segments=32) for im in imgs]
    nl = ex.NormLime.fit([w for w, _, _ in fits], [f for _, f, _ in fits], clusters=4, info={"n_segments": 32})
    e = ex.explain(d, imgs[0], method="normlime", stats=nl, num_samples=100)
    assert e.method == "normlime" and e.heatmap.shape == imgs[0].shape
    y, x = peak(e.heatmap)
    assert (y - 120) ** 2 + (x - 220) ** 2 < 45 ** 2


# ----------------------------------------------------------------------------------------- faithfulness
def test_deletion_curve_of_gradcam_beats_random_order():
    d = blob_diagnoser()
    img = blob_image()
    e = ex.gradcam(d, img)
    good = faithfulness.deletion_curve(d, img, e.heatmap, steps=10)
    rand = faithfulness.deletion_curve(d, img, None, steps=10)
    assert good.fractions[0] == 0.0 and good.fractions[-1] == 1.0
    assert good.probabilities[0] == pytest.approx(e.probability, abs=1e-6)
    assert good.auc < rand.auc


@pytest.mark.parametrize("hm_peak, expected", [((50, 60), True), ((50, 160), True), ((150, 60), False),
                                               ((5, 5), False)])
def test_si_joint_hit(hm_peak, expected):
    rois = {"sij_left": [140, 30, 190, 80], "sij_right": [40, 30, 90, 80], "hip_left": [40, 120, 100, 180]}
    hm = np.zeros((200, 200), np.float32)
    y, x = hm_peak
    hm[y - 3:y + 3, x - 3:x + 3] = 1.0
    assert faithfulness.si_joint_hit(hm, rois) is expected


def test_explain_rejects_unknown_method():
    with pytest.raises(ValueError, match="gradcam"):
        ex.explain(blob_diagnoser(), blob_image(), method="shap")
    with pytest.raises(ValueError, match="stats="):
        ex.explain(blob_diagnoser(), blob_image(), method="normlime")


def test_lime_until_stable_stops_early_with_the_map_of_a_full_run():
    d = blob_diagnoser()
    img = blob_image()
    auto = ex.lime(d, img, n_segments=48, precision="float32")
    full = ex.lime(d, img, num_samples=1000, n_segments=48, precision="float32")
    assert auto.params["sampling"] == "until stable" and full.params["sampling"] == "fixed"
    assert 160 <= auto.params["num_samples"] < 1000 and full.params["num_samples"] == 1000
    a, f = np.asarray(auto.weights), np.asarray(full.weights)
    assert len(set(auto.top_regions(5)) & set(full.top_regions(5))) >= 4
    assert np.corrcoef(a, f)[0, 1] >= 0.95


def test_lime_progress_reports_every_step_up_to_the_samples_used():
    calls = []
    e = ex.lime(blob_diagnoser(), blob_image(), n_segments=48, progress=lambda done, planned: calls.append((done, planned)))
    assert calls and calls[-1][0] == e.params["num_samples"]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls) and {c[1] for c in calls} == {1000}


def test_lime_in_bfloat16_keeps_the_map_and_reports_the_float32_probability():
    d = blob_diagnoser()
    img = blob_image()
    f32 = ex.lime(d, img, num_samples=300, n_segments=48, precision="float32")
    b16 = ex.lime(d, img, num_samples=300, n_segments=48, precision="bfloat16")
    assert b16.params["precision"] == "bfloat16" and f32.params["precision"] == "float32"
    assert b16.top_regions(1) == f32.top_regions(1)
    assert np.corrcoef(b16.weights, f32.weights)[0, 1] >= 0.95
    assert b16.probability == pytest.approx(float(d.predict_proba([img])[0]), abs=1e-6)


@pytest.mark.parametrize("bad", [dict(num_samples=5), dict(num_samples=True), dict(num_samples=2.5),
                                 dict(precision="half")])
def test_lime_rejects_bad_sampling_or_precision_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ex.lime(blob_diagnoser(), blob_image(), **bad)


def test_train_explain_fits_normlime_and_reports_faithfulness(tmp_path):
    """``python -m train.explain`` end to end with the bundled model on a few small phantoms: NormLIME saved
    and loadable, and a faithfulness report with every method's deletion AUC and SI-joint hit rate."""
    import warnings

    from as_ai.errors import SyntheticModelWarning
    from as_ai.hub import DEMO_DIR
    from as_ai.synthetic.datasets import read_split, write_pxr_dataset
    from train import explain as train_explain

    data = write_pxr_dataset(tmp_path / "pxr", n=4, n_external=0, seed=2, size=256, progress=False)
    assert (read_split(data / "train")["true_label"] == "AS").any()
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        rc = train_explain.main(["--model", str(DEMO_DIR / "diagnosis"), "--data", str(data), "--out", str(out),
                                 "--n", "2", "--num-samples", "64", "--n-segments", "16", "--clusters", "2",
                                 "--faithfulness", "1", "--faith-split", "train"])
    assert rc in (0, None)
    nl = ex.NormLime.load(out)
    assert nl.info["n_segments"] == 16 and nl.importance.shape == (2,)
    report = json.loads((out / "faithfulness.json").read_text())
    assert report["n_images"] == 1
    assert set(report["deletion_auc"]) == {"gradcam", "lime", "normlime", "random_regions", "random_pixels"}
    assert all(0.0 <= v["mean"] <= 1.0 for v in report["deletion_auc"].values())
    assert all(0.0 <= v <= 1.0 for v in report["si_joint_hit_rate"].values())
