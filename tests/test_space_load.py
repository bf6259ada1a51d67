"""The Space under concurrent clients, as a service: ``python space/app.py`` on loopback, ``gradio_client``.

- 16 clients at once, 2 requests each (/diagnose, some /triage): every request answered, the server's
  resident memory after the run within 10 % of its memory after a warm-up round of the same 16 clients.
  (The full 16 x 20 run, with latencies recorded, is ``tests/benchmarks/bench_space_load.py``.)
- A full queue: the same app started with a 2-place queue is flooded; the requests that do not fit are
  refused with a message a person understands ("Queue is full! Please try again." from ``gradio_client``;
  the page says "This application is currently busy" and explains what that means), the others are
  answered, and the Space answers again once the flood has passed.

Both servers start in parallel (one start costs ~15 s on a busy 2-core machine). Nothing is timed.
"""
from __future__ import annotations

import threading
import warnings

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402

from _space_server import run_load, start_space, triage_form  # noqa: E402
from test_space_handlers import load_space_app  # noqa: E402

pytestmark = pytest.mark.timeout(600)  # a hang guard, not a timing check

N_CLIENTS = 16
N_REQUESTS = 2
SMALL_QUEUE = 2
FLOOD = 12  # simultaneous requests against CONCURRENCY_LIMIT running + SMALL_QUEUE waiting
MAX_RSS_GROWTH = 1.10


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The app module, an example radiograph and a valid /triage form."""
    app = load_space_app()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = app.load_models()
    image = app.make_examples(tmp_path_factory.mktemp("load_examples"))[0][0]
    return app, image, triage_form(models)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The Space as configured, and the same app with a queue of SMALL_QUEUE places; started side by side."""
    logs = tmp_path_factory.mktemp("load_logs")
    normal = start_space(logs / "space.log", wait=False)
    small = start_space(logs / "space_small_queue.log", queue_max_size=SMALL_QUEUE, wait=False)
    try:
        normal.wait_until_serving()
        small.wait_until_serving()
        yield {"normal": normal, "small_queue": small}
    finally:
        normal.stop()
        small.stop()


def test_sixteen_concurrent_clients_are_all_answered_and_memory_stays_flat(servers, inputs):
    _, image, form = inputs
    server = servers["normal"]
    warm = run_load(server.url, n_clients=N_CLIENTS, n_requests=1, image=image, form=form, deadline_s=240)
    assert warm.errors == [], warm.errors
    rss_warm = server.rss_mb()

    load = run_load(server.url, n_clients=N_CLIENTS, n_requests=N_REQUESTS, image=image, form=form, deadline_s=240)
    rss_after = server.rss_mb()
    print(f"\n{N_CLIENTS} clients x {N_REQUESTS} requests: {load.completed}/{load.planned} answered in "
          f"{load.wall_s:.1f} s, p50 {load.p(0.5):.0f} ms, p95 {load.p(0.95):.0f} ms; server RSS "
          f"{rss_warm:.0f} MiB after warm-up, {rss_after:.0f} MiB after ({rss_after / rss_warm:.3f}x)")
    assert load.errors == [], load.errors
    assert load.completed == N_CLIENTS * N_REQUESTS and load.error_rate == 0.0
    assert load.latencies_ms["/diagnose"] and load.latencies_ms["/triage"]  # both endpoints were exercised
    assert server.proc.poll() is None, server.log_tail()
    assert rss_after <= MAX_RSS_GROWTH * rss_warm, (
        f"server memory grew from {rss_warm:.0f} MiB to {rss_after:.0f} MiB under {load.planned} requests")


def test_a_full_queue_is_answered_with_a_busy_message(servers, inputs):
    app, image, _ = inputs
    server = servers["small_queue"]
    clients = [Client(server.url, verbose=False, download_files=False) for _ in range(FLOOD)]
    outcomes: list[object] = [None] * FLOOD
    go = threading.Barrier(FLOOD)

    def send(k: int) -> None:
        go.wait(timeout=60)
        try:
            outcomes[k] = clients[k].predict(handle_file(image), "Grad-CAM (fast)", api_name="/diagnose")
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcomes[k] = exc

    threads = [threading.Thread(target=send, args=(k,)) for k in range(FLOOD)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    try:
        answered = [o for o in outcomes if isinstance(o, (tuple, list))]
        refused = [o for o in outcomes if isinstance(o, Exception)]
        print(f"\nflood of {FLOOD} against {app.CONCURRENCY_LIMIT} running + {SMALL_QUEUE} waiting: "
              f"{len(answered)} answered, {len(refused)} refused: {sorted({str(e) for e in refused})}")
        assert len(answered) + len(refused) == FLOOD, outcomes
        assert answered, "no request of the flood was served"
        assert refused, f"a queue of {SMALL_QUEUE} took all {FLOOD} simultaneous requests"
        for exc in refused:
            # only the queue may refuse, and it must say so in words
            assert isinstance(exc, QueueError), f"{type(exc).__name__}: {exc}"
            message = str(exc).lower()
            assert "queue is full" in message and "try again" in message, str(exc)
        # the flood has passed: the Space serves again
        result = clients[0].predict(handle_file(image), "None", api_name="/diagnose")
        assert isinstance(result[-1], dict) and "probability" in result[-1]
    finally:
        for c in clients:
            c.close()
    # the page itself explains what "busy" means (Gradio's page shows "This application is currently busy")
    page = clients[0].config
    texts = [str(c.get("props", {}).get("value", "")).lower() for c in page.get("components", [])]
    assert any("busy" in t and "queue is full" in t and "try again" in t for t in texts), \
        "the page should explain that 'busy' means the queue is full"
    assert server.proc.poll() is None, server.log_tail()


def test_the_page_s_http_calls_are_answered_like_the_client_s(servers, inputs):
    """The benchmarks' HTTP caller (upload, /gradio_api/call/<name>, event stream) gets the same answers."""
    from _space_server import HttpCaller

    _, image, form = inputs
    http = HttpCaller(servers["normal"].url)
    try:
        finding, _members, _check, heat, result, _button = http.diagnose(image, "Grad-CAM (fast)")
        scores, _risk, plot, triage = http.triage(form)
        with pytest.raises(RuntimeError, match="error"):
            http.call("diagnose", None, "None")   # no file: the Space's own error, as an error event
    finally:
        http.close()
    assert result["label"] in ("AS", "non-AS") and 0.0 <= result["probability"] <= 1.0
    assert "probability" in finding.lower() and heat["value"]["path"].endswith(".jpeg")   # a gr.update
    assert "basfi" in triage and plot["path"].endswith(".png")
