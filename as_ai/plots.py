"""Kaplan–Meier cumulative-risk curves drawn one way everywhere: the Space's risk plot and training's report.

A curve is anything with ``time``, ``risk`` and optionally ``lower`` / ``upper`` (the pointwise band),
``n`` and ``events``: a :class:`as_ai.survival.KMCurve` or the dict ``Triage.to_dict()["curves"]`` holds.
Matplotlib is imported by the caller (the Space uses ``matplotlib.figure.Figure``, no global state).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

GROUP_COLOURS = {"high": "#b91c1c", "low": "#1d4ed8"}
OTHER_COLOUR = "#6b7280"


def _get(curve: Any, key: str, default: Any = None) -> Any:
    return curve.get(key, default) if isinstance(curve, Mapping) else getattr(curve, key, default)


def draw_risk_curves(ax: Any, curves: Mapping[str, Any], *, highlight: str | None = None, name: str = "") -> None:
    """Draw each group's cumulative-risk step curve and its band on ``ax``, groups in name order.

    ``highlight`` (a group name) is drawn bold and labelled as the patient's group; the others fade.
    Labels read "<group> <name> (n=…, events=…)".
    """
    for group in sorted(curves):
        curve = curves[group]
        time, risk = _get(curve, "time"), _get(curve, "risk")
        if time is None or risk is None:
            continue
        mine = highlight is not None and group == highlight
        faded = highlight is not None and not mine
        colour = GROUP_COLOURS.get(group, OTHER_COLOUR)
        counts = ", ".join(f"{k}={_get(curve, k)}" for k in ("n", "events") if _get(curve, k) is not None)
        label = f"{group}{' ' + name if name else ''}" + (f" ({counts})" if counts else "")
        label += "  ← patient's group" if mine else ""
        x, y = np.asarray(time, float), np.asarray(risk, float)
        ax.step(x, y, where="post", lw=3.2 if mine else 1.4, color=colour, alpha=0.5 if faded else 1.0,
                label=label, gid=f"{name.lower() or 'risk'}-{group}{'-patient' if mine else ''}")
        lower, upper = _get(curve, "lower"), _get(curve, "upper")
        if lower is not None and upper is not None:
            ax.fill_between(x, lower, upper, step="post", color=colour,
                            alpha=0.06 if faded else 0.18 if mine else 0.15)


__all__ = ["draw_risk_curves", "GROUP_COLOURS"]
