"""A synthetic cohort of patients with ankylosing spondylitis (AS), for the clinical triage models.

No real patient data can be reached from this project, so the triage models are trained and tested on
this generator. Its marginals and correlations follow published AS cohorts (``DOMAIN.md`` §3: age
40 ± 11 y, two thirds male, BASFI–BASDAI ρ ≈ 0.66, right-skewed mSASSS, ...), its outcomes are BASFI and
BASDAI (0–10) and the time to first surgery, whose hazard rises with functional impairment, disease
activity and hip involvement, with administrative censoring at up to about 8 years. Some records miss
laboratory and imaging values, at random given the other variables (older, longer-standing records
miss more), as real records do. Everything trained on it is synthetic and says so.

Example:
    >>> from as_ai.synthetic.cohort import make_cohort
    >>> df = make_cohort(200, seed=1)
    >>> sorted(OUTCOMES) == sorted(set(OUTCOMES) & set(df.columns))
    True
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Variable:
    """One candidate input variable of the cohort: what it means, its unit, range and type."""

    name: str
    label: str
    unit: str
    min: float
    max: float
    type: str  # "float" | "int" | "bool"
    imputable: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "unit": self.unit, "min": self.min, "max": self.max,
                "type": self.type, "imputable": self.imputable}


#: Candidate input variables (never the outcomes). ``imputable``: may be missing in a record and be imputed
#: (laboratory values, measurements, scores from imaging); demographics and history must be given.
VARIABLES: tuple[Variable, ...] = (
    Variable("age", "Age", "years", 16, 90, "int", False),
    Variable("male", "Male sex", "", 0, 1, "bool", False),
    Variable("disease_duration", "Disease duration (since symptom onset)", "years", 0, 70, "float", False),
    Variable("age_at_onset", "Age at symptom onset", "years", 5, 80, "float", False),
    Variable("hla_b27", "HLA-B27 positive", "", 0, 1, "bool", True),
    Variable("crp", "C-reactive protein (CRP)", "mg/L", 0, 300, "float", True),
    Variable("esr", "Erythrocyte sedimentation rate (ESR)", "mm/h", 0, 150, "float", True),
    Variable("basmi", "BASMI (spinal mobility index)", "0-10", 0, 10, "float", True),
    Variable("msasss", "mSASSS (radiographic spinal damage)", "0-72", 0, 72, "int", True),
    Variable("chest_expansion", "Chest expansion", "cm", 0, 12, "float", True),
    Variable("hip_involvement", "Hip involvement", "", 0, 1, "bool", False),
    Variable("peripheral_arthritis", "Peripheral arthritis", "", 0, 1, "bool", False),
    Variable("enthesitis", "Enthesitis", "", 0, 1, "bool", False),
    Variable("uveitis", "Uveitis (ever)", "", 0, 1, "bool", False),
    Variable("bmi", "Body-mass index (BMI)", "kg/m²", 12, 60, "float", True),
    Variable("smoking", "Current smoker", "", 0, 1, "bool", False),
    Variable("tnf_inhibitor", "On a TNF inhibitor", "", 0, 1, "bool", False),
)

#: Outcome columns: the two regression targets and the surgery time-to-event pair. Never model inputs.
OUTCOMES = ("basfi", "basdai", "surgery", "time_to_surgery")
ID_COLUMN = "patient_id"
FOLLOW_UP_YEARS = 8.0


def _std(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_cohort(n: int = 356, seed: int = 0) -> pd.DataFrame:
    """Draw ``n`` synthetic AS patients (one row each) with reproducible randomness.

    Columns: ``patient_id``, the candidate inputs in :data:`VARIABLES` (some laboratory/imaging values
    missing as NaN) and the outcomes in :data:`OUTCOMES` (``surgery`` is the event flag, ``time_to_surgery``
    the years to surgery or to censoring).

    Raises:
        ValueError: ``n`` < 1.

    Example:
        >>> make_cohort(5, seed=0).shape[0]
        5
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer number of patients, got {n!r}.")
    rng = np.random.default_rng(seed)
    z = lambda: rng.standard_normal(n)  # noqa: E731 - a short local helper reads best here

    # Demographics and disease history.
    age = np.clip(np.round(40 + 11 * z()), 18, 80)
    male = rng.random(n) < 0.68
    onset = 27 + 0.45 * (age - 40) + 7 * z()
    onset = np.clip(onset, 8, age - 0.5)
    duration = np.round(age - onset, 1)
    onset = np.round(age - duration, 1)
    hla_b27 = rng.random(n) < np.where(onset < 25, 0.86, 0.75)
    smoking = rng.random(n) < np.where(male, 0.36, 0.20)
    bmi = np.clip(26 + 5.2 * z() + 0.6 * male, 15, 50)
    tnf = rng.random(n) < 0.35

    # Inflammation (CRP/ESR), disease activity and structural damage (latent, standardised scale).
    inflam = z()
    crp = np.exp(np.log(8.5) + 0.85 * inflam - 0.35 * tnf)
    esr = np.exp(np.log(12.0) + 0.65 * (0.6 * inflam + 0.8 * z()) + 0.15 * (~male))
    peripheral = rng.random(n) < 1 / (1 + np.exp(-(-0.95 + 0.35 * inflam)))
    enthesitis = rng.random(n) < 1 / (1 + np.exp(-(-0.4 + 0.3 * inflam)))
    uveitis = rng.random(n) < 1 / (1 + np.exp(-(-1.6 + 0.05 * (duration - 13) + 0.4 * hla_b27)))
    activity = (0.28 * inflam + 0.6 * enthesitis + 0.5 * peripheral + 0.35 * smoking + 0.3 * (~male)
                + 0.04 * (bmi - 26) - 0.6 * tnf + 0.75 * z())
    damage = (0.06 * (duration - 13) + 0.5 * male + 0.35 * inflam + 0.25 * smoking + 0.2 * hla_b27
              + 0.8 * z())
    d = _std(damage)
    msasss = np.clip(np.round(np.exp(1.2 + 1.5 * d) - 2.2), 0, 72)
    hip = rng.random(n) < 1 / (1 + np.exp(-(-1.15 - 0.05 * (onset - 27) + 0.45 * d + 0.3 * peripheral)))

    basdai = np.clip(3.95 + 2.35 * _std(activity), 0, 10)
    basmi = np.clip(2.0 + 2.1 * (0.42 * _std(age) + 0.45 * d + 0.15 * hip + 0.55 * z()), 0, 10)
    chest = np.clip(5.0 - 0.45 * basmi + 0.4 * male + 1.0 * z(), 0.5, 12)
    # BASFI: activity-driven, plus damage and mobility (damage matters less when activity is high), hips.
    basfi_lin = (0.55 * _std(activity) + 0.30 * d * (1 - 0.6 * (basdai > 6)) + 0.18 * _std(basmi)
                 + 0.35 * z())
    basfi = np.clip(2.45 + 2.35 * _std(basfi_lin) + 1.6 * hip, 0, 10)

    # Time to first surgery (mostly hip replacement): proportional hazards, hazard rising with BASFI,
    # BASDAI and hip involvement; administrative censoring between 1 and 8 years of follow-up.
    # The risk climbs steeply through moderate impairment/activity and then levels off (logistic in the
    # scores), so a cut-off exists in the data; where exactly is for the maxstat search to find.
    log_hazard = (np.log(0.006) + 1.6 * _sigmoid((basfi - 3.5) / 0.5) + 0.9 * _sigmoid((basdai - 3.0) / 0.5)
                  + 0.08 * basfi + 0.9 * hip + 0.03 * (bmi - 26) - 0.02 * (onset - 27))
    t_event = rng.exponential(1.0 / np.exp(log_hazard))
    t_censor = rng.uniform(1.0, FOLLOW_UP_YEARS, n)
    surgery = t_event <= t_censor
    time = np.round(np.maximum(np.minimum(t_event, t_censor), 0.02), 2)

    df = pd.DataFrame({
        ID_COLUMN: [f"S{seed}-{i + 1:05d}" for i in range(n)],
        "age": age.astype(int),
        "male": male,
        "disease_duration": duration,
        "age_at_onset": onset,
        "hla_b27": hla_b27,
        "crp": np.round(np.minimum(crp, 250.0), 1),
        "esr": np.round(np.minimum(esr, 140.0)).astype(float),
        "basmi": np.round(basmi, 1),
        "msasss": msasss,
        "chest_expansion": np.round(chest, 1),
        "hip_involvement": hip,
        "peripheral_arthritis": peripheral,
        "enthesitis": enthesitis,
        "uveitis": uveitis,
        "bmi": np.round(bmi, 1),
        "smoking": smoking,
        "tnf_inhibitor": tnf,
        "basfi": np.round(basfi, 1),
        "basdai": np.round(basdai, 1),
        "surgery": surgery,
        "time_to_surgery": time,
    })
    # Missing at random given observed variables: older, longer-standing records miss more.
    older = _std(duration)
    for col, base in (("crp", 0.07), ("esr", 0.09), ("msasss", 0.10), ("basmi", 0.04), ("chest_expansion", 0.05),
                      ("hla_b27", 0.04), ("bmi", 0.03)):
        p = np.clip(base * np.exp(0.5 * older), 0, 0.5)
        miss = rng.random(n) < p
        if df[col].dtype == bool:
            df[col] = df[col].astype("boolean")
        df.loc[miss, col] = pd.NA if df[col].dtype == "boolean" else np.nan
    df["msasss"] = df["msasss"].astype("Int64")
    return df


def add_cohort_command(ssub: argparse._SubParsersAction) -> None:
    """Register ``as-ai synth cohort --out cohort.csv --n N --seed S`` on the ``synth`` sub-parsers."""
    p = ssub.add_parser("cohort", help="synthetic AS clinical cohort (CSV) for the triage models",
                        description="Write a synthetic cohort of AS patients (inputs, BASFI, BASDAI, time to "
                        "surgery) as CSV. Synthetic data: for development and demonstration only.")
    p.add_argument("--out", required=True, type=Path, help="CSV file to write")
    p.add_argument("--n", type=int, default=356, help="number of patients (default 356, as in the study)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_run_cohort)


def _run_cohort(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise SystemExit(f"as-ai synth cohort: --n must be at least 1, got {args.n}")
    df = make_cohort(args.n, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {len(df)} synthetic patients ({int(df['surgery'].sum())} surgeries) to {args.out}")
    return 0


__all__ = ["Variable", "VARIABLES", "OUTCOMES", "ID_COLUMN", "FOLLOW_UP_YEARS", "make_cohort", "add_cohort_command"]
