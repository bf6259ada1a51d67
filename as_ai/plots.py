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


GRADE_COLOURS = {0: (34, 197, 94), 1: (163, 230, 53), 2: (245, 158, 11), 3: (239, 68, 68), 4: (185, 28, 28)}
NOT_FOUND_COLOUR = (156, 163, 175)


def draw_joint_boxes(image: Any, reading: Any, *, width: int | None = None, canvas: np.ndarray | None = None
                     ) -> np.ndarray:
    """The image (anything :func:`as_ai.load_radiograph` reads) as uint8 RGB H x W x 3 with both sacroiliac joints'
    boxes drawn, coloured by grade (green 0 .. dark red 4; grey when the joint was not found plausibly), and a
    label per box: the patient's side, grade, its probability and the localiser's confidence.

    ``reading`` is a :class:`~as_ai.joints.JointReading` or its ``to_dict()``, or a Diagnosis (or its
    ``to_dict()``) that carries one in ``sides``. For the Space and reports; the boxes are in the image's own pixels, so nothing is resized.
    ``canvas``: an RGB uint8 picture of the same image to draw on instead (a heatmap overlay, possibly shrunk;
    the boxes are scaled to it).

    Raises:
        InvalidImageError: the image cannot be read.
        ValueError: ``reading`` holds no sides (a Diagnosis made without a joint reader).
    """
    from PIL import Image, ImageDraw, ImageFont

    from .decoding import load_radiograph

    if isinstance(reading, Mapping) and "mny_probability" not in reading:   # a Diagnosis.to_dict()
        reading = reading.get("sides")
    elif reading is not None and not isinstance(reading, Mapping) and not hasattr(reading, "mny_probability"):
        reading = getattr(reading, "sides", None)                           # a Diagnosis
    if reading is None:
        raise ValueError("no joint reading to draw: the diagnosis was made without a joint reader "
                         "(Diagnoser.attach_joint_reader)")
    sides = reading["sides"].values() if isinstance(reading, Mapping) else [s.to_dict() for s in reading.sides]
    rg = load_radiograph(image)
    scale = 1.0
    if canvas is not None:
        canvas = np.asarray(canvas)
        if canvas.dtype != np.uint8 or canvas.ndim != 3 or canvas.shape[2] != 3:
            raise ValueError(f"canvas must be an RGB uint8 H x W x 3 array, got {canvas.dtype} {canvas.shape}")
        scale = canvas.shape[0] / rg.shape[0]
        im = Image.fromarray(canvas)
    else:
        im = Image.fromarray((np.asarray(rg.pixels) * 255.0 + 0.5).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(im)
    h, w = im.height, im.width
    lw = int(width or max(2, round(min(h, w) / 256)))
    font = ImageFont.load_default(size=max(10, int(min(h, w) / 40)))
    for s in sides:
        x0, y0, x1, y1 = (float(v) * scale for v in s["box"])
        colour = GRADE_COLOURS.get(int(s["grade"]), NOT_FOUND_COLOUR) if s["found"] else NOT_FOUND_COLOUR
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=lw)
        p = float(s["probabilities"][int(s["grade"])])
        text = (f"{'L' if s['side'] == 'left' else 'R'} grade {int(s['grade'])} ({p:.2f})" if s["found"]
                else f"{'L' if s['side'] == 'left' else 'R'}: not found")
        ty = y0 - font.size - 2 * lw if y0 - font.size - 2 * lw >= 0 else y1 + lw
        box = draw.textbbox((x0, ty), text, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((x0, ty), text, fill=colour, font=font)
    return np.asarray(im, dtype=np.uint8).copy()


__all__ = ["draw_risk_curves", "draw_joint_boxes", "GROUP_COLOURS", "GRADE_COLOURS"]
