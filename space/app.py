"""as-ai Gradio Space: radiograph, camera and clinical-triage tabs over the ``as_ai`` library.

UI only. Every number shown here comes from ``as_ai`` (the diagnosis ensemble, its input check and
explanations, the triage models and their survival curves); this file lays them out for people.

Run locally:  ``python space/app.py``  (http://127.0.0.1:7860, the bundled phantom-trained models).
Environment:  ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (where to listen),
``AS_AI_DIAGNOSIS_MODEL`` / ``AS_AI_TRIAGE_MODEL`` (a Hub repo id or a local folder; default: bundled).
"""
from __future__ import annotations

import atexit
import html
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import gradio as gr
import numpy as np

import as_ai
from as_ai.errors import AsAiError, InvalidImageError, InvalidPatientError, ModelLoadError
from as_ai.hub import default_model_id
from as_ai.plots import draw_risk_curves

log = logging.getLogger("as_ai.space")

TITLE = "as-ai — ankylosing spondylitis: pelvic radiograph reading and clinical triage"


def _int_setting(name: str, default: int, low: int) -> int:
    """A positive whole-number setting from the environment, with an error that names it when it is not."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise SystemExit(f"{name} must be at least {low}, got {value}")
    return value


# Requests run CONCURRENCY_LIMIT at a time; QUEUE_MAX_SIZE more may wait; beyond that Gradio answers "busy".
QUEUE_MAX_SIZE = _int_setting("AS_AI_SPACE_QUEUE_SIZE", 24, 1)
CONCURRENCY_LIMIT = _int_setting("AS_AI_SPACE_CONCURRENCY", 2, 1)
MAX_FILE_SIZE = "64mb"
# Gradio's own cache of uploads and outputs: every 5 minutes delete files older than 10 minutes.
DELETE_CACHE = (300, 600)
EXPLAIN_CHOICES = {"Grad-CAM (fast)": "gradcam", "LIME (slower)": "lime", "None": None}
# Heatmap overlays are sent as JPEG: ~1 ms to encode and ~40 KB, where PNG took ~90 ms and ~180 KB.
HEATMAP_FORMAT = "jpeg"

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
HEATMAP_LABELS = {"gradcam": "Grad-CAM: yellow to red where the ensemble looked for AS",
                  "lime": "LIME: red regions raise P(AS), blue regions lower it"}
RADIOGRAPH_TYPES = [".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"]
EXAMPLE_SEEDS = (1, 4, 5)   # phantoms: AS (grades 2/3), non-AS, non-AS mimic (osteitis condensans ilii)
PHOTO_SEED = 2
# Phones: show the decimal keypad in the clinical number fields (text boxes, see feature_inputs).
HEAD = """<script>
new MutationObserver(() => document.querySelectorAll('.as-ai-number input, .as-ai-number textarea')
  .forEach(el => { if (el.inputMode !== 'decimal') el.inputMode = 'decimal'; }))
  .observe(document.documentElement, {childList: true, subtree: true});
</script>"""
REAR_CAMERA = {"video": {"facingMode": {"ideal": "environment"}, "width": {"ideal": 1920},
                         "height": {"ideal": 1440}}}


# ------------------------------------------------------------------------------------------------
# models, loaded once
# ------------------------------------------------------------------------------------------------
@dataclass
class Models:
    """The two loaded models and what the UI needs to describe them."""

    diagnoser: Any
    triager: Any
    explain_available: bool
    explain_note: str = ""

    @property
    def synthetic(self) -> bool:
        """True when any loaded model says it was trained on synthetic data (the bundled ones do)."""
        return bool(self.diagnoser.synthetic or self.triager.synthetic)


def _explain_status() -> tuple[bool, str]:
    try:
        import as_ai.explain  # noqa: F401
    except ImportError as exc:
        return False, f"Heatmaps are not available in this installation of as-ai ({exc})."
    return True, ""


def load_models(diagnosis_model: str | None = None, triage_model: str | None = None) -> Models:
    """Load the diagnosis and triage models once (arguments, else env variables, else the bundled demos).

    Uses the library's model cache, so ``as_ai.diagnose`` / ``as_ai.triage`` in the same process share them.

    Raises:
        ModelLoadError: a model cannot be found or verified (the Space does not start without both).
    """
    from as_ai import hub
    from as_ai.clinical import Triager
    from as_ai.diagnosis import Diagnoser

    dmid = diagnosis_model or default_model_id("diagnosis")
    tmid = triage_model or default_model_id("triage")
    diagnoser = hub.cached("diagnosis", dmid, None, lambda: Diagnoser.from_pretrained(dmid))
    triager = hub.cached("triage", tmid, None, lambda: Triager.from_pretrained(tmid))
    for m in (diagnoser, triager):
        hub.warn_if_demo(m.resolved)
    ok, note = _explain_status()
    return Models(diagnoser=diagnoser, triager=triager, explain_available=ok, explain_note=note)


# ------------------------------------------------------------------------------------------------
# formatting helpers (presentation only)
# ------------------------------------------------------------------------------------------------
def _user_error(exc: BaseException) -> gr.Error:
    """A readable error for the page: the library's message (which says what to do), HTML-escaped."""
    if isinstance(exc, InvalidPatientError) and exc.fields:
        items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in exc.fields.items())
        return gr.Error(f"Please correct these fields:<ul>{items}</ul>", title="Check the patient data",
                        print_exception=False)
    title = "Cannot read this image" if isinstance(exc, InvalidImageError) else "Cannot do this"
    return gr.Error(html.escape(str(exc)), title=title, print_exception=False)


def _unexpected(exc: BaseException) -> gr.Error:
    log.exception("unexpected error in a Space handler")
    return gr.Error("Something went wrong on our side while processing this request. Nothing was stored. "
                    "Please try again, or try another file.", title="Unexpected error", print_exception=False)


def _pct(p: float) -> str:
    return f"{100 * p:.0f} %"


def finding_text(d: Any) -> str:
    """Clinician-facing wording of a Diagnosis: the library's finding sentence, probability and threshold.

    Findings "suggest"; nothing here states a diagnosis. An abstention gives its reasons and no finding.
    """
    if d.label == "indeterminate":
        reasons = list(d.check.reasons) or ["the image does not look like the radiographs the model was trained on"]
        lines = "\n".join(f"- {html.escape(r)}" for r in reasons)
        return ("### No finding: the model abstained\n"
                f"The input check did not accept this image, so no finding is given:\n{lines}\n\n"
                "Upload an AP (anteroposterior) pelvic radiograph, ideally the original DICOM or a PNG export.")
    head = ("Suggests ankylosing spondylitis (radiographic sacroiliitis)" if d.label == "AS"
            else "No radiographic signs of ankylosing spondylitis found")
    rel = "at or above" if d.probability >= d.threshold else "below"
    return (f"### {head}\n"
            f"Calibrated probability of AS **{_pct(d.probability)}** ({d.probability:.3f}), {rel} the model's "
            f"decision threshold **{d.threshold:.3f}**.\n\n{html.escape(d.finding)}")


def members_text(d: Any) -> str:
    """The ensemble members' own probabilities and their spread, as a small table."""
    rows = "\n".join(f"| {html.escape(str(n))} | {p:.3f} |" for n, p in d.members.items())
    return (f"| ensemble member | P(AS), uncalibrated |\n|---|---|\n{rows}\n\n"
            f"Spread (standard deviation across members): **{d.spread:.3f}**.")


def check_text(d: Any, *, photo: bool = False) -> str:
    """The input check and, when relevant, the photo-quality advice, in plain words."""
    c = d.check
    pc = c.photo
    advice = list(pc.advice) if pc is not None else []
    verdict = "passed" if c.in_distribution else "not passed, so the model abstains"
    score = (f" (score {c.score:.2f}, limit {c.threshold:.2f})" if c.score is not None and c.threshold is not None
             else " (no input gate in this model)" if c.score is None else f" (score {c.score:.2f})")
    lines = [f"**Input check:** {verdict}{score}."]
    others = [r for r in c.reasons if r not in advice]
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


def overlay(image: np.ndarray, heatmap: np.ndarray, *, signed: bool = False, max_side: int = 768,
            alpha: float = 0.6) -> np.ndarray:
    """Blend an explanation heatmap over the grey radiograph for display; returns uint8 RGB.

    ``image`` is H×W in [0, 1]; ``heatmap`` has the same grid. Grad-CAM maps (in [0, 1]) are drawn in
    yellow-red, more opaque where stronger; signed LIME maps (in [-1, 1]) in red where a region raises
    P(AS) and blue where it lowers it. Large images are shrunk to ``max_side`` for the page.
    """
    from PIL import Image

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    scale = min(1.0, max_side / max(h, w))
    hm = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR), dtype=np.float32)
        hm = np.asarray(Image.fromarray(hm).resize(size, Image.BILINEAR), dtype=np.float32)
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


def lime_progress(progress: Callable[..., Any]) -> Callable[[int, int], None]:
    """A LIME progress callback that moves the page's bar and says about how long is left.

    LIME stops once its map is stable (usually after about a third of its maximum), so the estimate,
    made from the pace so far and the maximum, is an upper bound.
    """
    started = time.perf_counter()

    def report(done: int, planned: int) -> None:
        left = (time.perf_counter() - started) / max(done, 1) * max(planned - done, 0)
        progress((done, planned), desc=f"LIME: {done} perturbed copies scored; at most about {left:.0f} s "
                                       "left (it stops early once the map is stable)", unit="copies")

    return report


# ------------------------------------------------------------------------------------------------
# handlers: called by the UI and by the named API endpoints
# ------------------------------------------------------------------------------------------------
class Handlers:
    """Event handlers bound to the loaded models. Each returns what the page shows."""

    def __init__(self, models: Models, *, workdir: Path | None = None) -> None:
        self.models = models
        self.labels = {f.name: f.label for f in models.triager.schema.features}
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="as_ai_space_"))
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        self.workdir = workdir
        self._plots: dict[tuple[str, str], str] = {}

    # -- diagnosis ------------------------------------------------------------------------------
    def diagnose(self, radiograph: str | None, explain: str = "Grad-CAM (fast)",
                 progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Read one radiograph file (PNG/JPEG/TIFF/DICOM).

        Returns (finding markdown, members markdown, input-check markdown, heatmap overlay or None,
        the Diagnosis as a dict, an update showing the "continue to triage" button when AS is suggested).
        """
        return self._diagnose(radiograph, explain, photo=False, progress=progress)

    def diagnose_photo(self, photo: str | None, explain: str = "Grad-CAM (fast)",
                       progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        """Same as :meth:`diagnose` for a phone photo of a radiograph, with the photo-quality advice."""
        return self._diagnose(photo, explain, photo=True, progress=progress)

    def _diagnose(self, path: str | None, explain: str | None, *, photo: bool, progress: Any) -> tuple:
        if not path:
            raise gr.Error("Take a photo of the radiograph or pick one from the gallery first." if photo else
                           "Upload a radiograph first (DICOM, PNG, JPEG or TIFF).",
                           title="No image", print_exception=False)
        if explain not in EXPLAIN_CHOICES:
            raise gr.Error(f"Unknown heatmap choice {html.escape(repr(explain))}; choose one of: "
                           f"{html.escape(', '.join(EXPLAIN_CHOICES))}.", title="Cannot do this",
                           print_exception=False)
        method = EXPLAIN_CHOICES[explain] if self.models.explain_available else None
        options = {}
        if method == "lime" and progress is not None:
            progress(0, desc="LIME: scoring perturbed copies of the image")
            options["progress"] = lime_progress(progress)
        try:
            radiograph = as_ai.load_radiograph(path)
            d = self.models.diagnoser(radiograph, explain=method, explain_options=options)
        except AsAiError as exc:
            raise _user_error(exc) from None
        except Exception as exc:  # noqa: BLE001 - never show a traceback to the user
            raise _unexpected(exc) from None
        heat = gr.update(value=None, label="Heatmap overlay (none asked for)")
        if d.explanation is not None and d.label != "indeterminate":
            e = d.explanation
            heat = gr.update(value=overlay(radiograph.pixels, e.heatmap, signed=e.method != "gradcam"),
                            label=HEATMAP_LABELS.get(e.method, e.method) + f" ({e.seconds:.1f} s)")
        members = members_text(d) if d.label != "indeterminate" else ""
        return (finding_text(d), members, check_text(d, photo=photo), heat, d.to_dict(),
                gr.update(visible=d.label == "AS"))

    # -- triage ---------------------------------------------------------------------------------
    def triage(self, patient: dict[str, Any]) -> tuple:
        """Score one patient (field -> value; None = unknown). Returns scores, risk text, plot and dict."""
        try:
            t = self.models.triager(patient)
        except InvalidPatientError as exc:
            fields = {f"{self.labels.get(k, k)} ({k})": v for k, v in exc.fields.items()}
            raise _user_error(InvalidPatientError(str(exc), fields=fields)) from None
        except AsAiError as exc:
            raise _user_error(exc) from None
        except Exception as exc:  # noqa: BLE001
            raise _unexpected(exc) from None
        return (scores_text(t, self.labels), risk_text(t), self.risk_plot_file(t), t.to_dict())

    def risk_plot_file(self, t: Any) -> str:
        """The risk plot as a PNG file, drawn once per combination of groups (the curves are the model's)."""
        key = (t.groups["basfi"], t.groups["basdai"])
        if key not in self._plots:
            path = self.workdir / f"risk_{key[0]}_{key[1]}.png"
            risk_plot(t).savefig(path, dpi=110)
            self._plots[key] = str(path)
        return self._plots[key]


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


# ------------------------------------------------------------------------------------------------
# examples, generated at start into a temporary folder
# ------------------------------------------------------------------------------------------------
def make_examples(folder: Path) -> tuple[list[str], list[str]]:
    """Write a few phantom radiographs (16-bit PNG) and a phone photo of one (JPEG) into ``folder``."""
    from PIL import Image

    from as_ai.synthetic import pelvis

    radiographs, photos = [], []
    for seed in EXAMPLE_SEEDS:
        ph = pelvis.sample(seed)
        p = folder / f"phantom_{seed}_truth_{ph.meta['label']}.png"
        Image.fromarray(_png16(ph)).save(p)
        radiographs.append(str(p))
    try:
        from as_ai.synthetic import phone
    except ImportError:
        return radiographs, photos
    ph = pelvis.sample(PHOTO_SEED)
    im = Image.fromarray(phone.photograph(_png16(ph), level=2, seed=PHOTO_SEED))
    p = folder / f"phone_photo_{PHOTO_SEED}_truth_{ph.meta['label']}.jpg"
    im.convert("RGB").save(p, quality=88)
    photos.append(str(p))
    return radiographs, photos


def _png16(phantom: Any) -> np.ndarray:
    """A phantom's stored values (``bits_stored`` bits) stretched to the full 16-bit range, as a PNG export does."""
    top = 2 ** int(phantom.meta.get("bits_stored", 16)) - 1
    return (phantom.image.astype(np.uint32) * 65535 // top).astype(np.uint16)


# ------------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------------
def feature_inputs(triager: Any) -> list[tuple[str, gr.components.Component]]:
    """One input per feature of the triage model's schema: numbers with unit and rule, yes/no radios.

    Numbers are text boxes (a phone shows its decimal keypad, see ``HEAD``) because an empty box must
    mean "unknown" (Gradio's number box shows 0 when empty). Ranges are stated, not enforced here: the
    library's schema checks them and names any bad field.
    """
    comps = []
    for f in triager.schema.features:
        need = "leave empty if unknown" if f.imputable else "required"
        if f.type == "bool":
            c = gr.Radio(["yes", "no"], value=None, label=f.label, info=need, elem_id=f"tri-{f.name}")
        else:
            label = f"{f.label} ({f.unit})" if f.unit else f.label
            c = gr.Textbox(value="", label=label, info=f"{f.describe()}; {need}", elem_id=f"tri-{f.name}",
                           placeholder="unknown" if f.imputable else "required", lines=1, max_lines=1,
                           elem_classes=["as-ai-number"],
                           html_attributes=gr.InputHTMLAttributes(autocorrect="off", spellcheck=False,
                                                                  autocomplete="off", enterkeyhint="next"))
        comps.append((f.name, c))
    return comps


def parse_value(value: Any) -> Any:
    """A form value as the library takes it: empty -> None (unknown), "12,5" / "12.5" -> 12.5.

    Text that is not a number is passed on unchanged, so the library's schema names the field and the rule.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return text
    return value


def triage_api(handlers: "Handlers", schema: Any) -> Callable:
    """The typed ``/triage`` API endpoint: one keyword per schema feature (numbers as numbers, yes/no as
    booleans, ``None`` = unknown), documented with its unit, range and whether it may be left unknown.

    The page's form (text boxes, so that an empty box means unknown) calls the same handler privately.
    Returns (scores markdown, risk-group markdown, risk plot PNG, the Triage as a dict).
    """
    from gradio.data_classes import FileData

    def triage(*values: Any) -> tuple[str, str, FileData, dict]:
        scores, risk, plot, result = handlers.triage(dict(zip(schema.names, (parse_value(v) for v in values))))
        return scores, risk, FileData(path=plot), result

    params, lines = [], []
    for f in schema.features:
        kind = Optional[bool] if f.type == "bool" else Optional[float]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=kind))
        unit = f" ({f.unit})" if f.unit else ""
        lines.append(f"- {f.name}: {f.label}{unit}; {f.describe()}; "
                     + ("may be None (unknown, imputed)" if f.imputable else "required"))
    triage.__signature__ = inspect.Signature(params, return_annotation=tuple[str, str, FileData, dict])  # type: ignore[attr-defined]
    triage.__annotations__ = {p.name: p.annotation for p in params} | {"return": tuple[str, str, FileData, dict]}
    triage.__doc__ = ("Predict BASFI and BASDAI with prediction intervals and the surgical-risk group for one "
                      "patient (phantom-trained demo models: not for clinical use). Parameters:\n" + "\n".join(lines))
    return triage


def _card_markdown(path: Path) -> str:
    card = path / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    return re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S).strip() or "_This repository has no model card._"


def notice(models: Models) -> str:
    """The research-use notice shown above every tab; it names synthetic training when it applies."""
    if models.synthetic:
        return NOTICE
    return ("**Research use only — not a medical device.** Outputs are model estimates, not diagnoses; "
            "do not use them to make clinical decisions.")


def about_markdown(models: Models) -> str:
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


@dataclass(frozen=True)
class TabSpec:
    """What differs between the two diagnosis tabs (file upload and camera); the layout is shared."""

    name: str          # the tab's title
    key: str           # tab id, and prefix of the element ids ("rad" / "cam")
    api_name: str      # the named API endpoint
    intro: str
    button: str
    examples_label: str
    photo: bool        # a phone photo: the input check (with its advice) comes before the heatmap


RADIOGRAPH_TAB = TabSpec(
    name="Radiograph", key="rad", api_name="diagnose", button="Analyse radiograph",
    intro=("Upload an **AP pelvic radiograph**: DICOM (.dcm) from the modality or PACS, or a PNG / JPEG / TIFF "
           "export. Uploads are deleted from the server within minutes."),
    examples_label="Synthetic phantom radiographs (examples)", photo=False)
CAMERA_TAB = TabSpec(
    name="Camera", key="cam", api_name="diagnose_photo", button="Analyse photo",
    intro=("Photograph a radiograph shown on a screen with the phone's rear camera, or pick a photo from the "
           "gallery. Hold the phone parallel to the screen, fill the frame with the image, avoid reflections. "
           "The result includes advice on photo quality."),
    examples_label="Synthetic phone photo of a phantom (example)", photo=True)


def diagnosis_tab(spec: TabSpec, handler: Callable, explain_choices: list[str], explain_info: str,
                  examples: list[str]) -> gr.Button:
    """One diagnosis tab (input, heatmap choice, button; finding, check, heatmap, members, JSON), wired to
    ``handler`` under ``/spec.api_name``. Returns its "continue to clinical triage" button."""
    k = spec.key
    with gr.Tab(spec.name, id="radiograph" if k == "rad" else "camera", elem_id=f"tab-{spec.name.lower()}"):
        gr.Markdown(spec.intro)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                if spec.photo:
                    source = gr.Image(sources=["webcam", "upload"], type="filepath", image_mode=None,
                                      label="Photo of the radiograph", elem_id="cam-image",
                                      webcam_options=gr.WebcamOptions(mirror=False, constraints=REAR_CAMERA))
                else:
                    source = gr.File(label="Radiograph (DICOM, PNG, JPEG, TIFF)", type="filepath",
                                     file_types=RADIOGRAPH_TYPES, elem_id="rad-file")
                explain = gr.Radio(explain_choices, value=explain_choices[0], label="Heatmap", info=explain_info,
                                   elem_id=f"{k}-explain")
                button = gr.Button(spec.button, variant="primary", elem_id=f"{k}-btn")
                if examples:
                    gr.Examples([[p] for p in examples], inputs=[source], label=spec.examples_label)
            with gr.Column(min_width=320):
                finding = gr.Markdown(elem_id=f"{k}-finding")
                to_triage = gr.Button("Continue to clinical triage →", visible=False, variant="secondary",
                                      elem_id=f"{k}-to-triage")
                heat_label = "Heatmap overlay" if spec.photo else "Heatmap overlay: where the models looked"
                if spec.photo:
                    check = gr.Markdown(elem_id=f"{k}-check")
                heat = gr.Image(label=heat_label, type="numpy", interactive=False, format=HEATMAP_FORMAT,
                                elem_id=f"{k}-heat")
                members = gr.Markdown(elem_id=f"{k}-members")
                if not spec.photo:
                    check = gr.Markdown(elem_id=f"{k}-check")
                with gr.Accordion("Full result (JSON)", open=False):
                    result = gr.JSON(label="Diagnosis")
    button.click(handler, inputs=[source, explain], outputs=[finding, members, check, heat, result, to_triage],
                 api_name=spec.api_name, concurrency_id="models")
    return to_triage


def build_app(models: Models, *, examples_dir: Path | None = None) -> gr.Blocks:
    """Build the page over loaded models; ``examples_dir`` is where example images are written (a temp dir).

    Example:
        >>> demo = build_app(load_models(), examples_dir=Path(tempfile.mkdtemp()))   # doctest: +SKIP
        >>> demo.queue(max_size=QUEUE_MAX_SIZE).launch(**launch_kwargs())           # doctest: +SKIP
    """
    h = Handlers(models, workdir=examples_dir)
    radiograph_examples: list[str] = []
    photo_examples: list[str] = []
    if examples_dir is not None:
        try:
            radiograph_examples, photo_examples = make_examples(examples_dir)
        except Exception:  # noqa: BLE001 - examples are a convenience; the page works without them
            log.exception("could not generate the example images")
    explain_choices = list(EXPLAIN_CHOICES) if models.explain_available else ["None"]
    explain_info = models.explain_note or "Grad-CAM takes a fraction of a second; LIME a few seconds (progress shown)."
    names = models.triager.schema.names

    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}")
        gr.Markdown(notice(models), elem_id="notice")
        with gr.Tabs(selected="radiograph", overflow_behavior="wrap") as tabs:
            to_triage = [diagnosis_tab(spec, handler, explain_choices, explain_info, examples)
                         for spec, handler, examples in ((RADIOGRAPH_TAB, h.diagnose, radiograph_examples),
                                                         (CAMERA_TAB, h.diagnose_photo, photo_examples))]
            with gr.Tab("Triage", id="triage", elem_id="tab-triage"):
                gr.Markdown("For patients with AS: predicts **BASFI** (function) and **BASDAI** (disease "
                            "activity) from a few clinical variables, and the risk group for needing surgery. "
                            "Fields marked *leave empty if unknown* are imputed by the model, which says so.")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=320):
                        named = feature_inputs(models.triager)
                        tri_btn = gr.Button("Predict BASFI, BASDAI and risk group", variant="primary",
                                            elem_id="tri-btn")
                    with gr.Column(min_width=320):
                        tri_risk = gr.Markdown(elem_id="tri-risk")
                        tri_scores = gr.Markdown(elem_id="tri-scores")
                        tri_plot = gr.Image(label="Cumulative risk of surgery by group (training cohort)",
                                            type="filepath", interactive=False, elem_id="tri-plot", show_label=False,
                                            buttons=["download", "fullscreen"])
                        with gr.Accordion("Full result (JSON)", open=False):
                            tri_json = gr.JSON(label="Triage")
            with gr.Tab("About", id="about", elem_id="tab-about"):
                gr.Markdown(about_markdown(models), elem_id="about")
        gr.Markdown(BUSY, elem_id="busy")

        def run_triage(*values: Any) -> tuple:
            return h.triage({n: parse_value(v) for n, v in zip(names, values)})

        tri_btn.click(run_triage, inputs=[c for _, c in named], outputs=[tri_scores, tri_risk, tri_plot, tri_json],
                      api_visibility="private", concurrency_id="models")
        gr.api(triage_api(h, models.triager.schema), api_name="triage", concurrency_id="models")
        for b in to_triage:
            b.click(lambda: gr.Tabs(selected="triage"), outputs=tabs, api_visibility="private", queue=False)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Arguments of ``Blocks.launch`` for this Space (host and port from GRADIO_SERVER_NAME / _PORT)."""
    return dict(server_name=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                server_port=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                theme=gr.themes.Soft(), css=CSS, head=HEAD, max_file_size=MAX_FILE_SIZE, show_error=False,
                ssr_mode=False, footer_links=["api"])


def main() -> None:
    """Load the models once, build the page and serve it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        models = load_models(os.environ.get("AS_AI_DIAGNOSIS_MODEL"), os.environ.get("AS_AI_TRIAGE_MODEL"))
    except ModelLoadError as exc:
        raise SystemExit(f"as-ai Space: cannot start, a model failed to load: {exc}") from None
    examples = Path(tempfile.mkdtemp(prefix="as_ai_space_examples_"))
    atexit.register(shutil.rmtree, examples, ignore_errors=True)
    demo = build_app(models, examples_dir=examples)
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    demo.launch(**launch_kwargs(), prevent_thread_lock=True)
    which = ("phantom-trained demo models" if models.synthetic else
             f"models {models.diagnoser.resolved.provenance}, {models.triager.resolved.provenance}")
    print(f"as-ai Space ready on {demo.local_url} ({which}; research use only, not for clinical use). "
          "Ctrl+C stops it.", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
