"""The feature schema of a triage model: which patient fields it reads, their types, units and ranges.

The schema travels in the model repository (``as_ai.json["features"]``), so validation cannot drift from
the model. It is the one place where patient input is checked (validate once, at the boundary): every
bad field is named in :class:`~as_ai.errors.InvalidPatientError` ``.fields`` — unknown names, wrong
types, values out of range, and missing values the model cannot impute.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import InvalidPatientError

TYPES = ("float", "int", "bool")
_TRUE = {"yes", "true", "y", "1"}
_FALSE = {"no", "false", "n", "0"}
_MAX_ROWS_NAMED = 5


@dataclass(frozen=True)
class Feature:
    """One input field: name, clinician-facing label, unit, allowed range, type, and whether it may be missing."""

    name: str
    label: str
    unit: str
    min: float
    max: float
    type: str
    imputable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "unit": self.unit, "min": self.min, "max": self.max,
                "type": self.type, "imputable": self.imputable}

    def describe(self) -> str:
        """The rule for this field in words, e.g. ``"a number from 0 to 300 mg/L"``."""
        if self.type == "bool":
            return "yes/no (true/false, 1/0)"
        kind = "a whole number" if self.type == "int" else "a number"
        unit = f" {self.unit}" if self.unit and not self.unit[0].isdigit() else ""
        return f"{kind} from {_fmt(self.min)} to {_fmt(self.max)}{unit}"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, np.floating) and bool(np.isnan(value))


def _as_float(value: numbers.Real) -> float:
    """``float(value)``, with numbers too large for a float (huge ints, Fractions) as ±inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (and safe for ints too long to print)."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _coerce(feature: Feature, value: Any) -> tuple[float, str | None]:
    """Convert one present value to float, or say what is wrong with it."""
    if feature.type == "bool":
        if isinstance(value, (bool, np.bool_)):
            return float(bool(value)), None
        if isinstance(value, numbers.Real) and _as_float(value) in (0.0, 1.0):
            return float(value), None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return float(value.strip().lower() in _TRUE), None
        return math.nan, f"must be {feature.describe()}, got {_show(value)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return math.nan, f"must be {feature.describe()}, got {type(value).__name__} {_show(value)}"
    x = _as_float(value)
    if not math.isfinite(x):
        return math.nan, f"must be {feature.describe()}, got {_show(value)}"
    if feature.type == "int" and not x.is_integer():
        return math.nan, f"must be {feature.describe()}, got {_show(value)}"
    if x < feature.min or x > feature.max:
        side = "below the minimum" if x < feature.min else "above the maximum"
        return math.nan, f"{_fmt(x)} is {side}; expected {feature.describe()}"
    return x, None


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered input fields of a triage model, built from ``as_ai.json["features"]``.

    Example:
        >>> s = FeatureSchema.from_config([{"name": "crp", "label": "CRP", "unit": "mg/L", "min": 0,
        ...                                  "max": 300, "type": "float", "imputable": True}])
        >>> s.validate({"crp": None})
        (array([nan]), ['crp'])
    """

    features: tuple[Feature, ...]
    other: tuple[Feature, ...] = ()  # known clinical fields the model does not read: checked if given, then unused

    @classmethod
    def from_config(cls, items: list[Mapping[str, Any]],
                    other: list[Mapping[str, Any]] | None = None) -> FeatureSchema:
        """Build the schema from its JSON form (``features`` and optional ``other_fields``).

        Raises:
            ValueError: a malformed entry, or duplicate names.
        """
        feats = cls._parse(items)
        extra = cls._parse(other or [])
        names = [f.name for f in feats] + [f.name for f in extra]
        if len(set(names)) != len(names) or not feats:
            raise ValueError(f"feature names must be non-empty and unique, got {names}")
        return cls(tuple(feats), tuple(extra))

    @staticmethod
    def _parse(items: list[Mapping[str, Any]]) -> list[Feature]:
        feats = []
        for item in items:
            try:
                f = Feature(name=str(item["name"]), label=str(item.get("label", item["name"])),
                            unit=str(item.get("unit", "")), min=float(item["min"]), max=float(item["max"]),
                            type=str(item["type"]), imputable=bool(item.get("imputable", False)))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"malformed feature entry {item!r}: needs name, min, max and type ({exc})") from exc
            if f.type not in TYPES:
                raise ValueError(f"feature {f.name!r} has type {f.type!r}; expected one of {TYPES}")
            if not f.min <= f.max:
                raise ValueError(f"feature {f.name!r} has min {f.min} above max {f.max}")
            feats.append(f)
        return feats

    def to_config(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def index(self, names: list[str]) -> list[int]:
        """Column positions of ``names`` in the schema order."""
        pos = {n: i for i, n in enumerate(self.names)}
        return [pos[n] for n in names]

    def _unknown_message(self, name: str) -> str:
        also = f" (and accepts, without using: {', '.join(f.name for f in self.other)})" if self.other else ""
        return f"unknown field; this model reads {', '.join(self.names)}{also}"

    def validate(self, patient: Mapping[str, Any] | pd.DataFrame | pd.Series) -> tuple[np.ndarray, list[str]]:
        """Check one patient; return its values in schema order (NaN where imputed) and the imputed names.

        ``patient`` is a mapping (field -> value), a ``pandas.Series`` or a one-row ``DataFrame``.
        Booleans accept True/False, 1/0 and "yes"/"no"; a missing value is None, NaN or an absent field.

        Raises:
            InvalidPatientError: any bad field (all named in ``.fields``), or not exactly one patient.
        """
        if isinstance(patient, pd.DataFrame):
            if len(patient) != 1:
                raise InvalidPatientError(
                    f"Expected one patient (a one-row DataFrame), got {len(patient)} rows. Use "
                    "Triager.predict_frame for many patients.", fields={})
            patient = patient.iloc[0].to_dict()
        elif isinstance(patient, pd.Series):
            patient = patient.to_dict()
        if not isinstance(patient, Mapping):
            raise InvalidPatientError(
                f"A patient must be a dict of field -> value (or a one-row DataFrame), got "
                f"{type(patient).__name__}. Fields: {', '.join(self.names)}.", fields={})
        problems: dict[str, str] = {}
        known = set(self.names)
        other = {f.name: f for f in self.other}
        for key, value in patient.items():
            if key in other:
                if not _is_missing(value):
                    problem = _coerce(other[key], value)[1]
                    if problem:
                        problems[key] = problem
            elif key not in known:
                name = key if isinstance(key, str) else _show(key)
                problems[name] = self._unknown_message(name)
        values = np.full(len(self.features), np.nan)
        imputed: list[str] = []
        for i, f in enumerate(self.features):
            v = patient.get(f.name)
            if _is_missing(v):
                if f.imputable:
                    imputed.append(f.name)
                else:
                    problems[f.name] = f"missing; required ({f.describe()}), the model cannot impute it"
                continue
            values[i], problem = _coerce(f, v)
            if problem:
                problems[f.name] = problem
        if problems:
            raise InvalidPatientError(
                f"{len(problems)} patient field(s) do not fit the triage model's schema; correct them and retry",
                fields=problems)
        return values, imputed

    def validate_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Check many patients at once; return an (n, features) float array (NaN where imputed) and a
        boolean (n, features) mask of imputed cells.

        Raises:
            InvalidPatientError: any bad column or cell; ``.fields`` names each field with the rows at fault.
        """
        if not isinstance(frame, pd.DataFrame):
            raise InvalidPatientError(f"Expected a pandas DataFrame of patients, got {type(frame).__name__}.",
                                      fields={})
        problems: dict[str, str] = {}
        known = set(self.names) | {f.name for f in self.other}
        for col in frame.columns:
            if col not in known:
                problems[str(col)] = self._unknown_message(str(col))
        n = len(frame)
        out = np.full((n, len(self.features)), np.nan)
        labels = frame.index.tolist()
        for f in self.other:  # checked like the others, then dropped
            if f.name in frame.columns:
                _, _, problem = self._column(f, frame[f.name], labels)
                if problem:
                    problems[f.name] = problem
        for j, f in enumerate(self.features):
            if f.name not in frame.columns:
                if not f.imputable:
                    problems[f.name] = f"missing column; required ({f.describe()}), the model cannot impute it"
                continue
            out[:, j], miss, problem = self._column(f, frame[f.name], labels)
            if miss.any() and not f.imputable:
                rows = _rows([labels[i] for i in np.flatnonzero(miss)])
                problem = "; ".join(filter(None, [problem, f"missing; required ({f.describe()}), the model cannot "
                                                            f"impute it; rows: {rows}"]))
            if problem:
                problems[f.name] = problem
        if problems:
            raise InvalidPatientError(
                f"{len(problems)} field(s) do not fit the triage model's schema; correct them and retry",
                fields=problems)
        return out, np.isnan(out)


    @staticmethod
    def _column(f: Feature, col: pd.Series, labels: list[Any]) -> tuple[np.ndarray, np.ndarray, str | None]:
        """One column as floats (NaN where missing or bad), its missing mask, and what is wrong (or None)."""
        bad: list[str] = []
        if f.type != "bool" and pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            x = col.to_numpy(dtype=float, na_value=np.nan)
            miss = np.isnan(x)
            with np.errstate(invalid="ignore"):
                wrong = ~miss & ((~np.isfinite(x)) | (x < f.min) | (x > f.max)
                                 | ((f.type == "int") & (x != np.round(x))))
            bad = [f"{labels[i]} = {x[i]:g}" for i in np.flatnonzero(wrong)]
            values = np.where(wrong, np.nan, x)
        else:
            values, miss = np.full(len(col), np.nan), np.zeros(len(col), dtype=bool)
            for i, v in enumerate(col.tolist()):
                if _is_missing(v):
                    miss[i] = True
                    continue
                values[i], problem = _coerce(f, v)
                if problem:
                    bad.append(f"{labels[i]} = {v!r}")
        return values, miss, (f"must be {f.describe()}; rows: {_rows(bad)}" if bad else None)


def _rows(rows: list[Any]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_NAMED])
    return shown + (f" and {len(rows) - _MAX_ROWS_NAMED} more" if len(rows) > _MAX_ROWS_NAMED else "")


__all__ = ["Feature", "FeatureSchema", "TYPES"]
