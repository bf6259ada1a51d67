"""The Space's event handlers: each takes what the page sends, calls the library, and returns what the page
shows. A user's mistake comes back as a readable ``gr.Error`` (the library's message, which says what to do);
anything else is logged and answered with a short apology, never a traceback.
"""
from __future__ import annotations

import atexit
import html
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

import as_ai
from as_ai.errors import AsAiError, InvalidImageError, InvalidPatientError

from .models import Models
from .render import (HEATMAP_LABELS, check_text, finding_text, joints_picture, members_text, overlay, risk_plot, risk_text,
                     scores_text)
from .settings import EXPLAIN_CHOICES

log = logging.getLogger("as_ai.space")


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
        cut_out = False   # the heatmap is drawn on the radiograph cut out of a photo, not on the photo's pixels
        if d.explanation is not None and d.label != "indeterminate":
            e = d.explanation
            base, where = radiograph.pixels, ""
            cut_out = e.heatmap.shape != radiograph.shape
            if cut_out:
                base = self.models.diagnoser.model_views([radiograph])[0].pixels
                where = ", on the radiograph cut out of the photo"
            heat = gr.update(value=overlay(base, e.heatmap, signed=e.method != "gradcam"),
                            label=HEATMAP_LABELS.get(e.method, e.method) + f" ({e.seconds:.1f} s{where})")
        if d.sides is not None and d.label != "indeterminate" and not cut_out:
            heat = joints_picture(radiograph, d, heat)   # the boxes are in the radiograph's own pixels
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
