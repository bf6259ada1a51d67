"""Every result as the page shows it: Markdown built from the library's wording, and images.

The sentences themselves are :mod:`as_ai.wording`'s (the same a report or the CLI says); this module adds
only Markdown emphasis, bullets and tables, HTML-escaping anything that came from a model or a file.
"""
from __future__ import annotations

import html
from typing import Any

import numpy as np

from as_ai import wording
from as_ai.plots import draw_risk_curves

HEATMAP_LABELS = {"gradcam": "Grad-CAM: yellow to red where the ensemble looked for AS",
                  "lime": "LIME: red regions raise P(AS), blue regions lower it"}


def finding_text(d: Any) -> str:
    """A Diagnosis's finding for the page: headline, calibrated probability against the threshold, and the
    library's finding sentence. Findings "suggest"; an abstention gives its reasons and no finding."""
    if d.label == "indeterminate":
        lines = "\n".join(f"- {html.escape(r)}" for r in wording.abstention_reasons(d))
        return f"### {wording.HEAD_ABSTAINED}\n{wording.ABSTAINED_INTRO}\n{lines}\n\n{wording.UPLOAD_ADVICE}"
    pct = wording.percent(d.probability)
    probability = wording.probability_sentence(d).replace(pct, f"**{pct}**", 1)
    return f"### {wording.headline(d)}\n{probability}\n\n{html.escape(d.finding)}"


JOINTS_MEMBER = "joints"   # as_ai.cross_view.JOINTS: the joint reader among the members


def members_text(d: Any) -> str:
    """The ensemble members' own probabilities and their spread, as a small table; with a joint reader, both
    sacroiliac joints' grades below it."""
    rows = "\n".join(f"| {html.escape(str(n))} | {p:.3f} |" for n, p in d.members.items() if n != JOINTS_MEMBER)
    if JOINTS_MEMBER in d.members:
        rows += f"\n| joint reader: P(modified New York) from both sides | {d.members[JOINTS_MEMBER]:.3f} |"
    text = f"| ensemble member | P(AS), uncalibrated |\n|---|---|\n{rows}\n\n{wording.spread_sentence(d)}"
    return text if d.sides is None else f"{text}\n\n{sides_text(d.sides)}"


def sides_text(reading: Any) -> str:
    """Both sacroiliac joints as the joint reader graded them (the patient's sides), as a small table."""
    rows = []
    for s in reading.sides:
        grade = f"{s.grade} ({100 * s.probabilities[s.grade]:.0f} %)" if s.found else "not found"
        rows.append(f"| {s.side} | {grade} | {s.confidence:.2f} |")
    return ("| sacroiliac joint (patient's side) | grade 0-4 (its probability) | localiser confidence |\n"
            "|---|---|---|\n" + "\n".join(rows))


def joints_picture(radiograph: Any, d: Any, heat: dict[str, Any]) -> dict[str, Any]:
    """The heatmap update ``heat`` with both joints' boxes and grades drawn on it, or on the radiograph itself
    (shrunk for the page) when no heatmap was made. ``heat``'s picture must show the radiograph's own pixels."""
    import gradio as gr

    from as_ai.plots import draw_joint_boxes

    value = heat.get("value")
    if value is None:
        grey = (np.clip(for_page(radiograph.pixels), 0, 1) * 255).round().astype(np.uint8)
        return gr.update(value=draw_joint_boxes(radiograph, d, canvas=np.repeat(grey[..., None], 3, axis=2)),
                         label="Both sacroiliac joints: boxes and grades (no heatmap asked for)")
    return gr.update(value=draw_joint_boxes(radiograph, d, canvas=value),
                     label=f"{heat.get('label', '')}; joint boxes and grades")


def check_text(d: Any, *, photo: bool = False) -> str:
    """The input check and, when relevant, the photo-quality advice, in plain words."""
    pc = d.check.photo
    advice = list(pc.advice) if pc is not None else []
    lines = [wording.input_check_sentence(d).replace("Input check:", "**Input check:**", 1)]
    others = [r for r in d.check.reasons if r not in advice]
    if others and d.label != "indeterminate":
        lines += [f"- {html.escape(r)}" for r in others]
    if photo or advice:
        if advice:
            lines.append("\n**Photo quality: how to take a better picture**")
            lines += [f"- {html.escape(a)}" for a in advice]
        elif pc is not None:
            q = f" (quality score {pc.score:.2f})" if pc.score is not None else ""
            lines.append(f"\n**Photo quality:** no problems found{q}.")
    return "\n".join(lines)


def for_page(a: np.ndarray, max_side: int = 768) -> np.ndarray:
    """An H x W float picture shrunk (bilinear) so that its longer side is at most ``max_side``; float32."""
    from PIL import Image

    a = np.asarray(a, dtype=np.float32)
    h, w = a.shape
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return a
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR), dtype=np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, signed: bool = False, max_side: int = 768,
            alpha: float = 0.6) -> np.ndarray:
    """Blend an explanation heatmap over the grey radiograph for display; returns uint8 RGB.

    ``image`` is H×W in [0, 1]; ``heatmap`` has the same grid. Grad-CAM maps (in [0, 1]) are drawn in
    yellow-red, more opaque where stronger; signed LIME maps (in [-1, 1]) in red where a region raises
    P(AS) and blue where it lowers it. Large images are shrunk to ``max_side`` for the page.
    """
    img = for_page(image, max_side)
    hm = for_page(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), max_side)
    if signed:
        strength = np.clip(np.abs(hm), 0, 1)
        colour = np.where((hm >= 0)[..., None], np.array([0.86, 0.1, 0.1], np.float32),
                          np.array([0.1, 0.35, 0.95], np.float32))
    else:
        strength = np.clip(hm, 0, 1)
        colour = np.stack([np.ones_like(strength), 1 - 0.85 * strength, np.zeros_like(strength)], axis=-1)
    weight = alpha * (strength * np.sqrt(strength))[..., None]   # strength^1.5: faint heat stays faint
    out = (1 - weight) * np.clip(img, 0, 1)[..., None] + weight * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def scores_text(t: Any, labels: dict[str, str] | None = None) -> str:
    """Predicted BASFI / BASDAI with their intervals, cut-offs and groups, as a table."""
    pct = round(100 * t.interval_level)
    rows = []
    for key, name in (("basfi", "BASFI (function)"), ("basdai", "BASDAI (disease activity)")):
        lo, hi = t.intervals[key]
        rows.append(f"| {name} | **{getattr(t, key):.1f}** | {lo:.1f} – {hi:.1f} | {t.cutoffs[key]:.2f} "
                    f"| {t.groups[key]} |")
    imputed = [(labels or {}).get(i, i) for i in t.imputed]
    note = (f"\n\nNot given, so imputed by the model: {html.escape(', '.join(imputed))}." if imputed else "")
    return (f"| score (0–10) | predicted | {pct} % interval | cut-off | group |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + note)


def risk_text(t: Any) -> str:
    """The surgical-risk group in words."""
    if t.risk == "high":
        which = " and ".join(k.upper() for k in ("basfi", "basdai") if t.groups[k] == "high")
        return (f"### Higher risk of needing surgery\nPredicted {which} above the cut-off. In the training cohort, "
                "patients in the high group reached joint surgery sooner (curves below). This supports, and "
                "does not replace, clinical judgement.")
    return ("### Lower risk of needing surgery\nBoth predicted scores are at or below their cut-offs. In the "
            "training cohort, patients in the low groups reached joint surgery later (curves below). This "
            "supports, and does not replace, clinical judgement.")


def risk_plot(t: Any):
    """Cumulative surgical-risk curves of the training groups, the patient's group drawn bold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, name in zip(axes, ("basfi", "basdai"), ("BASFI", "BASDAI")):
        curves = {g: c for g, c in t.curves.get(key, {}).items() if isinstance(c, dict) and "risk" in c}
        draw_risk_curves(ax, curves, highlight=t.groups[key], name=name)
        ax.set_title(f"{name} cut-off {t.cutoffs[key]:.2f}: patient in the {t.groups[key]} group", fontsize=10)
        ax.set_xlabel("years of follow-up")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cumulative risk of surgery")
    fig.suptitle("Kaplan–Meier cumulative surgical risk by group, training cohort"
                 + (" (synthetic)" if getattr(t, "synthetic", False) else ""), fontsize=10)
    return fig
