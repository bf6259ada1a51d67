"""as-ai Gradio Space: radiograph, camera and clinical-triage tabs over the ``as_ai`` library.

UI only. Every number shown here comes from ``as_ai`` (the diagnosis ensemble, its input check and
explanations, the triage models and their survival curves); this file builds the page from the modules
in ``ui/`` beside it (settings, texts, models, render, handlers, triage_form, examples, tabs).

Run locally:  ``python space/app.py``  (http://127.0.0.1:7860, the bundled phantom-trained models).
Environment:  ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (where to listen),
``AS_AI_DIAGNOSIS_MODEL`` / ``AS_AI_TRIAGE_MODEL`` (a Hub repo id or a local folder; default: bundled),
``AS_AI_SPACE_CONCURRENCY`` / ``AS_AI_SPACE_QUEUE_SIZE`` (requests at a time / waiting).
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # ui/ sits beside this file, as on a Hugging Face Space (tests load it by path)
    sys.path.insert(0, _HERE)

from as_ai.errors import ModelLoadError  # noqa: E402

from ui.examples import make_examples  # noqa: E402
from ui.handlers import Handlers, lime_progress  # noqa: E402
from ui.models import Models, load_models  # noqa: E402
from ui.render import (check_text, finding_text, members_text, overlay, risk_plot,  # noqa: E402
                       risk_text, scores_text)
from ui.settings import (CONCURRENCY_LIMIT, DELETE_CACHE, EXPLAIN_CHOICES, MAX_FILE_SIZE,  # noqa: E402
                         QUEUE_MAX_SIZE, server_address)
from ui.tabs import CAMERA_TAB, RADIOGRAPH_TAB, diagnosis_tab, triage_tab  # noqa: E402
from ui.texts import BUSY, CSS, HEAD, TITLE, about_markdown, notice  # noqa: E402
from ui.triage_form import feature_inputs, parse_value, triage_api  # noqa: E402

log = logging.getLogger("as_ai.space")

# What callers (tests, benchmarks, a host app) use of the Space, in one namespace.
__all__ = ["build_app", "launch_kwargs", "main", "load_models", "Models", "Handlers", "make_examples",
           "lime_progress", "finding_text", "members_text", "check_text", "overlay", "scores_text", "risk_text",
           "risk_plot", "feature_inputs", "parse_value", "triage_api", "notice", "about_markdown",
           "QUEUE_MAX_SIZE", "CONCURRENCY_LIMIT"]


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
            tri_btn, named, tri_outputs = triage_tab(models.triager)
            with gr.Tab("About", id="about", elem_id="tab-about"):
                gr.Markdown(about_markdown(models), elem_id="about")
        gr.Markdown(BUSY, elem_id="busy")

        def run_triage(*values: Any) -> tuple:
            return h.triage({n: parse_value(v) for n, v in zip(names, values)})

        tri_btn.click(run_triage, inputs=[c for _, c in named], outputs=tri_outputs,
                      api_visibility="private", concurrency_id="models")
        gr.api(triage_api(h, models.triager.schema), api_name="triage", concurrency_id="models")
        for b in to_triage:
            b.click(lambda: gr.Tabs(selected="triage"), outputs=tabs, api_visibility="private", queue=False)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Arguments of ``Blocks.launch`` for this Space (host and port from GRADIO_SERVER_NAME / _PORT)."""
    host, port = server_address()
    return dict(server_name=host, server_port=port, theme=gr.themes.Soft(), css=CSS, head=HEAD, max_file_size=MAX_FILE_SIZE, show_error=False,
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
