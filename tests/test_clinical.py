"""Triage: feature-schema validation, the training protocol's outputs, loading safety, Triager / triage()."""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from as_ai import hub, survival
from as_ai._schema import FeatureSchema
from as_ai._skops_io import ALLOWED_TYPES, load_pipeline, save_pipeline
from as_ai.clinical import TARGETS, Triage, Triager, triage
from as_ai.errors import InvalidPatientError, ModelLoadError, SyntheticModelWarning, UntrustedModelError
from as_ai.synthetic.cohort import OUTCOMES, VARIABLES, make_cohort
from train import clinical as train_clinical

DEMO = hub.DEMO_DIR / "triage"
SEED, N = 1, 160


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """A small triage model trained by the real script (fast grids) from a synthetic cohort written as CSV."""
    out = tmp_path_factory.mktemp("triage_run")
    make_cohort(N, seed=SEED).to_csv(out / "cohort.csv", index=False)
    argv = ["--data", str(out / "cohort.csv"), "--out", str(out), "--seed", str(SEED), "--fast"]
    assert train_clinical.main(argv) == 0
    return out, argv


@pytest.fixture(scope="session")
def triager(run) -> Triager:
    return Triager.from_pretrained(run[0] / "model")


@pytest.fixture(scope="session")
def cohort() -> pd.DataFrame:
    return make_cohort(N, seed=SEED)


@pytest.fixture(scope="session")
def schema() -> FeatureSchema:
    return FeatureSchema.from_config([v.to_dict() for v in VARIABLES])


def _patient(triager: Triager, row: int = 0, seed: int = 11) -> dict:
    df = make_cohort(50, seed=seed)[triager.schema.names].dropna()
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in df.iloc[row].to_dict().items()}


def _copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_checksums(repo: Path) -> None:
    cfg = json.loads((repo / "as_ai.json").read_text())
    cfg["files"] = {rel: hub.sha256_file(repo / rel) for rel in cfg["files"]}
    (repo / "as_ai.json").write_text(json.dumps(cfg))


# ------------------------------------------------------------------------------------ schema validation
BASE = {"age": 41, "male": True, "disease_duration": 12.0, "age_at_onset": 29.0, "hla_b27": True, "crp": 9.5,
        "esr": 14.0, "basmi": 2.4, "msasss": 3, "chest_expansion": 4.5, "hip_involvement": False,
        "peripheral_arthritis": False, "enthesitis": True, "uveitis": False, "bmi": 25.1, "smoking": False,
        "tnf_inhibitor": False}

BAD_FIELDS = [  # (changes to a valid patient, field, fragment of the message)
    ({"crp": 500.0}, "crp", "above the maximum"),
    ({"crp": -1.0}, "crp", "below the minimum"),
    ({"crp": math.inf}, "crp", "must be a number"),
    ({"crp": True}, "crp", "must be a number"),
    ({"crp": "12"}, "crp", "got str"),
    ({"age": 41.5}, "age", "whole number"),
    ({"msasss": 2.5}, "msasss", "whole number"),
    ({"male": "maybe"}, "male", "yes/no"),
    ({"male": 2}, "male", "yes/no"),
    ({"hip_involvement": None}, "hip_involvement", "missing; required"),
    ({"age": None}, "age", "missing; required"),
    ({"weight": 80}, "weight", "unknown field"),
    ({"CRP": 5.0}, "CRP", "unknown field"),
]


@pytest.mark.parametrize("change,field,fragment", BAD_FIELDS)
def test_bad_field_is_named(schema, change, field, fragment):
    with pytest.raises(InvalidPatientError) as info:
        schema.validate({**BASE, **change})
    assert set(info.value.fields) == {field}
    assert fragment in info.value.fields[field]
    assert isinstance(info.value, ValueError)


def test_every_bad_field_is_named_at_once(schema):
    patient = {**BASE, "crp": 999.0, "male": "perhaps", "weight": 80}
    del patient["age"]
    with pytest.raises(InvalidPatientError) as info:
        schema.validate(patient)
    assert set(info.value.fields) == {"crp", "male", "weight", "age"}
    assert "crp" in str(info.value) and "weight" in str(info.value)


@pytest.mark.parametrize("value,expected", [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0), (1.0, 1.0), ("yes", 1.0),
                                            ("No", 0.0), ("TRUE", 1.0), (np.bool_(True), 1.0)])
def test_booleans_accept_common_spellings(schema, value, expected):
    values, _ = schema.validate({**BASE, "smoking": value})
    assert values[schema.names.index("smoking")] == expected


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, pd.NA, "absent"])
def test_missing_imputable_value_is_reported(schema, missing):
    patient = {**BASE, "crp": missing}
    if isinstance(missing, str):
        del patient["crp"]
    values, imputed = schema.validate(patient)
    assert imputed == ["crp"] and np.isnan(values[schema.names.index("crp")])


def test_one_row_dataframe_and_series_equal_dict(schema):
    a, _ = schema.validate(BASE)
    b, _ = schema.validate(pd.DataFrame([BASE]))
    c, _ = schema.validate(pd.Series(BASE))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(InvalidPatientError, match="one patient"):
        schema.validate(pd.DataFrame([BASE, BASE]))
    with pytest.raises(InvalidPatientError, match="dict"):
        schema.validate([1, 2, 3])


def test_frame_validation_names_fields_and_rows(schema):
    df = pd.DataFrame([BASE] * 4, index=["p1", "p2", "p3", "p4"])
    df.loc["p2", "crp"] = 900.0
    df.loc["p3", "age"] = np.nan
    df["male"] = df["male"].astype(object)
    df.loc["p4", "male"] = "perhaps"
    df["extra"] = 1
    with pytest.raises(InvalidPatientError) as info:
        schema.validate_frame(df)
    f = info.value.fields
    assert set(f) == {"crp", "age", "male", "extra"}
    assert "p2" in f["crp"] and "900" in f["crp"] and "p3" in f["age"] and "p4" in f["male"]


def test_frame_validation_matches_patient_validation(schema):
    df = make_cohort(40, seed=4)[schema.names]
    values, missing = schema.validate_frame(df)
    for i in range(len(df)):
        row, imputed = schema.validate(df.iloc[i].to_dict())
        np.testing.assert_array_equal(values[i], row)
        assert [n for n, m in zip(schema.names, missing[i]) if m] == imputed


def test_known_fields_the_model_does_not_read_are_checked_then_unused():
    used = [v.to_dict() for v in VARIABLES if v.name in ("crp", "basmi", "hip_involvement")]
    other = [v.to_dict() for v in VARIABLES if v.name not in ("crp", "basmi", "hip_involvement")]
    s = FeatureSchema.from_config(used, other)
    values, imputed = s.validate(BASE)  # a full record: the unused fields are accepted
    assert s.names == ["crp", "basmi", "hip_involvement"] and values.tolist() == [9.5, 2.4, 0.0] and imputed == []
    with pytest.raises(InvalidPatientError) as info:
        s.validate({**BASE, "age": 200, "smoker": True})
    assert set(info.value.fields) == {"age", "smoker"} and "above the maximum" in info.value.fields["age"]
    assert "accepts, without using" in info.value.fields["smoker"]
    frame = pd.DataFrame([BASE, {**BASE, "age": 7}])
    with pytest.raises(InvalidPatientError) as info:
        s.validate_frame(frame)
    assert set(info.value.fields) == {"age"} and "rows: 1 = 7" in info.value.fields["age"]
    np.testing.assert_array_equal(s.validate_frame(frame.iloc[:1])[0][0], values)


# ----------------------------------------------------------------------------------- training outputs
def test_training_writes_repo_report_and_figures(run):
    out, _ = run
    for name in ("report.md", "metrics.json", "config.json", "model/as_ai.json", "model/README.md",
                 "model/basfi.skops", "model/basdai.skops"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    figs = sorted((out / "figures").glob("*.png"))
    assert {f.name for f in figs} == {f"{kind}_{t}.png" for kind in ("pred_vs_true", "distribution", "km")
                                      for t in TARGETS} | {"importances.png"}
    for f in figs:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"figures/{f.name}" in report
    assert "Synthetic cohort" in report and "Stacked vs best single" in report and "coverage" in report


def test_protocol_in_config(run, cohort):
    cfg = json.loads((run[0] / "model" / "as_ai.json").read_text())
    assert cfg["kind"] == "triage" and cfg["format_version"] == 1
    assert cfg["training"]["synthetic"] is True and f"--seed {SEED}" in cfg["training"]["command"]
    names = {f["name"] for f in cfg["features"]}
    assert names <= {v.name for v in VARIABLES} and not names & set(OUTCOMES)
    for t in TARGETS:
        tgt, met = cfg["targets"][t], cfg["metrics"][t]
        assert len(tgt["inputs"]) == 7 and set(tgt["inputs"]) <= names
        assert set(met["models"]) == set(train_clinical.SINGLE) | set(train_clinical.ENSEMBLE)
        by_cv = sorted(met["models"], key=lambda m: met["models"][m]["cv_mse"])
        assert met["stacked"] == by_cv[:4]
        for m in met["models"].values():
            assert set(m["test"]) == {"mse", "mae", "r2"} and m["test"]["mse"] > 0
        # the top 7 are the largest summed importances
        imp = met["importances"]
        assert min(imp[c] for c in tgt["inputs"]) >= max(v for k, v in imp.items() if k not in tgt["inputs"])
        assert tgt["interval"]["level"] == 0.9 and tgt["interval"]["halfwidth"] > 0
        assert set(cfg["curves"][t]) >= {"low", "high"}


def test_cutoffs_come_from_observed_training_scores(run, cohort):
    cfg = json.loads((run[0] / "model" / "as_ai.json").read_text())
    idx_tr, _ = train_test_split(np.arange(len(cohort)), test_size=0.3, random_state=SEED)
    tr = cohort.iloc[idx_tr]
    for t in TARGETS:
        cp = survival.optimal_cutpoint(tr["time_to_surgery"], tr["surgery"].astype(float), tr[t], minprop=0.1)
        assert cfg["targets"][t]["cutoff"] == pytest.approx(cp.cutpoint)
        assert cfg["logrank"][t]["cutpoint_statistic"] == pytest.approx(cp.statistic)
        low = cfg["curves"][t]["low"]
        assert low["n"] == int((tr[t] <= cp.cutpoint).sum())


def test_stored_test_metrics_and_coverage_reproduce_from_the_saved_model(run, cohort, triager):
    cfg = triager.config
    _, idx_te = train_test_split(np.arange(len(cohort)), test_size=0.3, random_state=SEED)
    te = cohort.iloc[idx_te]
    pred = triager.predict_frame(te[triager.schema.names])
    for t in TARGETS:
        y = te[t].to_numpy(float)
        mse = float(np.mean((y - pred[t].to_numpy()) ** 2))
        assert mse == pytest.approx(cfg["metrics"][t]["test"]["mse"], abs=0.01)  # predictions rounded to 0.01
        half = cfg["targets"][t]["interval"]["halfwidth"]
        inside = (y >= pred[f"{t}_low"]) & (y <= pred[f"{t}_high"])
        assert inside.mean() == pytest.approx(cfg["targets"][t]["interval"]["test_coverage"], abs=0.03)
        lr = survival.logrank(te["time_to_surgery"], te["surgery"].astype(float), pred[f"{t}_group"])
        if cfg["logrank"][t]["test"]:
            assert lr.p_value == pytest.approx(cfg["logrank"][t]["test"]["p_value"], rel=0.2)
        assert half > 0


def test_model_card_front_matter(run):
    text = (run[0] / "model" / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "as-ai" and "synthetic-data" in front["tags"]
    assert len(front["model-index"][0]["results"]) == 2
    assert "not for clinical use" in text and "cut-off" in text


# ---------------------------------------------------------------------------------------- Triager
def test_triage_result(triager):
    t = triager(_patient(triager))
    assert isinstance(t, Triage)
    for name in TARGETS:
        score, (lo, hi) = getattr(t, name), t.intervals[name]
        assert 0 <= lo <= score <= hi <= 10
        assert t.groups[name] == ("high" if score > t.cutoffs[name] else "low")
    assert t.risk == ("high" if "high" in t.groups.values() else "low")
    assert t.imputed == [] and t.interval_level == 0.9 and t.synthetic
    assert t.model == triager.provenance and "@" in t.model
    d = json.loads(json.dumps(t.to_dict()))
    assert d["intervals"]["basfi"] == list(t.intervals["basfi"]) and set(d["curves"]) == set(TARGETS)
    s = t.summary()
    assert "suggests" in s and "synthetic" in s and "clinical judgement" in s


def test_full_record_with_unused_fields_gives_the_same_triage(triager):
    record = make_cohort(20, seed=11).drop(columns=list(OUTCOMES) + ["patient_id"]).dropna().iloc[0]
    assert len(record) > len(triager.schema.names)
    assert triager(record.to_dict()) == triager(record[triager.schema.names].to_dict())


def test_triage_lists_imputed_fields(triager):
    imputable = [f.name for f in triager.schema.features if f.imputable]
    patient = {**_patient(triager), imputable[0]: None}
    t = triager(patient)
    assert t.imputed == [imputable[0]]
    assert imputable[0] in t.summary()


def test_group_flips_at_the_cutoff(triager):
    """Patients above the stored cut-off are "high", at or below "low" (monotone in BASFI's top input)."""
    rows = triager.predict_frame(make_cohort(300, seed=2)[triager.schema.names])
    for t in TARGETS:
        assert ((rows[t] > triager.cutoffs[t]) == (rows[f"{t}_group"] == "high")).all()
    assert ((rows.basfi_group == "high") | (rows.basdai_group == "high")).eq(rows.risk == "high").all()


def test_predict_frame_equals_one_by_one(triager):
    df = make_cohort(60, seed=9)[triager.schema.names]
    assert df.isna().any(axis=1).any() and (~df.isna().any(axis=1)).any()  # both complete and incomplete rows
    batch = triager.predict_frame(df)
    assert list(batch.index) == list(df.index)
    for i in range(len(df)):
        one = triager(df.iloc[[i]])
        row = batch.iloc[i]
        assert (one.basfi, one.basdai) == (row.basfi, row.basdai)
        assert one.intervals["basdai"] == (row.basdai_low, row.basdai_high)
        assert one.risk == row.risk and ";".join(one.imputed) == row.imputed


def test_skipping_the_imputer_for_complete_rows_changes_nothing(triager):
    df = make_cohort(80, seed=5)[triager.schema.names].dropna()
    X, _ = triager.schema.validate_frame(df)
    fast = triager._predict(X)
    for t in TARGETS:
        full = np.clip(triager.pipelines[t].predict(X[:, triager._columns[t]]), 0, 10)
        np.testing.assert_allclose(fast[t], full, rtol=0, atol=1e-12)


def test_empty_frame(triager):
    out = triager.predict_frame(pd.DataFrame(columns=triager.schema.names))
    assert len(out) == 0 and "risk" in out.columns


def test_bad_patient_via_triager(triager):
    with pytest.raises(InvalidPatientError) as info:
        triager({**_patient(triager), "hip_involvement": "sometimes", "smoker": True})
    assert set(info.value.fields) == {"hip_involvement", "smoker"}


# ---------------------------------------------------------------------------------- loading safety
def test_tampered_file_is_refused(run, tmp_path):
    repo = _copy_repo(run[0] / "model", tmp_path / "repo")
    with open(repo / "basfi.skops", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match="Checksum mismatch"):
        Triager.from_pretrained(repo)


@pytest.mark.parametrize("make_bad,expected", [
    ("system", "posix.system"),
    ("poly", "sklearn.preprocessing._polynomial.PolynomialFeatures"),
])
def test_untrusted_types_are_refused_even_with_valid_checksums(run, tmp_path, make_bad, expected):
    import skops.io as sio
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures

    repo = _copy_repo(run[0] / "model", tmp_path / "repo")
    first = FunctionTransformer(os.system) if make_bad == "system" else PolynomialFeatures()
    sio.dump(Pipeline([("x", first), ("r", Ridge())]), repo / "basfi.skops")
    _rewrite_checksums(repo)
    with pytest.raises(UntrustedModelError) as info:
        Triager.from_pretrained(repo)
    assert expected in info.value.untrusted and expected in str(info.value)
    assert info.value.model_id == str(repo)


def test_allow_list_is_explicit_and_saving_refuses_other_types(tmp_path):
    from sklearn.preprocessing import PolynomialFeatures

    assert "sklearn.pipeline.Pipeline" in ALLOWED_TYPES and not any("Function" in t for t in ALLOWED_TYPES)
    with pytest.raises(ValueError, match="allow-list"):
        save_pipeline(PolynomialFeatures(), tmp_path / "x.skops")
    assert not (tmp_path / "x.skops").exists()


def test_not_a_skops_file(tmp_path):
    p = tmp_path / "basfi.skops"
    p.write_bytes(b"\x80\x04K\x01.")  # a pickle, not a skops zip
    with pytest.raises(ModelLoadError, match="not a readable skops"):
        load_pipeline(p)


def test_wrong_kind_or_missing_repo(run, tmp_path):
    repo = _copy_repo(run[0] / "model", tmp_path / "repo")
    cfg = json.loads((repo / "as_ai.json").read_text())
    (repo / "as_ai.json").write_text(json.dumps({**cfg, "kind": "diagnosis"}))
    with pytest.raises(ModelLoadError, match="'diagnosis' model"):
        Triager.from_pretrained(repo)
    with pytest.raises(ModelLoadError):
        Triager.from_pretrained(tmp_path / "nowhere" / "repo")


def test_save_pretrained_round_trip(triager, tmp_path):
    out = triager.save_pretrained(tmp_path / "again", card="# card\n")
    again = Triager.from_pretrained(out)
    p = _patient(triager, row=1)
    assert again(p).basfi == triager(p).basfi and again.cutoffs == triager.cutoffs
    assert (out / "README.md").read_text() == "# card\n"


# --------------------------------------------------------------------------------- triage() + demo
def test_triage_default_uses_bundled_demo_and_warns_once(monkeypatch):
    monkeypatch.delenv("AS_AI_TRIAGE_MODEL", raising=False)
    monkeypatch.setattr(hub, "_warned_demo", set())
    hub.clear_cache()
    demo = Triager.from_pretrained(DEMO)
    patient = _patient(demo)
    with pytest.warns(SyntheticModelWarning, match="synthetic"):
        t = triage(patient)
    assert str(DEMO.resolve()) in t.model
    with warnings.catch_warnings():
        warnings.simplefilter("error", SyntheticModelWarning)
        assert triage(patient).basfi == t.basfi  # cached, no second warning


def test_triage_keeps_one_loaded_model(run, triager, monkeypatch):
    hub.clear_cache()
    patient = _patient(triager, row=2)
    calls = []
    real = Triager.from_pretrained.__func__

    def counting(cls, model_id, revision=None):
        calls.append(model_id)
        return real(cls, model_id, revision)

    monkeypatch.setattr(Triager, "from_pretrained", classmethod(counting))
    monkeypatch.setenv("AS_AI_TRIAGE_MODEL", str(run[0] / "model"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        a, b = triage(patient), triage(patient)
    assert calls == [str(run[0] / "model")] and a == b and str(run[0] / "model") in a.model
    hub.clear_cache()


def test_bundled_demo_is_small_synthetic_and_reproducible_on_paper():
    cfg = json.loads((DEMO / "as_ai.json").read_text())
    size = sum(f.stat().st_size for f in DEMO.iterdir())
    assert size < 3 * 2**20
    tr = cfg["training"]
    assert tr["synthetic"] is True and tr["seed"] == 0
    assert tr["command"].startswith("python -m train.clinical --synthetic 356 --seed 0")
    card = (DEMO / "README.md").read_text()
    assert tr["command"] in card and "not for clinical use" in card
    assert set(cfg["files"]) == {"basfi.skops", "basdai.skops"}


@pytest.mark.slow
def test_bundled_demo_is_reproduced_by_its_recorded_command(tmp_path):
    """Re-run the command recorded in the demo's as_ai.json (outputs redirected) and compare the result."""
    import shlex

    cfg = json.loads((DEMO / "as_ai.json").read_text())
    argv = shlex.split(cfg["training"]["command"])[3:]  # drop "python -m train.clinical"
    for flag, value in (("--out", tmp_path / "run"), ("--repo-out", tmp_path / "repo")):
        argv[argv.index(flag) + 1] = str(value)
    assert train_clinical.main(argv) == 0
    again = json.loads((tmp_path / "repo" / "as_ai.json").read_text())
    for t in TARGETS:
        assert again["targets"][t]["cutoff"] == cfg["targets"][t]["cutoff"]
        assert again["targets"][t]["inputs"] == cfg["targets"][t]["inputs"]
        assert again["metrics"][t]["test"] == pytest.approx(cfg["metrics"][t]["test"], rel=1e-9)
    demo, rebuilt = Triager.from_pretrained(DEMO), Triager.from_pretrained(tmp_path / "repo")
    frame = make_cohort(50, seed=12)[demo.schema.names]
    pd.testing.assert_frame_equal(demo.predict_frame(frame), rebuilt.predict_frame(frame))
