"""The cautions a diagnosis model's own evaluation earns its results (:class:`~as_ai.diagnoser.Diagnoser`'s).

A result on a phone photo of a screen carries the model's measured photo figures; a result on a blurred image
carries a caution when the model's softness test found blur raising P(AS) on non-AS images. Both read the
``metrics`` of ``as_ai.json``; the sentences are :mod:`as_ai.wording`'s.
"""
from __future__ import annotations

from typing import Any, Mapping

from . import wording

SOFTNESS_CAUTION_RISE = 0.05  # rise of the non-AS mean P(AS) under the softness test that earns a caution

__all__ = ["photo_caution", "softness_caution", "SOFTNESS_CAUTION_RISE"]


def photo_caution(config: Mapping[str, Any], *, stretched: bool, cross_view: Any = None) -> str:
    """What a result on a photo of a screen carries (:func:`as_ai.wording.photo_caution`), with the model's own
    figures when its evaluation measured them (external phantoms vs phone photos of them): the cross-view
    rule's (``cross_view``, a :class:`~as_ai.cross_view.CrossViewRule` in use) when it measured them, else the
    whole-image ensemble's."""
    xm = getattr(cross_view, "metrics", None) or {}
    if "external" in xm and "external_phone" in xm:
        clean, phone = xm["external"]["cross_view"], xm["external_phone"]["cross_view"]
    else:
        m = config.get("metrics", {})
        clean, phone = m.get("external", {}).get("true", {}), m.get("external_phone", {}).get("true", {})
    return wording.photo_caution(clean_auc=clean.get("auc"), phone_auc=phone.get("auc"),
                                 phone_specificity=phone.get("specificity"), stretched=stretched)


def softness_caution(config: Mapping[str, Any]) -> str | None:
    """The caution for a blurred image when the model's evaluation found softer images read as more likely AS
    by more than ``SOFTNESS_CAUTION_RISE`` (``metrics.external_softness``), else None."""
    rows = config.get("metrics", {}).get("external_softness", {}).get("rows") or []
    try:
        base, soft = rows[0], rows[-1]
        rise = float(soft["mean_prob_non_as"]) - float(base["mean_prob_non_as"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None
    if len(rows) < 2 or rise <= SOFTNESS_CAUTION_RISE:
        return None
    return wording.softness_caution(sigma=float(soft["sigma"]), before=float(base["mean_prob_non_as"]),
                                    after=float(soft["mean_prob_non_as"]))
