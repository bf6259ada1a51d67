"""Benchmarks of the Space: cold start (process start to first served /diagnose) and request latency.

Each figure is measured side by side with its baseline in the same run and printed as a ratio:
* cold start of ``python space/app.py`` vs a plain-library process that loads the same models and
  diagnoses the same image (``python -c "import as_ai; as_ai.diagnose(...)"``): what Gradio adds;
* /diagnose and /triage latency through ``gradio_client`` (HTTP, queue, JSON) vs the library call on
  the same input in this process: what serving adds per request.

Run: ``.venv/bin/python -m pytest -q -m benchmark tests/benchmarks/bench_space.py -s``
"""
from __future__ import annotations

import os
import socket
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
from test_space_handlers import load_space_app, valid_patient  # noqa: E402

N_REQUESTS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _library_cold_start(image: str) -> float:
    """Seconds for a fresh process to import as_ai, load both models and diagnose ``image``."""
    code = ("import warnings, as_ai; warnings.simplefilter('ignore'); "
            "from as_ai.hub import default_model_id; from as_ai.clinical import Triager; "
            "Triager.from_pretrained(default_model_id('triage')); "
            f"as_ai.diagnose({image!r})")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - t0


def _space_cold_start(image: str) -> tuple[float, subprocess.Popen, str]:
    """Seconds from starting ``python space/app.py`` to the first /diagnose answer; the server keeps running."""
    from gradio_client import Client, handle_file

    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "space" / "app.py")], cwd=ROOT,
                            env=_env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"space/app.py exited with {proc.returncode}")
        if time.perf_counter() - t0 > 300:
            proc.kill()
            raise RuntimeError("space/app.py did not serve within 300 s")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    client = Client(url, verbose=False, download_files=False)
    client.predict(handle_file(image), "None", api_name="/diagnose")
    return time.perf_counter() - t0, proc, url


def _time_pair(served, direct, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``n`` calls each, interleaved so that both see the same load on a shared machine."""
    a, b = [], []
    for _ in range(n):
        for fn, out in ((served, a), (direct, b)):
            t0 = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - t0))
    return a, b


def test_space_cold_start_and_latency(tmp_path):
    from gradio_client import Client, handle_file

    app = load_space_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = app.load_models()
    image = app.make_examples(tmp_path)[0][0]

    lib_cold = _library_cold_start(image)
    space_cold, proc, url = _space_cold_start(image)
    try:
        client = Client(url, verbose=False, download_files=False)
        patient = valid_patient(models)
        form = {k: ("" if v is None else v) for k, v in patient.items()}
        rows = []
        for name, served, direct in [
            ("diagnose", lambda: client.predict(handle_file(image), "None", api_name="/diagnose"),
             lambda: models.diagnoser(image)),
            ("diagnose+gradcam", lambda: client.predict(handle_file(image), "Grad-CAM (fast)", api_name="/diagnose"),
             lambda: models.diagnoser(image, explain="gradcam")),
            ("triage", lambda: client.predict(api_name="/triage", **form), lambda: models.triager(patient)),
            # the library call plus drawing the risk plot, which the page shows with every triage
            ("triage (with plot)", lambda: client.predict(api_name="/triage", **form),
             lambda: app.risk_plot(models.triager(patient)).savefig(tmp_path / "plot.png", dpi=110)),
        ]:
            served(), direct()  # warm-up
            s, d = _time_pair(served, direct, N_REQUESTS)
            rows.append((name, statistics.median(s), _percentile(s, 0.95), statistics.median(d)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"\nSpace benchmarks ({os.cpu_count()} CPUs visible; {N_REQUESTS} sequential requests each)")
    print(f"  space_cold_start_s   {space_cold:8.2f}   library process baseline {lib_cold:6.2f} s   "
          f"ratio {space_cold / lib_cold:5.2f}")
    for name, p50, p95, lib in rows:
        print(f"  {name:<18} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms   library call {lib:7.1f} ms   "
              f"ratio {p50 / lib:5.2f}")
    assert space_cold > 0 and all(r[1] > 0 for r in rows)
