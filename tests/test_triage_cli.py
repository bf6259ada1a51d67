"""``as-ai triage``: one patient as JSON, many from CSV, clear errors (with the bundled demo model)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from as_ai import hub
from as_ai.cli import main
from as_ai.clinical import Triager
from as_ai.errors import SyntheticModelWarning
from as_ai.synthetic.cohort import make_cohort

DEMO = hub.DEMO_DIR / "triage"


@pytest.fixture(scope="module")
def demo() -> Triager:
    return Triager.from_pretrained(DEMO)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("AS_AI_TRIAGE_MODEL", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticModelWarning)
        yield


@pytest.fixture(scope="module")
def patient(demo) -> dict:
    row = make_cohort(30, seed=3)[demo.schema.names].dropna().iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.to_dict().items()}


def test_json_patient(patient, demo, capsys):
    assert main(["triage", "--json", json.dumps(patient)]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = demo(patient)
    assert out["basfi"] == expected.basfi and out["risk"] == expected.risk
    assert out["cutoffs"] == expected.cutoffs and "curves" not in out and out["synthetic"] is True


def test_json_with_curves_and_text(patient, capsys):
    assert main(["triage", "--json", json.dumps(patient), "--curves"]) == 0
    assert set(json.loads(capsys.readouterr().out)["curves"]) == {"basfi", "basdai"}
    assert main(["triage", "--json", json.dumps(patient), "--text"]) == 0
    text = capsys.readouterr().out
    assert "Predicted BASFI" in text and "not for clinical use" in text


@pytest.mark.parametrize("arg,fragment", [
    ('{"age": "forty"}', "age"),
    ('{"hip_involvement": "maybe", "crp": -3}', "crp"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "one JSON object"),
])
def test_bad_json_input_exits_2_with_the_field(patient, arg, fragment, capsys):
    if arg.startswith('{"'):
        arg = json.dumps({**patient, **json.loads(arg)})
    assert main(["triage", "--json", arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("as-ai: error:") and fragment in err


def test_csv_to_file_keeps_ids(tmp_path, demo, capsys):
    cohort = make_cohort(25, seed=4)
    src = tmp_path / "patients.csv"
    cohort[["patient_id"] + demo.schema.names].to_csv(src, index=False)
    out = tmp_path / "res" / "results.csv"
    assert main(["triage", "--csv", str(src), "--out", str(out)]) == 0
    res = pd.read_csv(out, keep_default_na=False)
    assert list(res["patient_id"]) == list(cohort["patient_id"]) and len(res) == 25
    expected = demo.predict_frame(pd.read_csv(src).drop(columns="patient_id"))
    assert res["basfi"].tolist() == expected["basfi"].tolist()
    assert res["risk"].tolist() == expected["risk"].tolist()
    assert "triaged 25 patients" in capsys.readouterr().err


def test_csv_unknown_columns_refused_unless_ignored(tmp_path, capsys):
    src = tmp_path / "cohort.csv"
    make_cohort(10, seed=5).to_csv(src, index=False)  # has outcomes and unused variables
    assert main(["triage", "--csv", str(src)]) == 2
    err = capsys.readouterr().err
    assert "basfi: unknown field" in err and "time_to_surgery" in err
    assert main(["triage", "--csv", str(src), "--ignore-unknown"]) == 0
    captured = capsys.readouterr()
    assert "ignoring columns" in captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("patient_id,basfi,") and len(lines) == 11


def test_csv_bad_cells_name_field_and_row(tmp_path, demo, capsys):
    df = make_cohort(6, seed=6)[demo.schema.names]
    num = next(f for f in demo.schema.features if f.type == "float")
    df.loc[3, num.name] = num.max + 100
    src = tmp_path / "bad.csv"
    df.to_csv(src, index=False)
    assert main(["triage", "--csv", str(src)]) == 2
    err = capsys.readouterr().err
    assert num.name in err and "rows: 3" in err


def test_fields_listing(demo, capsys):
    assert main(["triage", "--fields"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in demo.schema.names) and "imputed" in out


def test_console_script_end_to_end(patient):
    r = subprocess.run([sys.executable, "-m", "as_ai.cli", "triage", "--json", json.dumps(patient)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["risk"] in ("high", "low")
    assert "synthetic" in r.stderr  # the one-time demo warning reaches the user
