"""Helpers to run ``space/app.py`` as a real server on loopback and to load it with ``gradio_client`` clients.

Shared by ``tests/test_space_load.py`` (a short load test and the queue-overflow test, part of ``make test``)
and the benchmarks ``tests/benchmarks/bench_space.py`` and ``bench_space_load.py`` (``make bench``).

- :func:`start_space` launches ``python space/app.py`` on a free 127.0.0.1 port, offline, with its output
  in a log file, and waits until it listens; ``queue_max_size`` starts it with a smaller Gradio queue.
- :func:`run_load` runs ``n_clients`` concurrent clients, each sending ``n_requests`` requests in turn,
  bounded by a per-request timeout and an overall deadline; every failure is counted, none is raised.
- :class:`HttpCaller` calls an endpoint the way the page (and ``curl``) does: upload, ``POST
  /gradio_api/call/<name>``, read the server-sent events until ``complete``. ``gradio_client`` polls its
  message queue every 50 ms, which adds up to ~100 ms per request that no browser waits; both are measured.
- :func:`rss_mb` reads a process's resident memory (``/proc/<pid>/status``, else psutil).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "space" / "app.py"
START_TIMEOUT_S = 240

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def space_env(**extra: str) -> dict[str, str]:
    """The environment the Space runs in for tests: offline, no analytics, unbuffered output."""
    return dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                PYTHONUNBUFFERED="1", **extra)


@dataclass
class SpaceServer:
    """A running ``space/app.py``: its process, address and log file."""

    proc: subprocess.Popen
    port: int
    log: Path
    started: float  # time.perf_counter() when the process was started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once the server accepts connections; RuntimeError (with the log's tail) if it exits or is late."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"space/app.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"space/app.py did not listen on port {self.port} within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 20 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def __enter__(self) -> "SpaceServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_space(log: Path, *, queue_max_size: int | None = None, wait: bool = True,
                timeout: float = START_TIMEOUT_S, **env: str) -> SpaceServer:
    """Start ``python space/app.py`` on a free loopback port; by default wait until it listens.

    ``queue_max_size`` starts it with a smaller Gradio queue (``AS_AI_SPACE_QUEUE_SIZE``); ``env`` adds
    environment variables (e.g. ``AS_AI_DIAGNOSIS_MODEL``). Use as a context manager to stop it afterwards.
    """
    port = free_port()
    cmd = [sys.executable, str(APP)]
    if queue_max_size is not None:
        env["AS_AI_SPACE_QUEUE_SIZE"] = str(int(queue_max_size))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=space_env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), **env))
    server = SpaceServer(proc=proc, port=port, log=log, started=started)
    if wait:
        try:
            server.wait_until_serving(timeout)
        except BaseException:
            server.stop()
            raise
    return server


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (VmRSS from /proc; psutil where /proc is not available)."""
    status = Path(f"/proc/{pid}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0  # kB
    import psutil  # not on Linux: psutil, if installed

    return psutil.Process(pid).memory_info().rss / 2**20


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank (no interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class LoadResult:
    """What a load run saw: per-request latencies by endpoint, failures, and the wall time (from the moment
    all clients were connected to the last answer)."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    planned: int = 0
    wall_s: float = 0.0

    @property
    def all_ms(self) -> list[float]:
        return [v for vs in self.latencies_ms.values() for v in vs]

    @property
    def completed(self) -> int:
        return len(self.all_ms)

    @property
    def error_rate(self) -> float:
        """Failed or unfinished requests as a fraction of those planned."""
        return (self.planned - self.completed) / self.planned if self.planned else 0.0

    def p(self, q: float, endpoint: str | None = None) -> float:
        return percentile(self.all_ms if endpoint is None else self.latencies_ms.get(endpoint, []), q)


class HttpCaller:
    """One HTTP client calling the Space's named endpoints as the page does (upload, call, event stream)."""

    def __init__(self, url: str, *, timeout_s: float = 120.0) -> None:
        import httpx

        self.base = url.rstrip("/") + "/gradio_api"
        self.http = httpx.Client(timeout=timeout_s)

    def upload(self, path: str) -> dict[str, Any]:
        """Upload a file; returns the file reference an endpoint takes."""
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.base}/upload", files=[("files", (Path(path).name, fh))])
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}

    def call(self, api_name: str, *data: Any) -> list[Any]:
        """The outputs of one call of ``/api_name`` with positional ``data``; raises on an error event."""
        import json

        r = self.http.post(f"{self.base}/call/{api_name}", json={"data": list(data)})
        r.raise_for_status()
        event = None
        with self.http.stream("GET", f"{self.base}/call/{api_name}/{r.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError(f"/{api_name} answered an error: {payload}")
                    return payload
        raise RuntimeError(f"/{api_name}: the event stream ended without a result")

    def diagnose(self, image: str, explain: str = "None") -> list[Any]:
        return self.call("diagnose", self.upload(image), explain)

    def triage(self, form: dict[str, Any]) -> list[Any]:
        return self.call("triage", *form.values())   # the form is in the endpoint's parameter order

    def close(self) -> None:
        self.http.close()


def run_load(url: str, *, n_clients: int, n_requests: int, image: str, form: dict[str, Any],
             triage_every: int = 4, explain: str = "None", request_timeout_s: float = 120.0,
             deadline_s: float = 600.0, client: str = "gradio_client") -> LoadResult:
    """``n_clients`` concurrent clients, each sending ``n_requests`` requests one after another.

    ``client`` is ``"gradio_client"`` (its ``Client``) or ``"http"`` (:class:`HttpCaller`, as the page calls).

    Request ``i`` of client ``k`` is ``/triage`` (with ``form``) when ``(i + k) % triage_every == 0``, else
    ``/diagnose`` of ``image`` (heatmap choice ``explain``); the clients connect first, then start together.
    A request that raises, takes longer than ``request_timeout_s`` or returns a result without the expected
    field is an error; once ``deadline_s`` has passed, clients send nothing more, and what they did not send
    counts as failed too (``error_rate``). Nothing is raised.
    """
    from gradio_client import Client, handle_file

    result = LoadResult(latencies_ms={"/diagnose": [], "/triage": []}, planned=n_clients * n_requests)
    lock = threading.Lock()
    t_go = [time.perf_counter()]  # when the clients start sending (all connected)
    start = threading.Barrier(n_clients, action=lambda: t_go.__setitem__(0, time.perf_counter()))
    t_start = time.monotonic()

    def fail(message: str) -> None:
        with lock:
            result.errors.append(message[:500])

    def requests(k: int, client: Any) -> None:
        for i in range(n_requests):
            if time.monotonic() - t_start > deadline_s:
                fail(f"client {k}: deadline of {deadline_s:.0f} s passed before request {i}")
                return
            endpoint = "/triage" if (i + k) % triage_every == 0 else "/diagnose"
            key = "basfi" if endpoint == "/triage" else "probability"
            t0 = time.perf_counter()
            try:
                if isinstance(client, HttpCaller):
                    out = client.triage(form) if endpoint == "/triage" else client.diagnose(image, explain)
                elif endpoint == "/triage":
                    out = client.submit(api_name="/triage", **form).result(timeout=request_timeout_s)
                else:
                    out = client.submit(handle_file(image), explain, api_name="/diagnose").result(
                        timeout=request_timeout_s)
                ms = 1000 * (time.perf_counter() - t0)
                if not any(isinstance(o, dict) and key in o for o in out):
                    raise ValueError(f"answer without {key!r}: {str(out)[:200]}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                fail(f"client {k} request {i} {endpoint}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                result.latencies_ms[endpoint].append(ms)

    def client_loop(k: int) -> None:
        try:
            caller = (HttpCaller(url, timeout_s=request_timeout_s) if client == "http"
                      else Client(url, verbose=False, download_files=False))
        except Exception as exc:  # noqa: BLE001 - counted, not raised
            fail(f"client {k}: cannot connect: {type(exc).__name__}: {exc}")
            start.abort()
            return
        try:
            try:
                start.wait(timeout=request_timeout_s)
            except threading.BrokenBarrierError:
                pass  # another client could not connect: go on without waiting for it
            requests(k, caller)
        finally:
            caller.close()

    with ThreadPoolExecutor(max_workers=n_clients) as pool:
        list(pool.map(client_loop, range(n_clients)))
    result.wall_s = time.perf_counter() - t_go[0]
    return result


def triage_form(models: Any) -> dict[str, Any]:
    """The /triage endpoint's keyword arguments for a valid patient (numbers; unknown fields None)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_space_handlers import valid_patient

    return dict(valid_patient(models))
