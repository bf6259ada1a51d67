"""Benchmark: the Space under 16 concurrent clients x 20 requests (``make bench``).

Run twice: with HTTP clients calling as the page does (``_space_server.HttpCaller``; the figures named
``..._16_clients``) and with ``gradio_client`` clients (``..._16_gradio_clients``), whose 50 ms polling of
their own message queue adds to every request.

``python space/app.py`` runs as a real server on 127.0.0.1 with its own queue settings (2 requests at a
time, 24 waiting). Each client sends 20 requests one after another: ``/diagnose`` of an example phantom
radiograph (no heatmap) and, every 4th request, ``/triage`` of a valid patient. Side by side on the same
server in the same run:

* warm-up: the 16 clients once each (thread pools, allocator arenas, caches), then the server's RSS;
* baseline: one client sending the same 20-request mix, one after another;
* load: the 16 clients together, bounded by a 120 s per-request timeout and a 600 s deadline;
  then the server's RSS again.

Recorded in runs/bench.json: ``space_p50_ms_16_clients`` / ``space_p95_ms_16_clients`` (baseline: the
single client's p50 / p95; ratio value/baseline: how much waiting 16 clients add), ``space_requests_per_s_16_clients``
(baseline: the single client), ``space_error_rate_16_clients`` (failed or unfinished / planned) and
``space_rss_mb_after_16_clients`` (baseline: RSS after warm-up). Asserts no errors and RSS growth <= 10 %;
nothing about time. ``tests/test_space_load.py`` runs a 16 x 2 version and the queue-overflow check in
``make test``.

Run: ``.venv/bin/python -m pytest -q -s -m benchmark -o python_files='bench_*.py' tests/benchmarks/bench_space_load.py``
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _space_server import run_load, start_space, triage_form  # noqa: E402
from test_space_handlers import load_space_app  # noqa: E402

N_CLIENTS = 16
N_REQUESTS = 20
MAX_RSS_GROWTH = 1.10


@pytest.mark.parametrize("client", ["http", "gradio_client"])
def test_space_under_16_clients(tmp_path, record, client):
    app = load_space_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = app.load_models()
    image = app.make_examples(tmp_path)[0][0]
    form = triage_form(models)
    common = dict(image=image, form=form, request_timeout_s=120.0, deadline_s=600.0, client=client)
    tag = "16_clients" if client == "http" else "16_gradio_clients"

    with start_space(tmp_path / "server.log") as server:
        warm = run_load(server.url, n_clients=N_CLIENTS, n_requests=1, **common)
        assert warm.errors == [], warm.errors
        solo = run_load(server.url, n_clients=1, n_requests=N_REQUESTS, **common)
        assert solo.errors == [], solo.errors
        rss_warm = server.rss_mb()
        load = run_load(server.url, n_clients=N_CLIENTS, n_requests=N_REQUESTS, **common)
        rss_after = server.rss_mb()
        alive = server.proc.poll() is None

    rate, solo_rate = load.completed / load.wall_s, solo.completed / solo.wall_s
    print(f"\nSpace under load, {client} clients ({os.cpu_count()} CPUs, queue {app.CONCURRENCY_LIMIT} running / "
          f"{app.QUEUE_MAX_SIZE} waiting): {N_CLIENTS} clients x {N_REQUESTS} requests, "
          f"{load.completed}/{load.planned} answered in {load.wall_s:.1f} s ({rate:.1f} req/s), "
          f"{len(load.errors)} errors\n"
          f"  p50 {load.p(0.5):7.0f} ms  p95 {load.p(0.95):7.0f} ms   (1 client: p50 {solo.p(0.5):6.0f} ms, "
          f"p95 {solo.p(0.95):6.0f} ms, {solo_rate:.1f} req/s)\n"
          f"  /diagnose p95 {load.p(0.95, '/diagnose'):7.0f} ms   /triage p95 {load.p(0.95, '/triage'):7.0f} ms\n"
          f"  server RSS {rss_warm:.0f} MiB after warm-up, {rss_after:.0f} MiB after the run "
          f"({rss_after / rss_warm:.3f}x)")
    for e in load.errors[:10]:
        print(f"  error: {e}")
    solo_is = f"1 client, the same {N_REQUESTS}-request mix, on the same server"
    # recorded before the checks: a failing run's error rate and memory are what one wants to see
    record("space_p50_ms_" + tag, load.p(0.5), "ms", baseline=solo.p(0.5), ratio_is="value/baseline",
           baseline_is=f"p50 of {solo_is}")
    record("space_p95_ms_" + tag, load.p(0.95), "ms", baseline=solo.p(0.95), ratio_is="value/baseline",
           baseline_is=f"p95 of {solo_is}")
    record("space_requests_per_s_" + tag, rate, "requests/s", baseline=solo_rate,
           ratio_is="speed-up (value/baseline)", baseline_is=solo_is)
    record("space_error_rate_" + tag, load.error_rate, "fraction",
           baseline_is=f"none ({load.planned} requests planned; failed or unfinished count as errors)")
    record("space_rss_mb_after_" + tag, rss_after, "MiB", baseline=rss_warm, ratio_is="value/baseline",
           baseline_is=f"server RSS after a warm-up round of {N_CLIENTS} clients")
    assert alive, server.log_tail()
    assert load.errors == [] and load.error_rate == 0.0, load.errors[:10]
    assert rss_after <= MAX_RSS_GROWTH * rss_warm, f"server RSS grew {rss_after / rss_warm:.3f}x under load"
