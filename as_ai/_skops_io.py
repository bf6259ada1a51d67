"""Save and load scikit-learn pipelines with skops.io, trusting only an explicit allow-list of types.

A ``.skops`` file is a zip with a JSON schema naming every object's type; loading never unpickles.
Before loading we read that schema and refuse the file if *any* type in it (including ones skops
would trust by default) is not on :data:`ALLOWED_TYPES` — the exact classes the triage pipelines are
made of. Then skops loads it, trusting only the allow-listed types it asks about.
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Any

from .errors import ModelLoadError, UntrustedModelError

#: Every type a triage pipeline may contain (module.qualname as skops records it).
ALLOWED_TYPES: frozenset[str] = frozenset({
    # containers and scalars
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
    "numpy.intp", "numpy.bool_", "numpy.bool", "numpy.random.mtrand.RandomState",
    "sklearn.utils._bunch.Bunch",
    # pipeline, imputation, scaling
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._iterative.IterativeImputer", "sklearn.impute._iterative._ImputerTriplet",
    "sklearn.impute._base.SimpleImputer", "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.preprocessing._data.StandardScaler",
    # single models
    "sklearn.linear_model._base.LinearRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.Lasso", "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.svm._classes.SVR",
    "sklearn.neighbors._regression.KNeighborsRegressor", "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree", "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.tree._classes.DecisionTreeRegressor", "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    # ensembles and stacking
    "sklearn.ensemble._forest.RandomForestRegressor", "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingRegressor", "sklearn.ensemble._weight_boosting.AdaBoostRegressor",
    "sklearn.ensemble._stacking.StackingRegressor", "sklearn.dummy.DummyRegressor",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
})


def _schema_types(path: str | os.PathLike) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def audit(path: str | os.PathLike) -> list[str]:
    """The types in a skops file that are *not* on :data:`ALLOWED_TYPES` (sorted; empty = acceptable).

    Raises:
        ModelLoadError: the file is not a readable skops archive.
    """
    import skops.io as sio

    try:
        found = _schema_types(path) | set(sio.get_untrusted_types(file=path))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{os.fspath(path)!r} is not a readable skops file ({exc}).") from exc
    return sorted(found - ALLOWED_TYPES)


def load_pipeline(path: str | os.PathLike, *, model_id: str | None = None, revision: str | None = None) -> Any:
    """Load a scikit-learn object from a skops file after checking every type against the allow-list.

    Raises:
        UntrustedModelError: the file holds a type not on :data:`ALLOWED_TYPES` (listed in ``.untrusted``).
        ModelLoadError: the file cannot be read or rebuilt.
    """
    import skops.io as sio

    try:
        bad = audit(path)
    except ModelLoadError as exc:
        raise ModelLoadError(str(exc), model_id=model_id, revision=revision) from exc
    if bad:
        raise UntrustedModelError(
            f"{os.path.basename(path)} in {model_id or os.fspath(path)!r} contains types that as-ai does not "
            f"trust: {', '.join(bad)}. Refusing to load it; only scikit-learn pipelines made of the allowed "
            "imputation, scaling, regression and stacking classes can be loaded. Use a model repository "
            "produced by train/clinical.py.", untrusted=bad, model_id=model_id, revision=revision)
    try:
        trusted = sorted(set(sio.get_untrusted_types(file=path)) & ALLOWED_TYPES)
        return sio.load(path, trusted=trusted)
    except Exception as exc:  # skops raises many kinds on a damaged or version-incompatible file
        raise ModelLoadError(f"Could not rebuild {os.path.basename(path)} from {model_id or os.fspath(path)!r}: "
                             f"{type(exc).__name__}: {exc}. The file may come from an incompatible "
                             "scikit-learn version.", model_id=model_id, revision=revision) from exc


def save_pipeline(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as a compressed skops file, refusing objects we would later refuse to load.

    Raises:
        ValueError: ``obj`` contains a type outside :data:`ALLOWED_TYPES` (the file is removed).
    """
    import skops.io as sio

    sio.dump(obj, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    bad = audit(path)
    if bad:
        os.remove(path)
        raise ValueError(f"cannot save a pipeline with types outside the triage allow-list: {bad}")


__all__ = ["ALLOWED_TYPES", "audit", "load_pipeline", "save_pipeline"]
