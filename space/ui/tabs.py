"""The diagnosis tabs: one builder for the file-upload and camera tabs, which differ only by a :class:`TabSpec`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from .settings import HEATMAP_FORMAT, RADIOGRAPH_TYPES
from .triage_form import feature_inputs

REAR_CAMERA = {"video": {"facingMode": {"ideal": "environment"}, "width": {"ideal": 1920},
                         "height": {"ideal": 1440}}}


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


def triage_tab(triager: Any) -> tuple[gr.Button, list[tuple[str, gr.components.Component]], list[Any]]:
    """The clinical-triage tab: one field per schema feature and the results column.

    Returns its button, the (feature name, input) pairs and the outputs (scores, risk, plot, JSON) in the
    order :meth:`Handlers.triage` returns them."""
    with gr.Tab("Triage", id="triage", elem_id="tab-triage"):
        gr.Markdown("For patients with AS: predicts **BASFI** (function) and **BASDAI** (disease "
                    "activity) from a few clinical variables, and the risk group for needing surgery. "
                    "Fields marked *leave empty if unknown* are imputed by the model, which says so.")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                named = feature_inputs(triager)
                button = gr.Button("Predict BASFI, BASDAI and risk group", variant="primary", elem_id="tri-btn")
            with gr.Column(min_width=320):
                risk = gr.Markdown(elem_id="tri-risk")
                scores = gr.Markdown(elem_id="tri-scores")
                plot = gr.Image(label="Cumulative risk of surgery by group (training cohort)", type="filepath",
                                interactive=False, elem_id="tri-plot", show_label=False,
                                buttons=["download", "fullscreen"])
                with gr.Accordion("Full result (JSON)", open=False):
                    result = gr.JSON(label="Triage")
    return button, named, [scores, risk, plot, result]
