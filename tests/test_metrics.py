"""as_ai.metrics against pROC's and scikit-learn's published outputs (tests/data)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn import metrics as skm

from as_ai.metrics import (
    BinaryReport,
    DeLongResult,
    Kappa,
    auc_ci,
    binary_report,
    cohen_kappa,
    delong_placements,
    delong_test,
    expected_calibration_error,
    kappa_band,
)

TOL = 1e-12  # pROC's numbers are printed to 15 significant digits


@pytest.fixture(scope="module")
def expected(refdata):
    return json.loads((refdata / "expected_values.json").read_text())


@pytest.fixture(scope="module")
def asah(refdata):
    """pROC's aSAH: cases are outcome == "Poor" (41), controls "Good" (72); wfns used as numeric."""
    data = pd.read_csv(refdata / "aSAH.csv")
    return (data["outcome"] == "Poor").astype(int).to_numpy(), data


# ------------------------------------------------------------------------------------------------ pROC
@pytest.mark.parametrize("marker", ["wfns", "ndka"])
def test_auc_matches_proc(asah, expected, marker):
    """R: ``auc(roc(aSAH$outcome, aSAH$<marker>))`` (direction "<"), tolerance 1e-12; and sklearn agrees."""
    y, data = asah
    _, auc, _ = auc_ci(y, data[marker])
    assert auc == pytest.approx(expected["pROC_aSAH"]["auc"][marker], abs=TOL)
    assert auc == pytest.approx(skm.roc_auc_score(y, data[marker]), abs=TOL)


def test_ci_auc_matches_proc(asah, expected):
    """R: ``ci.auc(roc(aSAH$outcome, aSAH$ndka))`` = [0.50124…, 0.61195…, 0.72267…], tolerance 1e-12."""
    y, data = asah
    got = auc_ci(y, data["ndka"], level=0.95)
    np.testing.assert_allclose(got, expected["pROC_aSAH"]["ci.auc_delong"]["ndka"], rtol=0, atol=TOL)


def test_ci_auc_female_subset_matches_proc(asah, expected):
    """R: ``ci.auc(roc(outcome, ndka, subset = gender == "Female"))``, printed to 10 decimals: tolerance 1e-9."""
    y, data = asah
    female = (data["gender"] == "Female").to_numpy()
    got = auc_ci(y[female], data["ndka"][female])
    np.testing.assert_allclose(got, expected["pROC_aSAH"]["ci.auc_delong"]["ndka_female_subset"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("marker", ["wfns", "ndka", "s100b"])
def test_delong_variance_matches_proc_var(asah, expected, marker):
    """R: ``var(roc(aSAH$outcome, aSAH$<marker>), method="delong")``, read back from the CI half-width (1e-12)."""
    y, data = asah
    low, auc, high = auc_ci(y, data[marker], level=0.95)
    half = high - auc if high < 1 else auc - low
    assert (half / norm.ppf(0.975)) ** 2 == pytest.approx(expected["pROC_aSAH"]["var_delong"][marker], abs=TOL)


@pytest.mark.parametrize(
    "a, b, key",
    [("wfns", "s100b", "wfns_vs_s100b"), ("wfns", "ndka", "wfns_vs_ndka"), ("ndka", "s100b", "ndka_vs_s100b")],
)
def test_delong_paired_test_matches_proc(asah, expected, a, b, key):
    """R: ``roc.test(roc(outcome, a), roc(outcome, b), method="delong", paired=TRUE)``: Z, p and the 95% CI
    of the AUC difference, tolerance 1e-12."""
    y, data = asah
    ref = expected["pROC_aSAH"]["roc.test_delong_paired"][key]
    res = delong_test(y, data[a], data[b])
    assert res.z == pytest.approx(ref["Z"], abs=TOL)
    assert res.p == pytest.approx(ref["p"], abs=TOL)
    np.testing.assert_allclose(res.ci, ref["ci_diff"], rtol=0, atol=TOL)
    assert res.difference == pytest.approx(res.auc_a - res.auc_b)
    assert (res.level, res.n) == (0.95, 113)


def test_delong_reversed_order_and_one_sided(asah, expected):
    """R (pROC tests): ``roc.test(s100b, wfns)`` gives −Z and the same p;
    ``alternative="greater"/"less"`` give 0.013587… / 0.986412… (tolerance 1e-12)."""
    y, data = asah
    ref = expected["pROC_aSAH"]["roc.test_delong_paired"]
    rev = delong_test(y, data["s100b"], data["wfns"])
    assert rev.z == pytest.approx(-2.20898359144091, abs=TOL)
    assert rev.p == pytest.approx(0.0271757822291882, abs=TOL)
    one = ref["wfns_vs_s100b_one_sided"]
    assert delong_test(y, data["wfns"], data["s100b"], alternative="greater").p == pytest.approx(one["greater"], abs=TOL)
    assert delong_test(y, data["wfns"], data["s100b"], alternative="less").p == pytest.approx(one["less"], abs=TOL)


@pytest.mark.parametrize("marker", ["wfns", "ndka", "s100b"])
def test_delong_placements_match_proc(asah, refdata, marker):
    """pROC test suite ``helper-deLongPlacementsCpp-expected.R``: X (cases) and Y (controls) placements in
    data-row order, tolerance 1e-14."""
    y, data = asah
    ref = pd.read_csv(refdata / "pROC_delong_placements_expected.csv")
    ref = ref[ref["marker"] == marker]
    v10, v01 = delong_placements(y, data[marker])
    np.testing.assert_allclose(v10, ref.loc[ref["kind"] == "case_X", "placement"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(v01, ref.loc[ref["kind"] == "control_Y", "placement"], rtol=0, atol=1e-14)


def test_delong_result_to_dict_is_json(asah):
    y, data = asah
    res = delong_test(y, data["wfns"], data["ndka"], level=0.9)
    d = json.loads(json.dumps(res.to_dict()))
    assert isinstance(res, DeLongResult) and d["level"] == 0.9 and len(d["ci"]) == 2
    assert d["ci"][0] < d["difference"] < d["ci"][1]


def test_identical_scores_give_no_difference():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.5, 0.3, 0.4, 0.9, 0.8]
    res = delong_test(y, s, s)
    assert (res.z, res.p, res.ci) == (0.0, 1.0, (0.0, 0.0))


def test_perfect_separation_clips_ci():
    low, auc, high = auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert (low, auc, high) == (1.0, 1.0, 1.0)


Y6 = [0, 0, 1, 0, 1, 1]
S6 = [0.1, 0.3, 0.35, 0.4, 0.8, 0.9]


@pytest.mark.parametrize(
    "func, args, kwargs, message",
    [
        (auc_ci, (Y6, S6[:-1]), {}, "one value per label"),
        (auc_ci, ([1] * 6, S6), {}, "at least 2 positive"),
        (auc_ci, ([0, 0, 0, 0, 0, 1], S6), {}, "1 positive"),
        (auc_ci, (Y6, [np.nan] + S6[1:]), {}, "missing or infinite"),
        (auc_ci, ([0, 0, 2, 0, 1, 1], S6), {}, "0/1 labels"),
        (auc_ci, (["no", "no", "yes", "no", "yes", "yes"], S6), {}, "0/1"),
        (auc_ci, ([0, 0, np.nan, 0, 1, 1], S6), {}, "missing"),
        (auc_ci, (Y6, ["a"] * 6), {}, "numeric"),
        (auc_ci, (Y6, S6), {"level": 95}, "level"),
        (auc_ci, (np.ones((2, 3)), S6), {}, "1-D"),
        (delong_test, (Y6, S6, S6[:-1]), {}, "score_b must have one value"),
        (delong_test, (Y6, S6, S6), {"alternative": "bigger"}, "alternative"),
        (delong_placements, ([1] * 6, S6), {}, "negative"),
    ],
)
def test_auc_errors(func, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        func(*args, **kwargs)


# ------------------------------------------------------------------------------------------- binary
def test_binary_report_agrees_with_sklearn():
    """Every threshold metric equals scikit-learn's on the same predictions (exact up to 1e-12)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    for threshold in (0.3, 0.5, 0.62):
        r = binary_report(y, prob, threshold)
        pred = (prob >= threshold).astype(int)
        tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
        assert r.confusion == (tn, fp, fn, tp) and r.n == 500 and r.threshold == threshold
        assert r.accuracy == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert r.precision == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
        assert r.recall == pytest.approx(skm.recall_score(y, pred), abs=1e-12) and r.sensitivity == r.recall
        assert r.specificity == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=1e-12)
        assert r.f1 == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
        assert r.auc == pytest.approx(skm.roc_auc_score(y, prob), abs=1e-12)


def test_binary_report_undefined_ratios_are_none_and_json():
    r = binary_report([0, 0, 0], [0.1, 0.2, 0.3], threshold=0.5)
    assert r.confusion == (3, 0, 0, 0) and r.accuracy == 1.0 and r.specificity == 1.0
    assert (r.precision, r.recall, r.f1, r.auc) == (None, None, None, None)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["confusion"] == {"tn": 3, "fp": 0, "fn": 0, "tp": 0} and d["precision"] is None
    assert isinstance(r, BinaryReport)


def test_threshold_is_inclusive():
    """A probability equal to the threshold is predicted positive."""
    assert binary_report([0, 1], [0.5, 0.5], 0.5).confusion == (0, 1, 0, 1)


def test_ece_by_hand_and_perfect_calibration():
    """Bins (0, 0.5] and (0.5, 1]: |0 − 0.2|·1/4 + |1 − 0.7667|·3/4 = 0.225 (exact to 1e-12)."""
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.6, 0.8, 0.9], n_bins=2) == pytest.approx(0.225, abs=1e-12)
    # frequencies equal to confidences in every bin -> ECE 0
    y = [0, 0, 0, 1] * 5 + [1, 1, 1, 0] * 5
    p = [0.25] * 20 + [0.75] * 20
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # always saying 1.0 on a coin flip is miscalibrated by 0.5
    assert expected_calibration_error([0, 1] * 10, [1.0] * 20) == pytest.approx(0.5, abs=1e-12)
    # 0 and 1 land in the first and last bins
    assert expected_calibration_error([0, 1], [0.0, 1.0], n_bins=10) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(y=[0, 1], prob=[0.2, 1.2]), "in \\[0, 1\\]"),
        (dict(y=[0, 1], prob=[0.2]), "one value per label"),
        (dict(y=[0, 1], prob=[0.2, np.nan]), "missing"),
        (dict(y=[0, 1], prob=[0.2, 0.8], threshold=2.0), "threshold"),
        (dict(y=[0, 1], prob=[0.2, 0.8], n_bins=0), "n_bins"),
        (dict(y=[], prob=[]), "empty"),
    ],
)
def test_binary_report_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        binary_report(kwargs.pop("y"), kwargs.pop("prob"), **kwargs)


# ------------------------------------------------------------------------------------------- kappa
@pytest.mark.parametrize(
    "file, weights, key, decimals",
    [
        ("kappa_ap2008_table1.csv", None, ("ap2008_table1", "kappa"), 3),
        ("kappa_ap2008_table4.csv", None, ("ap2008_table4", "kappa"), 4),
        ("kappa_sklearn_weighting_example.csv", None, ("weighting_example", "unweighted"), 4),
        ("kappa_sklearn_weighting_example.csv", "linear", ("weighting_example", "linear"), 4),
        ("kappa_sklearn_weighting_example.csv", "quadratic", ("weighting_example", "quadratic"), 4),
    ],
)
def test_cohen_kappa_matches_sklearn_published(refdata, expected, file, weights, key, decimals):
    """scikit-learn ``test_cohen_kappa`` (Artstein & Poesio 2008): ``assert_almost_equal(kappa, ref, decimal)``,
    i.e. tolerance 1.5·10^-decimals; and equal to ``cohen_kappa_score`` to 1e-12."""
    data = pd.read_csv(refdata / file)
    ref = expected["cohen_kappa_sklearn_tests"][key[0]][key[1]]
    k = cohen_kappa(data["rater1"], data["rater2"], weights=weights)
    assert k.kappa == pytest.approx(ref, abs=1.5 * 10 ** -decimals)
    assert k.kappa == pytest.approx(skm.cohen_kappa_score(data["rater1"], data["rater2"], weights=weights), abs=1e-12)
    assert (k.weights, k.n, k.band) == (weights, 100, kappa_band(k.kappa))


def test_cohen_kappa_random_grades_agree_with_sklearn():
    """Ordinal grades 0–4 with missing categories for one rater: all weightings equal sklearn's (1e-12)."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 0, 3)
    for w in (None, "linear", "quadratic"):
        assert cohen_kappa(a, b, weights=w).kappa == pytest.approx(skm.cohen_kappa_score(a, b, weights=w), abs=1e-12)
    text = cohen_kappa(["AS", "no", "AS", "no"], ["AS", "no", "no", "no"])
    assert text.kappa == pytest.approx(0.5) and text.observed_agreement == 0.75


@pytest.mark.parametrize(
    "value, band",
    [(-0.1, "poor"), (0.0, "slight"), (0.2, "slight"), (0.348, "fair"), (0.4, "fair"), (0.5, "moderate"),
     (0.61, "substantial"), (0.8, "substantial"), (0.8013, "almost perfect"), (1.0, "almost perfect")],
)
def test_landis_koch_bands(value, band):
    """Landis & Koch (1977) bands as listed in expected_values.json."""
    assert kappa_band(value) == band


@pytest.mark.parametrize(
    "a, b, kwargs, message",
    [
        ([0, 1, 2], [0, 1], {}, "same cases"),
        ([0, 1, 2], [0, 1, 2], {"weights": "cubic"}, "weights must be one of"),
        ([0, 1, None], [0, 1, 2], {}, "missing"),
        ([0, 1, np.nan], [0, 1, 2], {}, "missing"),
        ([1, 1, 1], [1, 1, 1], {}, "undefined"),
    ],
)
def test_cohen_kappa_errors(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cohen_kappa(a, b, **kwargs)


def test_kappa_to_dict_is_json():
    k = cohen_kappa([0, 1, 2, 2], [0, 1, 2, 1], weights="quadratic")
    d = json.loads(json.dumps(k.to_dict()))
    assert isinstance(k, Kappa) and d["weights"] == "quadratic" and d["band"] == k.band and d["n"] == 4


def test_docstring_examples_run():
    """The examples in the docstrings are what users copy: they must stay true."""
    import doctest

    import as_ai.agreement
    import as_ai.metrics

    for module in (as_ai.metrics, as_ai.agreement):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
