"""The synthetic AS cohort: reproducible, within the published ranges (DOMAIN.md §3), usable for survival cut-offs."""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from as_ai import survival
from as_ai.synthetic.cohort import ID_COLUMN, OUTCOMES, VARIABLES, add_cohort_command, make_cohort


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """A large cohort, so sampling error is small next to the published ranges."""
    return make_cohort(5000, seed=123)


def _f(df: pd.DataFrame, col: str) -> pd.Series:
    return df[col].astype(float)


def _rho(df: pd.DataFrame, a: str, b: str) -> float:
    x = df[[a, b]].astype(float).dropna()
    return float(spearmanr(x[a], x[b])[0])


def test_same_seed_same_cohort_other_seed_differs():
    a, b, c = make_cohort(60, seed=7), make_cohort(60, seed=7), make_cohort(60, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns=ID_COLUMN).equals(c.drop(columns=ID_COLUMN))


def test_columns_and_ranges():
    df = make_cohort(400, seed=1)
    assert list(df.columns) == [ID_COLUMN] + [v.name for v in VARIABLES] + list(OUTCOMES)
    assert df[ID_COLUMN].is_unique and len(df) == 400
    for v in VARIABLES:
        x = _f(df, v.name).dropna()
        assert x.between(v.min, v.max).all(), v.name
        if v.type in ("int", "bool"):
            assert (x == x.round()).all(), v.name
    for t in ("basfi", "basdai"):
        assert df[t].between(0, 10).all() and df[t].notna().all()
    assert np.allclose(_f(df, "age") - _f(df, "disease_duration"), _f(df, "age_at_onset"), atol=0.051)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="positive integer"):
        make_cohort(n)


# (column, low, high): published ranges of DOMAIN.md §3, widened by a tolerance for a synthetic generator.
MEANS = [
    ("age", 37, 43), ("disease_duration", 10, 16), ("basdai", 3.5, 4.4), ("basfi", 2.6, 3.4),
    ("basmi", 1.8, 2.6), ("bmi", 24.5, 27.5), ("msasss", 4.5, 8.5),
]
PROPORTIONS = [
    ("male", 0.64, 0.72), ("hla_b27", 0.76, 0.83), ("peripheral_arthritis", 0.24, 0.34), ("enthesitis", 0.30, 0.54),
    ("uveitis", 0.18, 0.30), ("hip_involvement", 0.24, 0.36), ("smoking", 0.22, 0.38),
]


@pytest.mark.parametrize("col,lo,hi", MEANS)
def test_means_within_published_ranges(big, col, lo, hi):
    assert lo <= _f(big, col).mean() <= hi


@pytest.mark.parametrize("col,lo,hi", PROPORTIONS)
def test_proportions_within_published_ranges(big, col, lo, hi):
    assert lo <= _f(big, col).mean() <= hi


def test_skewed_labs_and_damage(big):
    ms = _f(big, "msasss").dropna()
    assert ms.median() <= 2 and ms.quantile(0.25) == 0 and 4 <= ms.quantile(0.75) <= 9   # median 1 (IQR 0-6)
    assert ms.std() > 9                                                                       # sd 12.5: long right tail
    crp = _f(big, "crp").dropna()
    assert 5 <= crp.median() <= 10 and 2 <= crp.quantile(0.25) <= 5 and 9 <= crp.quantile(0.75) <= 16
    assert 9 <= _f(big, "esr").median() <= 15                                                 # median 10-13
    assert 1.8 <= _f(big, "basdai").std() <= 2.6 and 2.0 <= _f(big, "basfi").std() <= 2.8


@pytest.mark.parametrize("a,b,lo,hi", [
    ("basfi", "basdai", 0.56, 0.76),      # rho 0.66
    ("basfi", "msasss", 0.35, 0.58),      # rho 0.45
    ("basmi", "msasss", 0.5, 0.7),        # rho 0.6
    ("basmi", "age", 0.46, 0.66),         # r 0.56
    ("crp", "basdai", 0.06, 0.48),        # weak
    ("esr", "basdai", 0.06, 0.48),
    ("crp", "esr", 0.4, 0.65),            # rho 0.5
    ("msasss", "disease_duration", 0.25, 0.65),
])
def test_correlations_within_published_ranges(big, a, b, lo, hi):
    assert lo <= _rho(big, a, b) <= hi


def test_published_dependencies(big):
    d = big.astype({c: float for c in big.columns if c != ID_COLUMN})
    hip = d.groupby("hip_involvement")["basfi"].mean()
    assert 1.0 <= hip[1.0] - hip[0.0] <= 2.4                       # hip involvement adds about 1.6 BASFI points
    active, quiet = d[d.basdai > 6], d[d.basdai <= 4]
    assert _rho(active, "basfi", "msasss") < _rho(quiet, "basfi", "msasss")   # weaker when BASDAI is high
    assert d.loc[d.male == 1, "msasss"].mean() > d.loc[d.male == 0, "msasss"].mean()
    long_standing = d.disease_duration > d.disease_duration.median()
    assert d.loc[long_standing, "uveitis"].mean() > d.loc[~long_standing, "uveitis"].mean()


def test_missing_values_only_where_imputable_and_at_random_given_duration(big):
    imputable = {v.name for v in VARIABLES if v.imputable}
    rates = big.isna().mean()
    assert set(rates[rates > 0].index) <= imputable
    assert 0.03 <= rates["crp"] <= 0.2 and 0.03 <= rates["msasss"] <= 0.2
    long_standing = _f(big, "disease_duration") > _f(big, "disease_duration").median()
    assert big.loc[long_standing, "crp"].isna().mean() > big.loc[~long_standing, "crp"].isna().mean()


def test_surgery_events_follow_up_and_hazard(big):
    t, e = _f(big, "time_to_surgery"), _f(big, "surgery")
    assert t.min() > 0 and t.max() <= 8.0
    assert 0.1 <= e.mean() <= 0.3                   # enough events for a cut-off search, far from everyone
    for col in ("basfi", "basdai"):
        groups = survival.split_groups(big[col], float(big[col].median()))
        lr = survival.logrank(t, e, groups)
        assert lr.p_value < 1e-6
        assert e[groups == "high"].mean() > e[groups == "low"].mean()
    assert e[big.hip_involvement].mean() > 1.5 * e[~big.hip_involvement].mean()


def test_study_sized_cohort_supports_a_data_driven_cutoff():
    df = make_cohort(356, seed=0)
    tr = df.sample(frac=0.7, random_state=0)
    assert tr["surgery"].sum() >= 25
    cp = survival.optimal_cutpoint(tr["time_to_surgery"], tr["surgery"].astype(float), tr["basfi"], minprop=0.1)
    assert 1.0 < cp.cutpoint < 8.0 and cp.statistic > 2.5


def test_cli_writes_csv(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_cohort_command(parser.add_subparsers(dest="cmd", required=True))
    out = tmp_path / "sub" / "cohort.csv"
    args = parser.parse_args(["cohort", "--out", str(out), "--n", "50", "--seed", "3"])
    assert args.func(args) == 0
    back = pd.read_csv(out)
    assert len(back) == 50 and set(OUTCOMES) <= set(back.columns)
    np.testing.assert_allclose(back["basfi"], make_cohort(50, seed=3)["basfi"])
    assert "50 synthetic patients" in capsys.readouterr().out
