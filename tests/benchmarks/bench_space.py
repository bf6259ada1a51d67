"""Benchmarks of the Space: cold start (process start to first served /diagnose) and request latency.

Each figure is measured side by side with its baseline in the same run and printed as a ratio:
* cold start of ``python space/app.py`` vs a plain-library process that loads the same models and
  diagnoses the same image (``python -c "import as_ai; as_ai.diagnose(...)"``): what Gradio adds;
* /diagnose and /triage latency vs the library call on the same input in this process (what serving
  adds per request), through two clients: HTTP as the page calls (upload, ``/gradio_api/call/<name>``,
  the event stream; ``_space_server.HttpCaller``) and ``gradio_client``, which polls its message queue
  every 50 ms and so adds up to ~100 ms per request that the page does not wait.

Recorded in runs/bench.json: ``space_cold_start_s``, ``space_diagnose_p50_ms``, ``space_diagnose_gradcam_p50_ms``,
``space_triage_p50_ms`` (HTTP as the page calls; value/baseline: what serving adds; goal <= 1.5 for
diagnose and Grad-CAM) and the same with ``_client`` for ``gradio_client``. Concurrent clients:
bench_space_load.py.

Run: ``.venv/bin/python -m pytest -q -m benchmark tests/benchmarks/bench_space.py -s``
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from _space_server import HttpCaller, SpaceServer, percentile, space_env, start_space  # noqa: E402
from test_space_handlers import load_space_app, valid_patient  # noqa: E402

N_REQUESTS = 20


def _library_cold_start(image: str) -> float:
    """Seconds for a fresh process to import as_ai, load both models and diagnose ``image``."""
    code = ("import warnings, as_ai; warnings.simplefilter('ignore'); "
            "from as_ai.hub import default_model_id; from as_ai.clinical import Triager; "
            "Triager.from_pretrained(default_model_id('triage')); "
            f"as_ai.diagnose({image!r})")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=space_env(), check=True, capture_output=True)
    return time.perf_counter() - t0


def _space_cold_start(image: str, log: Path) -> tuple[float, SpaceServer]:
    """Seconds from starting ``python space/app.py`` to the first /diagnose answer; the server keeps running."""
    from gradio_client import Client, handle_file

    server = start_space(log, wait=False)
    try:
        server.wait_until_serving(300)
        client = Client(server.url, verbose=False, download_files=False)
        client.predict(handle_file(image), "None", api_name="/diagnose")
    except BaseException:
        server.stop()
        raise
    return time.perf_counter() - server.started, server


def _time_pair(served, direct, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``n`` calls each, interleaved so that both see the same load on a shared machine."""
    a, b = [], []
    for _ in range(n):
        for fn, out in ((served, a), (direct, b)):
            t0 = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - t0))
    return a, b


def _gradio_floor_app():
    """A Gradio app with the /diagnose endpoint's components whose function does nothing: the serving floor."""
    import gradio as gr

    def nothing(path, explain):
        return "finding", "members", "check", gr.update(value=None), {"label": "non-AS"}, gr.update(visible=False)

    with gr.Blocks(analytics_enabled=False) as demo:
        f, r = gr.File(type="filepath"), gr.Radio(["None"], value="None")
        outs = [gr.Markdown(), gr.Markdown(), gr.Markdown(), gr.Image(format="jpeg"), gr.JSON(), gr.Button()]
        gr.Button().click(nothing, [f, r], outs, api_name="diagnose")
    return demo


def test_space_cold_start_and_latency(tmp_path, record):
    from gradio_client import Client, handle_file

    app = load_space_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = app.load_models()
    image = app.make_examples(tmp_path)[0][0]

    lib_cold = _library_cold_start(image)
    space_cold, server = _space_cold_start(image, tmp_path / "server.log")
    with server:
        client = Client(server.url, verbose=False, download_files=False)
        http = HttpCaller(server.url)
        patient = valid_patient(models)
        form = dict(patient)
        rows = []
        for name, served, direct in [
            ("diagnose", lambda: http.diagnose(image, "None"), lambda: models.diagnoser(image)),
            ("diagnose+gradcam", lambda: http.diagnose(image, "Grad-CAM (fast)"),
             lambda: models.diagnoser(image, explain="gradcam")),
            ("triage", lambda: http.triage(form), lambda: models.triager(patient)),
            ("diagnose, gradio_client", lambda: client.predict(handle_file(image), "None", api_name="/diagnose"),
             lambda: models.diagnoser(image)),
            ("diagnose+gradcam, gradio_client",
             lambda: client.predict(handle_file(image), "Grad-CAM (fast)", api_name="/diagnose"),
             lambda: models.diagnoser(image, explain="gradcam")),
            ("triage, gradio_client", lambda: client.predict(api_name="/triage", **form),
             lambda: models.triager(patient)),
        ]:
            served(), direct()  # warm-up
            s, d = _time_pair(served, direct, N_REQUESTS)
            rows.append((name, statistics.median(s), percentile(s, 0.95), statistics.median(d)))
        # Gradio's own floor, side by side: the same components and upload, a function that does nothing
        from _space_server import free_port

        floor_app = _gradio_floor_app().queue()
        floor_port = free_port()
        floor_app.launch(prevent_thread_lock=True, server_port=floor_port, quiet=True)
        floor = HttpCaller(f"http://127.0.0.1:{floor_port}/")
        try:
            floor.diagnose(image), http.diagnose(image, "None")
            f, sp = _time_pair(lambda: floor.diagnose(image), lambda: http.diagnose(image, "None"), N_REQUESTS)
        finally:
            floor.close()
            floor_app.close()
        http.close()

    print(f"\nSpace benchmarks ({os.cpu_count()} CPUs visible; {N_REQUESTS} sequential requests each)")
    print(f"  space_cold_start_s   {space_cold:8.2f}   library process baseline {lib_cold:6.2f} s   "
          f"ratio {space_cold / lib_cold:5.2f}")
    for name, p50, p95, lib in rows:
        print(f"  {name:<32} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms   library call {lib:7.1f} ms   "
              f"ratio {p50 / lib:5.2f}")
    floor_p50, space_p50 = statistics.median(f), statistics.median(sp)
    lib_p50 = rows[0][3]
    print(f"  Gradio's floor (same components, a function that does nothing): p50 {floor_p50:6.1f} ms; "
          f"Space {space_p50:.1f} ms = library {lib_p50:.1f} + floor {floor_p50:.1f} + "
          f"{space_p50 - lib_p50 - floor_p50:+.1f} ms of the Space's own")
    assert space_cold > 0 and all(r[1] > 0 for r in rows)
    record("space_gradio_floor_p50_ms", floor_p50, "ms", baseline=space_p50, ratio_is="value/baseline",
           baseline_is="the Space's /diagnose p50 in the same run (HTTP as the page calls)")
    record("space_cold_start_s", space_cold, "s", baseline=lib_cold, ratio_is="value/baseline",
           baseline_is="fresh library process: import as_ai, load both models, diagnose the same image")
    by_name = {r[0]: r for r in rows}
    for metric, row, baseline_is in [
        ("space_diagnose_p50_ms", "diagnose", "library call diagnoser(image) in this process (p50)"),
        ("space_diagnose_gradcam_p50_ms", "diagnose+gradcam", "library call with explain='gradcam' (p50)"),
        # the Space draws each risk plot once per pair of groups and reuses it, so the library call alone
        ("space_triage_p50_ms", "triage", "library triage call in this process (p50; the Space reuses its plots)"),
    ]:
        for sfx, how in (("", "HTTP as the page calls"), ("_client", "gradio_client")):
            _, p50, _, lib = by_name[row + ("" if not sfx else ", gradio_client")]
            record(metric.replace("_p50_ms", f"{sfx}_p50_ms"), p50, "ms", baseline=lib, ratio_is="value/baseline",
                   baseline_is=f"{baseline_is}; {how}; {N_REQUESTS} sequential requests")
