"""Clinical triage: predicted BASFI and BASDAI, their prediction intervals, and the surgical-risk group.

A triage model repository holds two scikit-learn pipelines (``basfi.skops``, ``basdai.skops``: iterative
imputation -> standardisation -> stacked regressors) and an ``as_ai.json`` with the feature schema, the
cut-offs found by survival analysis on the training set, the interval half-widths (split-conformal),
the groups' cumulative surgical-risk curves and the training metrics. :class:`Triager` loads it and
scores patients; :func:`triage` keeps one loaded instance per (model, revision).

Example:
    >>> import as_ai
    >>> t = as_ai.triage({"age": 41, "male": True, "hip_involvement": False, ...})  # doctest: +SKIP
    >>> t.groups, t.risk                                                              # doctest: +SKIP
    ({'basfi': 'low', 'basdai': 'high'}, 'high')
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import hub
from ._schema import FeatureSchema
from ._skops_io import load_pipeline, save_pipeline
from .errors import ModelLoadError

TARGETS = ("basfi", "basdai")
TARGET_LABELS = {"basfi": "BASFI (functional limitation)", "basdai": "BASDAI (disease activity)"}
SCORE_RANGE = (0.0, 10.0)
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Triage:
    """The triage of one patient.

    ``basfi``/``basdai`` are predicted scores (0–10); ``intervals`` their prediction intervals at
    ``interval_level``; ``groups`` is "high" where the prediction is above the model's cut-off (stored in
    ``cutoffs``, found on the training data) and "low" otherwise; ``risk`` is "high" if either group is.
    ``curves`` are the groups' cumulative surgical-risk curves from training, ``imputed`` the fields that
    were missing and imputed, ``model`` the model's provenance.
    """

    basfi: float
    basdai: float
    intervals: dict[str, tuple[float, float]]
    interval_level: float
    groups: dict[str, str]
    risk: str
    cutoffs: dict[str, float]
    curves: dict[str, Any] = field(repr=False)
    imputed: list[str]
    model: str
    synthetic: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "basfi": self.basfi, "basdai": self.basdai,
            "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()},
            "interval_level": self.interval_level, "groups": dict(self.groups), "risk": self.risk,
            "cutoffs": dict(self.cutoffs), "curves": self.curves, "imputed": list(self.imputed),
            "model": self.model, "synthetic": self.synthetic,
        }

    def summary(self) -> str:
        """A short clinician-facing paragraph describing the result and its limits."""
        pct = round(100 * self.interval_level)
        lines = []
        for t in TARGETS:
            lo, hi = self.intervals[t]
            side = "above" if self.groups[t] == "high" else "at or below"
            lines.append(f"Predicted {TARGET_LABELS[t]}: {getattr(self, t):.1f} ({pct} % interval {lo:.1f}–{hi:.1f}), "
                         f"{side} the cut-off {self.cutoffs[t]:g}.")
        risk = ("suggests a higher risk of needing surgery (a high-risk group by BASFI or BASDAI)"
                if self.risk == "high" else "suggests a lower risk of needing surgery (low-risk groups)")
        lines.append(f"This profile {risk}. It supports, and does not replace, clinical judgement.")
        if self.imputed:
            lines.append(f"Imputed (not given): {', '.join(self.imputed)}.")
        if self.synthetic:
            lines.append("Model trained on synthetic data: for demonstration and research only, not for clinical use.")
        return "\n".join(lines)


class Triager:
    """BASFI/BASDAI prediction and surgical-risk grouping with one triage model repository.

    Build it with :meth:`from_pretrained`; call it on one patient (dict or one-row DataFrame) or use
    :meth:`predict_frame` for many.

    Example:
        >>> tr = Triager.from_pretrained("as_ai/demo_models/triage")   # doctest: +SKIP
        >>> tr({"age": 41, ...}).risk                                   # doctest: +SKIP
        'low'
    """

    def __init__(self, config: Mapping[str, Any], pipelines: Mapping[str, Any], *, provenance: str) -> None:
        self.config = dict(config)
        self.pipelines = dict(pipelines)
        self.provenance = provenance
        self.schema = FeatureSchema.from_config(self.config["features"], self.config.get("other_fields"))
        targets = self.config["targets"]
        self.cutoffs = {t: float(targets[t]["cutoff"]) for t in TARGETS}
        self.interval_level = float(targets[TARGETS[0]]["interval"]["level"])
        self._halfwidth = {t: float(targets[t]["interval"]["halfwidth"]) for t in TARGETS}
        self._columns = {t: self.schema.index(list(targets[t]["inputs"])) for t in TARGETS}
        self.curves = self.config.get("curves", {})
        self.synthetic = bool(self.config.get("training", {}).get("synthetic", False))
        self.resolved: hub.ResolvedModel | None = None  # set by from_pretrained
        self._after_imputer = {t: _after_imputer(p) for t, p in self.pipelines.items()}

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike, revision: str | None = None) -> Triager:
        """Load a triage model repository (local folder or Hub id), verified by checksum.

        Raises:
            ModelLoadError: missing repository or file, wrong kind/format, checksum mismatch, bad config.
            UntrustedModelError: a pipeline file holds a type outside the allow-list.
        """
        resolved = hub.resolve_model(model_id, revision, kind="triage")
        cfg = resolved.config
        try:
            files = {t: cfg["targets"][t]["file"] for t in TARGETS}
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"as_ai.json of {resolved.model_id!r} lacks targets.basfi/basdai.file ({exc}).",
                                 model_id=resolved.model_id, revision=revision) from exc
        pipelines = {}
        for t, rel in files.items():
            if rel not in cfg.get("files", {}):
                raise ModelLoadError(f"{rel!r} of {resolved.model_id!r} has no checksum in as_ai.json; refusing "
                                     "to load an unverified file.", model_id=resolved.model_id, revision=revision)
            pipelines[t] = load_pipeline(resolved.path / rel, model_id=resolved.model_id, revision=revision)
        try:
            triager = cls(cfg, pipelines, provenance=resolved.provenance)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"as_ai.json of {resolved.model_id!r} is malformed: {type(exc).__name__}: {exc}",
                                 model_id=resolved.model_id, revision=revision) from exc
        triager.resolved = resolved
        return triager

    def save_pretrained(self, folder: str | os.PathLike, *, card: str | None = None) -> Path:
        """Write the repository: one skops file per target, ``as_ai.json`` with checksums, README card."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        cfg = json.loads(json.dumps(self.config))
        cfg["kind"], cfg["format_version"] = "triage", FORMAT_VERSION
        cfg["files"] = {}
        for t in TARGETS:
            rel = cfg["targets"][t].get("file", f"{t}.skops")
            cfg["targets"][t]["file"] = rel
            save_pipeline(self.pipelines[t], out / rel)
            cfg["files"][rel] = hub.sha256_file(out / rel)
        (out / hub.CONFIG_NAME).write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")
        if card is not None:
            (out / "README.md").write_text(card, encoding="utf-8")
        return out

    # ----------------------------------------------------------------------------------- scoring
    def _predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Predict both scores. Rows with nothing to impute skip the imputer step: its transform returns
        such rows unchanged, and running its ~70 per-feature regressions costs most of one patient's latency."""
        lo, hi = SCORE_RANGE
        out = {}
        for t in TARGETS:
            Xt = X[:, self._columns[t]]
            complete = ~np.isnan(Xt).any(axis=1)
            pipe, rest = self.pipelines[t], self._after_imputer[t]
            if rest is None or not complete.any():
                pred = pipe.predict(Xt)
            elif complete.all():
                pred = rest.predict(Xt)
            else:
                pred = np.empty(len(Xt))
                pred[complete] = rest.predict(Xt[complete])
                pred[~complete] = pipe.predict(Xt[~complete])
            out[t] = np.clip(pred, lo, hi)
        return out

    def __call__(self, patient: Mapping[str, Any] | pd.DataFrame) -> Triage:
        """Triage one patient (a dict of field -> value, or a one-row DataFrame).

        Raises:
            InvalidPatientError: fields that are unknown, of the wrong type, out of range, or missing and
                not imputable — every one named in ``.fields``.
        """
        values, imputed = self.schema.validate(patient)
        preds = self._predict(values[None, :])
        lo, hi = SCORE_RANGE
        scores = {t: round(float(preds[t][0]), 2) for t in TARGETS}
        intervals = {t: (round(max(lo, scores[t] - self._halfwidth[t]), 2),
                         round(min(hi, scores[t] + self._halfwidth[t]), 2)) for t in TARGETS}
        groups = {t: "high" if scores[t] > self.cutoffs[t] else "low" for t in TARGETS}
        return Triage(basfi=scores["basfi"], basdai=scores["basdai"], intervals=intervals,
                      interval_level=self.interval_level, groups=groups,
                      risk="high" if "high" in groups.values() else "low", cutoffs=dict(self.cutoffs),
                      curves=self.curves, imputed=imputed, model=self.provenance, synthetic=self.synthetic)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Triage many patients at once (one row each, columns = schema fields); same index as ``frame``.

        Columns: ``basfi``, ``basfi_low``, ``basfi_high``, ``basfi_group``, the same for ``basdai``,
        ``risk`` and ``imputed`` (the imputed field names joined by ";").

        Raises:
            InvalidPatientError: bad columns or cells; ``.fields`` names each field and the rows at fault.
        """
        values, missing = self.schema.validate_frame(frame)
        out = pd.DataFrame(index=frame.index)
        if len(frame) == 0:
            return out.assign(**{c: [] for c in _FRAME_COLUMNS})
        preds = self._predict(values)
        lo, hi = SCORE_RANGE
        high = np.zeros(len(frame), dtype=bool)
        for t in TARGETS:
            p = np.round(preds[t], 2)
            out[t] = p
            out[f"{t}_low"] = np.round(np.maximum(lo, p - self._halfwidth[t]), 2)
            out[f"{t}_high"] = np.round(np.minimum(hi, p + self._halfwidth[t]), 2)
            out[f"{t}_group"] = np.where(p > self.cutoffs[t], "high", "low")
            high |= p > self.cutoffs[t]
        out["risk"] = np.where(high, "high", "low")
        names = np.array(self.schema.names, dtype=object)
        out["imputed"] = [";".join(names[row]) for row in missing]
        return out


def _after_imputer(pipe: Any) -> Any:
    """The pipeline without its leading IterativeImputer (None if it does not start with one)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401 - makes IterativeImputer importable
    from sklearn.impute import IterativeImputer
    from sklearn.pipeline import Pipeline

    if isinstance(pipe, Pipeline) and len(pipe.steps) > 1 and isinstance(pipe.steps[0][1], IterativeImputer):
        return pipe[1:]
    return None


_FRAME_COLUMNS = ["basfi", "basfi_low", "basfi_high", "basfi_group", "basdai", "basdai_low", "basdai_high",
                  "basdai_group", "risk", "imputed"]


def load_triager(model: str | os.PathLike | None = None, revision: str | None = None) -> Triager:
    """The :class:`Triager` for (``model``, ``revision``), loaded once per process and kept.

    ``model=None`` uses ``AS_AI_TRIAGE_MODEL`` or the bundled demo model (trained on a synthetic cohort,
    with a one-time :class:`~as_ai.errors.SyntheticModelWarning`). :func:`triage` uses the same instance;
    :func:`as_ai.clear_cache` forgets it.

    Raises:
        ModelLoadError / UntrustedModelError: the model cannot be loaded or verified.
    """
    return hub.load_cached("triage", model, revision, Triager.from_pretrained)


def triage(patient: Mapping[str, Any] | pd.DataFrame, *, model: str | os.PathLike | None = None,
           revision: str | None = None) -> Triage:
    """Predict BASFI and BASDAI for one patient and place them in a surgical-risk group.

    ``model=None`` uses ``AS_AI_TRIAGE_MODEL`` or the bundled demo model (trained on a synthetic cohort,
    with a one-time :class:`~as_ai.errors.SyntheticModelWarning`). The loaded model is kept for later calls
    (:func:`load_triager`).

    Raises:
        InvalidPatientError: bad patient fields (all named in ``.fields``).
        ModelLoadError / UntrustedModelError: the model cannot be loaded or verified.

    Example:
        >>> t = triage({"age": 41, "male": True, "hip_involvement": False})   # doctest: +SKIP
        >>> t.risk in ("high", "low")                                          # doctest: +SKIP
        True
    """
    # load_triager's one line, called from here so that the demo warning names the caller of triage()
    triager = hub.load_cached("triage", model, revision, Triager.from_pretrained)
    return triager(patient)


__all__ = ["Triage", "Triager", "triage", "load_triager", "TARGETS"]
