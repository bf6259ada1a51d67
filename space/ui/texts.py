"""The words around the results: title, research-use notices, the busy message, the About page."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from .settings import CONCURRENCY_LIMIT, QUEUE_MAX_SIZE

TITLE = "as-ai — ankylosing spondylitis: pelvic radiograph reading and clinical triage"
NOTICE = (
    "**Research use only — not a medical device.** The bundled models were trained on *synthetic phantom* "
    "radiographs and a *synthetic* patient cohort. Their outputs are demonstrations, not diagnoses; do not "
    "use them to make clinical decisions."
)
BUSY = (
    f"Requests are processed {CONCURRENCY_LIMIT} at a time; up to {QUEUE_MAX_SIZE} wait in a queue. "
    "When the page says the application is busy, the queue is full: please try again in a minute."
)
CSS = """
#notice {border-left: 6px solid #d97706; background: #fffbeb; padding: 6px 12px; border-radius: 6px;}
#notice p {margin: 0; color: #78350f;}
@media (max-width: 640px) {
  h1 {font-size: 1.25em !important;}
  button[role="tab"] {padding-left: 8px !important; padding-right: 8px !important;}
}
"""
# Phones: show the decimal keypad in the clinical number fields (text boxes, see feature_inputs).
HEAD = """<script>
new MutationObserver(() => document.querySelectorAll('.as-ai-number input, .as-ai-number textarea')
  .forEach(el => { if (el.inputMode !== 'decimal') el.inputMode = 'decimal'; }))
  .observe(document.documentElement, {childList: true, subtree: true});
</script>"""


def _card_markdown(path: Path) -> str:
    card = path / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    return re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S).strip() or "_This repository has no model card._"


def notice(models: Any) -> str:
    """The research-use notice shown above every tab; it names synthetic training when it applies."""
    if models.synthetic:
        return NOTICE
    return ("**Research use only — not a medical device.** Outputs are model estimates, not diagnoses; "
            "do not use them to make clinical decisions.")


def about_markdown(models: Any) -> str:
    """What the tool is, the reference study, the loaded models with revision, and their cards."""
    parts = [
        "## What this is",
        "as-ai is an open toolkit that reproduces and extends a published AI system for ankylosing spondylitis "
        "(AS). An ensemble of convolutional networks reads an anteroposterior (AP) pelvic radiograph and "
        "estimates the probability of radiographic sacroiliitis consistent with AS; stacked regressors predict "
        "BASFI and BASDAI from a few clinical variables, and cut-offs found by survival analysis sort patients "
        "into higher and lower risk of needing surgery. Each answer comes with what is needed to judge it: the "
        "calibrated probability and the threshold used, the members' agreement, an input check that abstains "
        "on images unlike the training data, advice on phone photos, and heatmaps.",
        "## Reference study",
        "Li et al., *Frontiers in Public Health* (2023): a comprehensive artificial-intelligence tool for "
        "ankylosing spondylitis. An ensemble of the five best of ten ImageNet-pretrained CNNs read AP pelvic "
        "radiographs (external test AUC 0.96, better than two expert readers; AUC 0.90 on smartphone photos of "
        "the images on a monitor), and stacked machine-learning models predicted BASFI and BASDAI, with "
        "surgical-risk groups split at cut-offs found by maximally selected log-rank statistics. as-ai is an "
        "independent re-implementation, not the authors' code or weights.",
        "## Research use only",
        "Not a medical device and not validated for clinical use. "
        + ("The bundled models learned from phantoms made by as-ai's synthetic data engine and from a synthetic "
           "cohort, so their accuracy on real patients is unknown. To serve models trained on real data, set "
           "AS_AI_DIAGNOSIS_MODEL / AS_AI_TRIAGE_MODEL (Hub repo id or folder)." if models.synthetic
           else "Check each model card below for its training data, evaluation and limitations."),
        "## Loaded models",
    ]
    for kind, m in (("Diagnosis", models.diagnoser), ("Triage", models.triager)):
        res = m.resolved
        trained = "synthetic data" if m.synthetic else "data described in its card"
        parts.append(f"- **{kind}:** `{html.escape(str(res.model_id))}`, revision `{html.escape(str(res.revision))}`"
                     f", trained on {trained}  \n  provenance `{html.escape(res.provenance)}`")
    for kind, m in (("Diagnosis", models.diagnoser), ("Triage", models.triager)):
        parts.append(f"<details><summary><b>{kind} model card</b></summary>\n\n"
                     f"{_card_markdown(m.resolved.path)}\n\n</details>")
    return "\n\n".join(parts)
