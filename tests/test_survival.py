"""as_ai.survival against R's published outputs (survminer, maxstat) and lifelines."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from as_ai.survival import (
    Cutpoint,
    LogRankResult,
    cumulative_risk,
    logrank,
    logrank_scores,
    optimal_cutpoint,
    split_groups,
)


@pytest.fixture(scope="module")
def expected(refdata):
    return json.loads((refdata / "expected_values.json").read_text())


@pytest.fixture(scope="module")
def myeloma(refdata):
    return pd.read_csv(refdata / "myeloma.csv")


# ------------------------------------------------------------------------------------ survminer / maxstat
@pytest.mark.parametrize("variable", ["DEPDC1", "WHSC1", "CRIM1"])
def test_survminer_myeloma_cutpoints(myeloma, expected, variable):
    """R: ``surv_cutpoint(myeloma, time="time", event="event", variables=c("DEPDC1","WHSC1","CRIM1"))``.

    survminer prints cut-offs with one decimal and statistics with 6 decimals: tolerance 1e-6.
    """
    pub = expected["survminer_surv_cutpoint_myeloma"]["published"][variable]
    cp = optimal_cutpoint(myeloma["time"], myeloma["event"], myeloma[variable], minprop=0.1)
    assert cp.cutpoint == pytest.approx(pub["cutpoint"], abs=1e-6)
    assert cp.statistic == pytest.approx(pub["statistic"], abs=1e-6)
    assert cp.variable == variable  # taken from the Series name
    assert cp.n == 256 and cp.dropped == 0
    assert cp.statistic == pytest.approx(cp.statistics.max(), abs=0)
    assert cp.cutpoint == cp.candidates[np.argmax(cp.statistics)]


def test_survminer_myeloma_groups_of_first_rows(myeloma, expected):
    """R: ``surv_categorize(surv_cutpoint(myeloma, ...))`` head; rule low if x <= cut-off (exact)."""
    pub = expected["survminer_surv_cutpoint_myeloma"]["published_head_res_cat"]
    columns = pub["_columns"]
    cuts = {v: optimal_cutpoint(myeloma["time"], myeloma["event"], myeloma[v]) for v in columns}
    groups = {v: split_groups(myeloma[v], cuts[v]) for v in columns}
    for sample, labels in pub.items():
        if sample.startswith("_"):
            continue
        row = int(np.flatnonzero(myeloma["sample"].to_numpy() == sample)[0])
        assert [groups[v][row] for v in columns] == labels, sample


@pytest.mark.parametrize("variable", ["DEPDC1", "WHSC1", "CRIM1"])
def test_every_candidate_and_statistic_of_the_derived_curves(myeloma, refdata, variable):
    """``myeloma_maxstat_curves_derived.csv`` (maxstat's algorithm, every scanned cut): candidates exact,
    low-group sizes exact, statistics to 1e-9 (the file has 12 significant digits)."""
    curves = pd.read_csv(refdata / "myeloma_maxstat_curves_derived.csv")
    ref = curves[curves["variable"] == variable]
    cp = optimal_cutpoint(myeloma["time"], myeloma["event"], myeloma[variable])
    np.testing.assert_array_equal(cp.candidates, ref["cut"].to_numpy())
    n_low = [(myeloma[variable] <= c).sum() for c in cp.candidates]
    np.testing.assert_array_equal(n_low, ref["n_low"].to_numpy())
    np.testing.assert_allclose(cp.statistics, ref["standardized_logrank_stat"].to_numpy(), rtol=0, atol=1e-9)


def test_maxstat_dlbcl_drops_missing_rows(refdata, expected):
    """R: ``maxstat.test(Surv(time, cens) ~ MGE, data=DLBCL, smethod="LogRank")`` → M = 3.1772 at 0.1860526.

    Printed to 4 decimals (M) and 7 significant digits (cut-off): tolerances 5e-5 and 5e-8. R drops the
    2 rows with missing time/cens (N = 40); so must we.
    """
    pub = expected["maxstat_examples"]["DLBCL"]["published"]
    data = pd.read_csv(refdata / "maxstat_DLBCL.csv")
    cp = optimal_cutpoint(data["time"], data["cens"], data["MGE"])
    assert cp.statistic == pytest.approx(pub["M"], abs=5e-5)
    assert cp.cutpoint == pytest.approx(pub["estimated_cutpoint"], abs=5e-8)
    assert (cp.n, cp.dropped) == (40, 2)


def test_maxstat_hohnloser(refdata, expected):
    """R: ``maxstat.test(Surv(month, cens) ~ EF, data=hohnloser, smethod="LogRank")`` → M = 3.5691 at EF 39
    (printed to 4 decimals: tolerance 5e-5; the cut-off is exact)."""
    pub = expected["maxstat_examples"]["hohnloser"]["published"]
    data = pd.read_csv(refdata / "maxstat_hohnloser.csv")
    cp = optimal_cutpoint(data["month"], data["cens"], data["EF"])
    assert cp.statistic == pytest.approx(pub["M"], abs=5e-5)
    assert cp.cutpoint == pub["estimated_cutpoint"]


def test_logrank_scores_by_hand():
    """exactRankTests ``cscores(Surv(c(1,2,2,3), c(1,1,0,1)))``: ties share the largest rank.

    By the formula: time 1 contributes 1/4, time 2 (r=3) 1/2, time 3 (r=4) 1/1 (exact to 1e-12).
    """
    scores = logrank_scores([1, 2, 2, 3], [1, 1, 0, 1])
    np.testing.assert_allclose(scores, [1 - 0.25, 1 - 0.75, 0 - 0.75, 1 - 1.75], atol=1e-12)
    # without ties the scores are centred (they sum to 0)
    assert logrank_scores([4, 1, 3, 2], [1, 0, 1, 1]).sum() == pytest.approx(0.0, abs=1e-12)


def test_minprop_limits_group_sizes(myeloma):
    """Every candidate's low group holds between floor(N·minprop) and floor(N·(1−minprop)) patients."""
    for minprop in (0.1, 0.25, 0.4):
        cp = optimal_cutpoint(myeloma["time"], myeloma["event"], myeloma["DEPDC1"], minprop=minprop)
        n_low = np.array([(myeloma["DEPDC1"] <= c).sum() for c in cp.candidates])
        assert n_low.min() >= int(256 * minprop) and n_low.max() <= int(256 * (1 - minprop))
        assert cp.minprop == minprop


def test_cutpoint_to_dict_is_json(myeloma):
    cp = optimal_cutpoint(myeloma["time"], myeloma["event"], myeloma["CRIM1"])
    d = json.loads(json.dumps(cp.to_dict()))
    assert d["cutpoint"] == 82.3 and d["variable"] == "CRIM1" and len(d["candidates"]) == len(d["statistics"])
    assert isinstance(cp, Cutpoint)


# ---------------------------------------------------------------------------------------------- errors
T = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
E = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]
X = [5.0, 3.0, 8.0, 1.0, 9.0, 2.0, 7.0, 4.0, 6.0, 0.5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(time=T[:-1], event=E, x=X), "same length"),
        (dict(time=T, event=[2] * 10, x=X), "event must be 0"),
        (dict(time=[-1.0] + T[1:], event=E, x=X), "time must be >= 0"),
        (dict(time=T, event=E, x=["a"] * 10), "x must be numeric"),
        (dict(time=T, event=E, x=[np.inf] + X[1:]), "x must be finite"),
        (dict(time=T, event=[0] * 10, x=X), "no events"),
        (dict(time=T, event=E, x=[1.0] * 10), "no candidate cut-off"),
        (dict(time=[np.nan] * 10, event=E, x=X), "no complete rows"),
        (dict(time=T, event=E, x=X, minprop=0.5), "minprop"),
        (dict(time=T, event=E, x=X, minprop=0), "minprop"),
        (dict(time=5.0, event=1, x=2.0), "1-D"),
        (dict(time=np.ones((10, 2)), event=E, x=X), "1-D"),
    ],
)
def test_optimal_cutpoint_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optimal_cutpoint(kwargs.pop("time"), kwargs.pop("event"), kwargs.pop("x"), **kwargs)


def test_missing_rows_are_dropped_not_guessed():
    """A NaN in any column removes that row; the result equals the one on the complete rows."""
    t = np.array(T + [11.0, np.nan])
    e = np.array(E + [np.nan, 1])
    x = np.array(X + [3.5, 2.5])
    cp = optimal_cutpoint(t, e, x, minprop=0.2)
    ref = optimal_cutpoint(T, E, X, minprop=0.2)
    assert (cp.cutpoint, cp.statistic, cp.n, cp.dropped) == (ref.cutpoint, ref.statistic, 10, 2)


@pytest.mark.parametrize(
    "x, cut, message",
    [([1.0, np.nan], 1.0, "missing"), ([1.0, 2.0], np.nan, "finite"), (["a", "b"], 1.0, "numeric")],
)
def test_split_groups_rejects_bad_input(x, cut, message):
    with pytest.raises(ValueError, match=message):
        split_groups(x, cut)


# ------------------------------------------------------------------------------------ KM and log-rank
def test_cumulative_risk_matches_lifelines(myeloma):
    """Risk and band equal 1 − lifelines' KM survival and its 95% interval, at every time (1e-12)."""
    from lifelines import KaplanMeierFitter

    groups = split_groups(myeloma["DEPDC1"], 279.8)
    curves = cumulative_risk(myeloma["time"], myeloma["event"], groups=groups)
    assert sorted(curves) == ["high", "low"]
    for name, curve in curves.items():
        sel = groups == name
        kmf = KaplanMeierFitter().fit(myeloma["time"][sel], myeloma["event"][sel])
        for t in (0.0, 10.0, 30.0, 60.0):
            expected_risk = 1.0 - kmf.survival_function_at_times(t).iloc[0]
            idx = np.searchsorted(curve.time, t, side="right") - 1
            assert curve.risk[idx] == pytest.approx(expected_risk, abs=1e-12)
        ci = kmf.confidence_interval_survival_function_
        np.testing.assert_allclose(curve.lower, 1 - ci.iloc[:, 1].to_numpy(), atol=1e-12)
        np.testing.assert_allclose(curve.upper, 1 - ci.iloc[:, 0].to_numpy(), atol=1e-12)
        assert curve.n == sel.sum() and curve.events == myeloma["event"][sel].sum()
    # the high-expression group is the one with faster-rising risk (survminer's example plot)
    assert curves["high"].risk[-1] > curves["low"].risk[-1]


def test_cumulative_risk_is_a_monotone_probability(myeloma):
    curves = cumulative_risk(myeloma["time"], myeloma["event"])
    c = curves["all"]
    assert list(curves) == ["all"] and c.n == 256
    assert c.time[0] == 0  # myeloma has one event at time 0, so the risk there is 1/256
    assert c.risk[0] == pytest.approx(((myeloma["time"] == 0) & (myeloma["event"] == 1)).sum() / 256, abs=1e-12)
    assert np.all(np.diff(c.risk) >= 0)
    for arr in (c.risk, c.lower, c.upper):
        assert np.all((arr >= 0) & (arr <= 1))
    assert np.all(c.lower <= c.risk + 1e-12) and np.all(c.risk <= c.upper + 1e-12)


def test_cumulative_risk_on_a_common_timeline_and_alpha(myeloma):
    grid = np.arange(0, 61, 12.0)
    groups = split_groups(myeloma["WHSC1"], 3205.6)
    c95 = cumulative_risk(myeloma["time"], myeloma["event"], groups=groups, timeline=grid)
    c80 = cumulative_risk(myeloma["time"], myeloma["event"], groups=groups, timeline=grid, alpha=0.2)
    for g in ("low", "high"):
        np.testing.assert_array_equal(c95[g].time, grid)
        np.testing.assert_allclose(c95[g].risk, c80[g].risk)
        assert np.all(c80[g].upper - c80[g].lower <= c95[g].upper - c95[g].lower + 1e-12)
    d = json.loads(json.dumps(c95["low"].to_dict()))
    assert d["time"] == grid.tolist() and len(d["risk"]) == len(grid)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=1.5), "alpha"),
        (dict(timeline=[3.0, 1.0]), "timeline"),
        (dict(groups=["a"] * 3), "same length"),
    ],
)
def test_cumulative_risk_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cumulative_risk([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 1], **kwargs)


def test_logrank_matches_lifelines_two_and_three_groups(myeloma):
    """Equals lifelines' ``logrank_test`` (two groups) and ``multivariate_logrank_test`` (three), 1e-12."""
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    t, e = myeloma["time"].to_numpy(), myeloma["event"].to_numpy()
    groups = split_groups(myeloma["DEPDC1"], 279.8)
    res = logrank(t, e, groups)
    hi, lo = groups == "high", groups == "low"
    ref = logrank_test(t[hi], t[lo], e[hi], e[lo])
    assert isinstance(res, LogRankResult)
    assert res.statistic == pytest.approx(ref.test_statistic, abs=1e-12)
    assert res.p_value == pytest.approx(ref.p_value, abs=1e-12)
    assert (res.df, res.n, res.groups) == (1, 256, ("high", "low"))
    assert res.p_value < 0.01  # the optimal split separates survival

    three = myeloma["molecular_group"].to_numpy()
    res3 = logrank(t, e, three)
    ref3 = multivariate_logrank_test(t, three, e)
    assert res3.statistic == pytest.approx(ref3.test_statistic, abs=1e-12)
    assert res3.df == len(set(three)) - 1
    assert json.loads(json.dumps(res3.to_dict()))["df"] == res3.df


def test_logrank_needs_two_groups():
    with pytest.raises(ValueError, match="at least two groups"):
        logrank([1.0, 2.0, 3.0], [1, 1, 0], ["low", "low", "low"])


def test_docstring_examples_run():
    """The examples in the docstrings are what users copy: they must stay true."""
    import doctest

    import as_ai.survival

    assert doctest.testmod(as_ai.survival).failed == 0
